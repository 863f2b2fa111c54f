"""How unit scores are computed at one point of the residual stream (base logits z = proj(h)):

- "exact": Gated-LPI itself, the paper's score (lpi.neuron_lpi, lpi.log_prob_increase);
- "first-order": its tangent in the unit's coefficient (lpi.first_order_neuron_lpi), an opt-in
  approximation that never forms a vocabulary-sized image per neuron.

Layer-level scores are exact in both modes (engine.py).
"""

from __future__ import annotations

import torch

from .lpi import first_order_neuron_lpi, log_prob_increase, lpi_gradient, neuron_lpi
from .projection import FrozenProjection

MODES = ("exact", "first-order")


class ExactScores:
    """Gated-LPI of units added at the point whose base logits are `z` (targets `w`)."""

    def __init__(
        self, proj: FrozenProjection, z: torch.Tensor, w: torch.Tensor, max_elements: int, fused: bool = False
    ) -> None:
        self.proj, self.z, self.w, self.max_elements, self.fused = proj, z, w, max_elements, fused

    def vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """Scores of per-example vectors [B, K, H] -> [B, K], in chunks of examples of `max_elements` logits."""
        step = max(1, self.max_elements // (vectors.shape[1] * self.z.shape[-1]))
        return torch.cat(
            [
                log_prob_increase(
                    self.z[r : r + step],
                    self.proj.logits(vectors[r : r + step], slice(r, r + step)),
                    self.w[r : r + step],
                )
                for r in range(0, vectors.shape[0], step)
            ]
        )

    def neurons(
        self, coefficients: torch.Tensor, columns: torch.Tensor, rows: torch.Tensor | slice = slice(None)
    ) -> torch.Tensor:
        """Scores of neurons `coefficients[r, n] · columns[n]` [R, N] for the examples `rows`."""
        return neuron_lpi(
            self.z[rows], coefficients, self.proj.images(columns), self.w[rows], self.max_elements, self.fused
        )


class FirstOrderScores(ExactScores):
    """The tangent of Gated-LPI at zero coefficient, at the same point (one gradient per example)."""

    def __init__(
        self, proj: FrozenProjection, z: torch.Tensor, w: torch.Tensor, max_elements: int, fused: bool = False
    ) -> None:
        super().__init__(proj, z, w, max_elements, fused)
        self.gradient = lpi_gradient(z, proj.unembedding, w)  # [B, H]

    def vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.proj.scale[:, None] * torch.einsum("bh,bkh->bk", self.gradient, self.proj.normalize(vectors))

    def neurons(
        self, coefficients: torch.Tensor, columns: torch.Tensor, rows: torch.Tensor | slice = slice(None)
    ) -> torch.Tensor:
        return first_order_neuron_lpi(self.gradient[rows], coefficients, self.proj.normalize(columns))


def scores_at(
    mode: str, proj: FrozenProjection, z: torch.Tensor, w: torch.Tensor, max_elements: int, fused: bool = False
) -> ExactScores:
    """The scorer of `mode` at base logits `z` (`fused`: the exact kernel's fused pass, fused.py)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return (ExactScores if mode == "exact" else FirstOrderScores)(proj, z, w, max_elements, fused)
