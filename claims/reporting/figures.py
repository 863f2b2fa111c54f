"""The paper-style figures (1-5) of the measured series, every seed drawn (rendering only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from claims.records.ablations import ABLATIONS  # noqa: E402
from claims.statistics.measure import SeriesMeasurements  # noqa: E402
from claims.storage.atomic import atomic_write_png  # noqa: E402
from lpi_core.metrics import random_set_jaccard  # noqa: E402

FIGURES = ("fig1_jstab.png", "fig2_layer_trajectories.png", "fig3_4_layer_profiles.png", "fig5_ablation.png")


def _label(m: SeriesMeasurements, several: bool) -> str:
    return f"{m.family} seed {m.seed}" if several else m.family


def figures(measured: dict[str, list[SeriesMeasurements]], out: Path) -> list[Path]:
    """Figures 1-5 of the paper for the measured series, x = fraction of the training run."""
    several = any(len(s) > 1 for s in measured.values())
    every = [m for series in measured.values() for m in series]
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for ax, kind in zip(axes, ("ffn", "attn")):
        for m in every:
            t = getattr(m, f"jstab_{kind}")
            ax.plot([s / m.total_steps for s in t.steps], 100 * t.points, marker="o", label=_label(m, several))
        for series in measured.values():
            ax.axhline(100 * random_set_jaccard(series[0].units[kind]), ls=":", lw=1, color="grey")
        ax.set(
            title=f"{kind.upper()} top-1% set stability J_stab", xlabel="fraction of training run", ylabel="Jaccard (%)"
        )
        ax.legend(fontsize="small")
    written.append(atomic_write_png(fig, out / FIGURES[0]))

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for ax, kind in zip(axes, ("ffn", "attn")):
        for m in every:
            profile = m.profile(kind)[0]
            ax.plot([s / m.total_steps for s in m.steps], profile.mean(1), marker="o", label=_label(m, several))
        ax.set(
            title=f"mean {kind.upper()} layer LPI over training",
            xlabel="fraction of training run",
            ylabel="mean layer LPI",
        )
        ax.legend(fontsize="small")
    written.append(atomic_write_png(fig, out / FIGURES[1]))

    first = [series[0] for series in measured.values()]
    fig, axes = plt.subplots(len(first), 2, figsize=(11, 3.4 * len(first)), squeeze=False, layout="constrained")
    for row, m in enumerate(first):
        early, late = m.steps[len(m.steps) // 3], m.steps[-1]
        for col, kind in enumerate(("ffn", "attn")):
            profile = m.profile(kind)[0]
            ax = axes[row][col]
            for step in (early, late):
                ax.plot(profile[m.steps.index(step)], marker=".", label=f"step {step}")
            ax.set(title=f"{_label(m, several)} {kind.upper()} layer profile", xlabel="layer", ylabel="layer LPI")
            ax.legend(fontsize="small")
    written.append(atomic_write_png(fig, out / FIGURES[2]))

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), layout="constrained")
    for ax, ablation in zip(axes, ABLATIONS):
        for m in every:
            colour = None  # one colour per model: its held-out (tested), in-sample and random-set drops
            for kind, style in (("held-out", "-"), ("in-sample", "--"), ("random", ":")):
                t = m.drops[ablation if kind == "in-sample" else f"{kind}/{ablation}"]
                label = _label(m, several) if kind == "held-out" else None
                (line,) = ax.plot(
                    [s / m.total_steps for s in t.steps],
                    t.points,
                    linestyle=style,
                    color=colour,
                    marker="o" if label else None,
                    label=label,
                )
                colour = line.get_color()
        ax.set(title=f"HIT@10 drop, {ablation} masked", xlabel="fraction of training run", ylabel="drop (%)")
        ax.legend(fontsize="small")
    fig.suptitle(
        "solid: the set chosen on the other half of the examples (tested); dashed: chosen on all (the paper's); "
        "dotted: a random set of its size"
    )
    written.append(atomic_write_png(fig, out / FIGURES[3]))
    return written
