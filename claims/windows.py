"""The paper's step windows, mapped to any checkpoint series by fraction of its training run.

A window is given in the paper model's own steps (OLMoE: 1.2M, OLMo: 600K); `10K–70K` of OLMoE is
0.8%–5.8% of its run, and takes the checkpoints of another series that lie in that fraction.
"""
from __future__ import annotations

from dataclasses import dataclass

from fixtures.hub import PAPER_MODELS

PAPER_TOTAL_STEPS = {family: model.total_steps for family, model in PAPER_MODELS.items()}


@dataclass(frozen=True)
class Window:
    name: str
    first: int  # paper steps; 0 = the start of the run
    last: int  # paper steps; -1 = the end of the run

    def fractions(self, family: str) -> tuple[float, float]:
        total = PAPER_TOTAL_STEPS[family]
        return self.first / total, 1.0 if self.last == -1 else self.last / total


def select(steps: list[int], total_steps: int, window: Window, family: str) -> list[int]:
    """The checkpoints of a series (steps out of `total_steps`) inside the window, with a 1% slack."""
    lo, hi = window.fractions(family)
    return [s for s in steps if lo - 0.01 * max(lo, 0.01) <= s / total_steps <= hi * 1.01 + 1e-12]


def nearest(steps: list[int], total_steps: int, paper_step: int, family: str) -> int:
    """The checkpoint nearest, by fraction of the run, to `paper_step` of the paper model (-1: the last)."""
    if paper_step == -1:
        return steps[-1]
    target = paper_step / PAPER_TOTAL_STEPS[family]
    return min(steps, key=lambda s: abs(s / total_steps - target))


EARLY = Window("10K-70K", 10_000, 70_000)
LATE = Window("100K-600K", 100_000, 600_000)
WITHIN_100K = Window("10K-100K", 10_000, 100_000)
CONSOLIDATION = Window("10K-600K", 10_000, 600_000)
FULL_RUN = Window("10K-end", 10_000, -1)
PLATEAU = Window("200K-end", 200_000, -1)
WINDOWS = (EARLY, LATE, WITHIN_100K, CONSOLIDATION, PLATEAU, FULL_RUN)
