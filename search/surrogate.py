"""Surrogate models and the acquisition used by design campaigns.

Why this design: scikit-optimize's own acquisition optimiser works on the encoded design
vector and cannot multiply its acquisition by a probability of feasibility. So the campaign
keeps a skopt ``Optimizer`` for the space, the initial design, the ask/tell history and the
random baseline, and scores a candidate *pool* (all enumerated ordered decorations plus sampled
compositions) with the models here:

* :class:`FeatureGP` — sklearn ``GaussianProcessRegressor`` (the regressor skopt wraps), ARD
  Matérn-5/2 + white noise, on standardised PHYSICAL features (:mod:`features`);
* :class:`FeasibilityModel` — ``GaussianProcessClassifier`` on feasible / infeasible labels
  (failed evaluations are infeasible), giving P(feasible);
* acquisition = EI(x) × P(feasible | x) (constrained EI, Gardner et al. 2014), batches by a
  constant liar (the best observed value, skopt's ``"cl_min"``) with the GP refit at fixed
  kernel after every pick;
* several objectives are scalarised per batch by ParEGO's augmented Chebyshev function with
  random weights (Knowles 2006), so repeated batches spread along the Pareto front.
All objectives are minimised here; the campaign negates maximised ones.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import norm

#: Extra noise standard deviation of an uncertain evaluation, as a fraction of the standard
#: deviation of the objective over the campaign's evaluations.
UNCERTAIN_NOISE_FRACTION = 0.5


class FeatureGP:
    """Gaussian-process regression on standardised features (minimisation target)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.gp = None
        self._mu = self._sd = None

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return (x - self._mu) / self._sd

    def fit(self, x: np.ndarray, y: np.ndarray, kernel=None,  # noqa: ANN001
            noise: np.ndarray | None = None) -> FeatureGP:
        """Fit on features ``x`` (n, d) and targets ``y`` (n,); a given kernel is kept fixed.

        ``noise`` (n,) is an extra per-point variance in units of y² (e.g. for evaluations the
        potential is unsure of), added to the diagonal on top of the learned white noise.
        """
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        x = np.asarray(x, float)
        if kernel is None:
            self._mu = x.mean(0)
            sd = x.std(0)
            self._sd = np.where(sd > 1e-12, sd, 1.0)
            kernel = (ConstantKernel(1.0, (1e-3, 1e3))
                      * Matern(np.ones(x.shape[1]), (1e-2, 1e3), nu=2.5)
                      + WhiteKernel(1e-3, (1e-8, 1e-1)))
            optimizer, restarts = "fmin_l_bfgs_b", 2
        else:
            optimizer, restarts = None, 0
        alpha: float | np.ndarray = 1e-10
        if noise is not None:
            # normalize_y: sklearn adds alpha to the kernel of y / std(y)
            alpha = 1e-10 + np.asarray(noise, float) / max(float(np.var(y)), 1e-300)
        self.gp = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=optimizer,
                                           n_restarts_optimizer=restarts, alpha=alpha,
                                           random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # length scales at their bounds are harmless here
            self.gp.fit(self._scale(x), np.asarray(y, float))
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at ``x`` (n, d)."""
        mean, std = self.gp.predict(self._scale(np.asarray(x, float)), return_std=True)
        return mean, np.maximum(std, 1e-12)


class FeasibilityModel:
    """P(feasible | features) from a GP classifier; a smoothed constant with one class seen."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.clf = None
        self.constant = 1.0

    def fit(self, x: np.ndarray, feasible: np.ndarray) -> FeasibilityModel:
        """Fit on features ``x`` (n, d) and boolean labels ``feasible`` (n,)."""
        from sklearn.gaussian_process import GaussianProcessClassifier
        from sklearn.gaussian_process.kernels import Matern

        feasible = np.asarray(feasible, bool)
        self.constant = (feasible.sum() + 1.0) / (len(feasible) + 2.0)
        self.clf = None
        if 0 < feasible.sum() < len(feasible):
            x = np.asarray(x, float)
            self._mu, sd = x.mean(0), x.std(0)
            self._sd = np.where(sd > 1e-12, sd, 1.0)
            self.clf = GaussianProcessClassifier(1.0 * Matern(1.0, nu=2.5),
                                                 random_state=self.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.clf.fit((x - self._mu) / self._sd, feasible.astype(int))
        return self

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(feasible) at ``x`` (n, d)."""
        if self.clf is None:
            return np.full(len(x), self.constant)
        return self.clf.predict_proba((np.asarray(x, float) - self._mu) / self._sd)[:, 1]


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float,
                         xi: float = 0.01) -> np.ndarray:
    """EI for minimisation: E[max(best - xi - f, 0)] with f ~ N(mean, std²)."""
    z = (best - xi - mean) / std
    return (best - xi - mean) * norm.cdf(z) + std * norm.pdf(z)


def select_batch(pool_x: np.ndarray, train_x: np.ndarray, train_y: np.ndarray,
                 feas_x: np.ndarray, feas_labels: np.ndarray, batch_size: int,
                 xi: float = 0.01, seed: int = 0,
                 uncertain: np.ndarray | None = None) -> list[int]:
    """Pick ``batch_size`` distinct pool rows by constrained EI with a constant liar.

    Args:
        pool_x: (n_pool, d) features of unevaluated candidates.
        train_x, train_y: features and scalar minimisation targets of feasible-or-not
            evaluations that produced the objective.
        feas_x, feas_labels: features and feasibility of every finished evaluation.
        batch_size: number of picks (≤ n_pool).
        xi: EI exploration margin in units of the (normalised) objective.
        uncertain: (n_train,) bool, evaluations outside the potential's domain (committee
            spread above threshold). They enter the GP as noisy points (an extra noise of
            ``UNCERTAIN_NOISE_FRACTION`` of the objective's standard deviation) and never set
            the incumbent of EI, so one over-optimistic number cannot anchor the search.

    Returns:
        Indices into ``pool_x``.
    """
    pof = FeasibilityModel(seed).fit(feas_x, feas_labels).probability(pool_x)
    x_fit, y_fit = np.asarray(train_x, float), np.asarray(train_y, float)
    flagged = (np.zeros(len(y_fit), bool) if uncertain is None
               else np.asarray(uncertain, bool).copy())
    noise = flagged * (UNCERTAIN_NOISE_FRACTION * float(np.std(y_fit))) ** 2
    gp = FeatureGP(seed).fit(x_fit, y_fit, noise=noise)
    kernel = gp.gp.kernel_
    trusted = y_fit[~flagged] if (~flagged).any() else y_fit
    liar = float(trusted.min())
    picks: list[int] = []
    for _ in range(min(batch_size, len(pool_x))):
        mean, std = gp.predict(pool_x)
        scale = float(np.std(y_fit)) or 1.0
        acq = expected_improvement(mean, std, liar, xi * scale) * pof
        acq[picks] = -np.inf
        k = int(np.argmax(acq))
        picks.append(k)
        x_fit = np.vstack([x_fit, pool_x[k:k + 1]])
        y_fit = np.append(y_fit, liar)
        noise = np.append(noise, 0.0)
        mu, sd = gp._mu, gp._sd
        gp = FeatureGP(seed)
        gp._mu, gp._sd = mu, sd
        gp.fit(x_fit, y_fit, kernel=kernel, noise=noise)
    return picks


def chebyshev_scalarise(y: np.ndarray, weights: np.ndarray, rho: float = 0.05) -> np.ndarray:
    """ParEGO's augmented Chebyshev scalarisation of minimisation objectives.

    Each column of ``y`` (n, m) is scaled to [0, 1] over the observed rows, then
    ``f = max_j w_j y_j + rho Σ_j w_j y_j``.
    """
    y = np.asarray(y, float)
    lo, hi = y.min(0), y.max(0)
    z = (y - lo) / np.where(hi - lo > 0, hi - lo, 1.0)
    w = np.asarray(weights, float)
    return (z * w).max(1) + rho * (z * w).sum(1)


def pareto_mask(y: np.ndarray) -> np.ndarray:
    """Boolean mask of non-dominated rows of ``y`` (n, m), all objectives minimised."""
    y = np.asarray(y, float)
    mask = np.ones(len(y), bool)
    for i in range(len(y)):
        dominated = np.all(y <= y[i], 1) & np.any(y < y[i], 1)
        mask[i] = not dominated.any()
    return mask
