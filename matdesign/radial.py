"""Radial basis of the edge lengths: Bessel functions times a smooth polynomial envelope."""

from __future__ import annotations

import math

import torch


class BesselBasis(torch.nn.Module):
    """b_n(r) = sqrt(2/r_c) sin(n π r / r_c) / r, n = 1..num_basis (Klicpera et al. 2020).

    The frequencies n π / r_c are trainable, starting at their analytic values.
    """

    def __init__(self, cutoff: float, num_basis: int = 8) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.prefactor = math.sqrt(2.0 / cutoff)
        self.frequencies = torch.nn.Parameter(
            torch.arange(1, num_basis + 1, dtype=torch.float32) * math.pi / cutoff
        )

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Args: r (m,) Å, all > 0. Returns (m, num_basis)."""
        return self.prefactor * torch.sin(self.frequencies * r[:, None]) / r[:, None]


def radial_features(basis: BesselBasis, r: torch.Tensor, p: int = 6
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The envelope f(r) (m,) and the edge radial features b_n(r) f(r) (m, num_basis) that the
    layers' radial networks take; r (m,) in Å, cutoff from ``basis``."""
    envelope = polynomial_envelope(r, basis.cutoff, p)
    return envelope, basis(r) * envelope[:, None]


def polynomial_envelope(r: torch.Tensor, cutoff: float, p: int = 6) -> torch.Tensor:
    """Smooth cutoff f(x), x = r/r_c: f(0)=1 and f, f', f'' vanish at x = 1 (DimeNet, eq. 8).

    f(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2) for x < 1, else 0.
    """
    x = r / cutoff
    # Horner form of the bracket: one power instead of three (fewer operations per call)
    a, b, c = -0.5 * (p + 1) * (p + 2), float(p * (p + 2)), -0.5 * p * (p + 1)
    f = 1.0 + x**p * (a + x * (b + c * x))
    return f * (x < 1.0)
