"""The training pieces against their formulas: schedule, plateau, EMA, weighted loss."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from matdesign.training.config import TrainConfig
from matdesign.training.ema import ExponentialMovingAverage
from matdesign.training.loss import weighted_loss
from matdesign.training.schedule import Plateau, budget_fraction, energy_weight, learning_rate


def test_cosine_learning_rate_end_points_and_plateau():
    cfg = dataclasses.replace(TrainConfig(), lr=1e-2, lr_min_fraction=0.1)
    assert learning_rate(cfg, 0.0) == pytest.approx(1e-2)
    assert learning_rate(cfg, 1.0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 0.5) == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5))
    assert learning_rate(cfg, 0.5, plateau_factor=0.5) == pytest.approx(
        0.5 * learning_rate(cfg, 0.5))


def test_budget_fraction_follows_the_clock_when_it_runs_out_first():
    cfg = dataclasses.replace(TrainConfig(), max_time_min=10.0)
    assert budget_fraction(10, 100, cfg, elapsed_s=0.0) == pytest.approx(0.1)
    assert budget_fraction(10, 100, cfg, elapsed_s=300.0) == pytest.approx(0.5)
    assert budget_fraction(10, 100, cfg, elapsed_s=6000.0) == 1.0


def test_late_stage_multiplies_the_energy_weight():
    cfg = dataclasses.replace(TrainConfig(), energy_weight=2.0, late_fraction=0.2,
                              late_energy_factor=4.0)
    assert energy_weight(cfg, 0.79) == 2.0 and energy_weight(cfg, 0.8) == 8.0


def test_plateau_cuts_after_patience_and_resets_on_improvement():
    cfg = dataclasses.replace(TrainConfig(), plateau_patience=2, plateau_factor=0.5)
    p = Plateau()
    for improved, factor in ((False, 1.0), (False, 0.5), (False, 0.5), (True, 0.5),
                             (False, 0.5), (False, 0.25)):
        p.update(improved, cfg)
        assert p.factor == factor


def test_ema_is_the_weighted_average():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ExponentialMovingAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 0.9 * 1.0 + 0.1 * 3.0))
    with pytest.raises(ValueError):
        ExponentialMovingAverage(model, decay=1.0)


def test_weighted_loss_combines_terms_with_the_config_weights():
    cfg = dataclasses.replace(TrainConfig(), forces_weight=3.0, stress_weight=5.0,
                              head_weight=0.5)
    terms = {k: torch.tensor(v) for k, v in
             (("energy", 1.0), ("forces", 2.0), ("stress", 4.0), ("heads", 8.0))}
    assert float(weighted_loss(terms, cfg, w_energy=7.0)) == pytest.approx(
        7 * 1 + 3 * 2 + 5 * 4 + 0.5 * 7 * 8)
    assert math.isfinite(float(weighted_loss({k: terms[k] for k in ("energy", "forces",
                                                                    "stress")}, cfg, 1.0)))


def test_fused_training_layers_give_e3nns_loss_and_gradients(monkeypatch):
    """Training's fused ℓ ≤ 1 layers (matdesign.training.fused) against the e3nn kernels of the
    same weights: loss and every parameter gradient (double backward through forces and
    stress) to rounding in float64, and the fused kernel is really the one that ran."""
    import copy

    from ase.build import bulk
    from ase.calculators.emt import EMT

    import matdesign.training.fused as fused_module
    from matdesign.training.data import collate, to_frame
    from matdesign.training.fused import fuse_for_training
    from matdesign.training.loss import loss_terms
    from tests.helpers import make_model, sheared_cell

    reference = make_model(arch="two_body", lmax=1).train()
    frames = []
    for k, atoms in enumerate([sheared_cell(seed=3), bulk("Cu", "fcc", a=3.6, cubic=True)
                               .repeat((2, 1, 1))]):
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.get_stress()
        frames.append(to_frame(atoms, reference.config.cutoff, reference.species_index,
                               f"frame {k}"))
    batch = collate(frames)
    fused = copy.deepcopy(reference)
    assert fuse_for_training(fused) == 2
    calls = []
    real = fused_module.fused_messages
    monkeypatch.setattr(fused_module, "fused_messages",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = TrainConfig()
    results = []
    for model in (reference, fused):
        loss = weighted_loss(loss_terms(model, batch), cfg, cfg.energy_weight)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results.append((float(loss.detach()), grads))
    assert calls, "the fused training kernel never ran"
    (loss_ref, g_ref), (loss_fused, g_fused) = results
    assert loss_ref > 1e-3
    assert math.isclose(loss_fused, loss_ref, rel_tol=1e-12)
    assert g_ref.keys() == g_fused.keys() and len(g_ref) > 10
    for name, g in g_ref.items():
        assert torch.allclose(g_fused[name], g, rtol=1e-9, atol=1e-12 * g.abs().max()), name
    # Evaluation mode keeps e3nn's kernels.
    calls.clear()
    fused.eval()
    loss_terms(fused, batch)
    assert not calls
