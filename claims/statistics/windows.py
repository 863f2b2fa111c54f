"""The paper's steps placed on one scale for both models, and its windows on that scale.

The paper's step windows are one stretch of training for both models (both run ~4M tokens a
step). On a miniature series the paper's first checkpoint (10K) maps to the knowledge onset and
the rest of the run maps linearly, by fraction of the post-onset stretch, onto 10K .. 1.2M (the
end of the longer paper run, OLMoE's): `paper(x) = 10K + (x - onset) / (end - onset) · 1.19M`.
Both families of a seed share one mapping, anchored at the later of their two onsets, so a window
means the same stretch of training for both (`--dense-end end`, the default: both miniature runs
are equally long, and the paper's step k is the same token count for both of its models). With
`--dense-end 600k` the dense run's end maps to 600K, OLMo's last step, instead: its final,
annealed checkpoints stand for OLMo's, and no dense checkpoint lies past 600K. Checkpoints before
onset have no paper analogue (shown, never used). The paper suite keeps the paper's real steps;
a local series (a user's run) is placed by fraction of its run.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_FIRST = 10_000  # the paper's first analysed checkpoint
PAPER_END = 1_200_000  # the end of the longer paper run (OLMoE): a miniature run's last step maps here
DENSE_PAPER_END = 600_000  # the end of OLMo's run: the dense miniature run's last step with --dense-end 600k
END = -1  # a window bound or point meaning "the end of the run"


@dataclass(frozen=True)
class Window:
    name: str
    first: int  # paper steps
    last: int  # paper steps; END = the end of the run


@dataclass(frozen=True)
class PaperScale:
    """A series' steps on the paper's scale: `paper_steps[i]` is None where step i has no analogue."""

    steps: tuple[int, ...]
    paper_steps: tuple[float | None, ...]
    onset: int | None  # the anchor (a miniature series), None for the paper's own steps or no onset
    anchored: str  # how the anchor was chosen, for the report

    @property
    def usable(self) -> list[int]:
        return [s for s, p in zip(self.steps, self.paper_steps) if p is not None]

    def paper_step(self, step: int) -> float | None:
        return self.paper_steps[self.steps.index(step)]

    def window(self, window: Window) -> list[int]:
        """The usable checkpoints whose paper step lies in the window (1% slack at the ends)."""
        last = PAPER_END if window.last == END else window.last
        return [
            s for s, p in zip(self.steps, self.paper_steps) if p is not None and 0.99 * window.first <= p <= 1.01 * last
        ]

    def pairs(self, window: Window) -> list[int]:
        """Consecutive pairs with both checkpoints in the window, by their later step."""
        chosen = self.window(window)
        return [b for a, b in zip(self.steps[:-1], self.steps[1:]) if a in chosen and b in chosen]

    def pair_nearest(self, paper_step: int) -> int | None:
        """The later step of the usable pair whose later checkpoint is nearest `paper_step` (END: the last)."""
        candidates = [
            b
            for a, b in zip(self.steps[:-1], self.steps[1:])
            if self.paper_step(a) is not None and self.paper_step(b) is not None
        ]
        if not candidates:
            return None
        if paper_step == END:
            return candidates[-1]
        return min(candidates, key=lambda s: abs(self.paper_step(s) - paper_step))

    def describe(self) -> str:
        shown = ", ".join(
            f"{s}→{'—' if p is None else f'{p / 1000:.0f}K'}" for s, p in zip(self.steps, self.paper_steps)
        )
        return f"onset {self.onset} ({self.anchored}): {shown}"


def miniature_scale(
    steps: list[int], end: int, onset: int | None, anchored: str, paper_end: int = PAPER_END
) -> PaperScale:
    """Onset → 10K, the run's end → `paper_end` (1.2M), linear between; steps before onset have no analogue."""
    if onset is None or onset >= end:
        return PaperScale(tuple(steps), tuple(None for _ in steps), onset, anchored)
    span = (paper_end - PAPER_FIRST) / (end - onset)
    paper = tuple(PAPER_FIRST + (s - onset) * span if s >= onset else None for s in steps)
    return PaperScale(tuple(steps), paper, onset, anchored)


def paper_scale(steps: list[int]) -> PaperScale:
    """The paper suite: its own steps; checkpoints before 10K are outside every window anyway."""
    return PaperScale(tuple(steps), tuple(float(s) for s in steps), None, "the paper's real steps")


def run_fraction_scale(steps: list[int], total_steps: int) -> PaperScale:
    """A local series (a user's own run): each step by its fraction of the run, the end at 1.2M."""
    paper = tuple(PAPER_END * s / total_steps for s in steps)
    return PaperScale(tuple(steps), paper, None, "the fraction of its run (a local series): step / run length × 1.2M")


EARLY = Window("10K-70K", 10_000, 70_000)
LATE = Window("100K-600K", 100_000, 600_000)
WITHIN_100K = Window("10K-100K", 10_000, 100_000)
CONSOLIDATION = Window("10K-600K", 10_000, 600_000)
FULL_RUN = Window("10K-end", 10_000, END)
AFTER_200K = Window("200K-end", 200_000, END)
WINDOWS = (EARLY, LATE, WITHIN_100K, CONSOLIDATION, AFTER_200K, FULL_RUN)


def shared_scales(
    onsets: dict[str, dict[int, int | None]],
    steps: dict[str, dict[int, list[int]]],
    ends: dict[str, int],
    paper_ends: dict[str, int] | None = None,
) -> dict[tuple[str, int], PaperScale]:
    """The miniature mapping of every (family, seed): anchored at the later onset of the families
    given for that seed (both, in a run with contrasts), so the families share one scale; a family's
    run ends at its `paper_ends` step (default 1.2M)."""
    scales = {}
    families = sorted(onsets)
    for seed in sorted(set.intersection(*(set(onsets[f]) for f in families))) if families else []:
        found = [onsets[f][seed] for f in families]
        anchor = None if any(o is None for o in found) else max(found)
        if len(families) > 1:
            how = "the later of " + " and ".join(f"{f} {o}" for f, o in zip(families, found))
        else:
            how = f"{families[0]}'s own onset (the other family is not in this run)"
        for f in families:
            scales[(f, seed)] = miniature_scale(
                steps[f][seed], ends[f], anchor, how, (paper_ends or {}).get(f, PAPER_END)
            )
    return scales
