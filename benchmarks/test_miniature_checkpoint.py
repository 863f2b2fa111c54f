"""Whole 906-example attributions of the miniature `compact` run's checkpoints (seed 0 built on
first use, about 4 minutes on 2 cores): the exact engine against the reference, and the first-order mode's
speed and fidelity against exact (Spearman of the dataset-level scores I(n), Jaccard of the
top-1% sets) at checkpoints from early to last.

    pytest benchmarks/test_miniature_checkpoint.py -s
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.timing import timed
from claims.fixtures.miniature.build import build_miniature
from claims.fixtures.miniature.presets import PRESETS
from lpi_core import evaluation_set
from lpi_core.capture import capture_last_position
from lpi_core.engine import score_capture
from lpi_core.metrics import spearman, topk_jaccard
from lpi_core.reference import reference_scores
from lpi_core.tokenization import encode_prompts, target_token_ids

PRESET = "compact"  # the README's figures; the default takes far longer to build
STEPS = (
    PRESETS[PRESET].checkpoints[3],
    PRESETS[PRESET].checkpoints[8],
    PRESETS[PRESET].checkpoints[-1],
)  # early, middle, last


@pytest.fixture(scope="module")
def miniature():
    return build_miniature(PRESET)


def captured_checkpoint(miniature, family: str, step: int):
    lm = miniature.series(family).at(step).load()
    data = evaluation_set()
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, data["prompt"]), batch_size=32)
    return lm, captured, target_token_ids(lm.tokenizer, data["object"])


@pytest.mark.parametrize("family", ["moe", "dense"])
def test_exact_engine_vs_reference_on_a_whole_checkpoint(benchmark, miniature, family):
    lm, captured, targets = captured_checkpoint(miniature, family, STEPS[-1])
    exact = benchmark.pedantic(score_capture, args=(lm.adapter, captured, targets), rounds=1, iterations=1)
    reference, reference_s = timed(reference_scores, lm, captured, targets)
    for name in ("ffn", "attn", "heads", "ffn_layer", "attn_layer"):
        torch.testing.assert_close(getattr(exact, name), getattr(reference, name), atol=1e-4, rtol=1e-4, msg=name)
    speedup = reference_s / benchmark.stats.stats.min
    benchmark.extra_info.update(examples=len(targets), reference_s=reference_s, speedup=speedup)
    print(
        f"\n{family} step {STEPS[-1]}, 906 examples: exact {benchmark.stats.stats.min:.1f} s, "
        f"reference {reference_s:.1f} s, {speedup:.1f}x"
    )


@pytest.mark.parametrize("family", ["moe", "dense"])
def test_first_order_speed_and_fidelity(benchmark, miniature, family):
    rows, exact_total, first_total = [], 0.0, 0.0
    for step in STEPS:
        lm, captured, targets = captured_checkpoint(miniature, family, step)
        exact, exact_s = timed(score_capture, lm.adapter, captured, targets)
        if step == STEPS[-1]:
            first = benchmark.pedantic(
                score_capture, args=(lm.adapter, captured, targets), kwargs=dict(mode="first-order"), rounds=3
            )
            first_s = benchmark.stats.stats.min
        else:
            first, first_s = timed(score_capture, lm.adapter, captured, targets, mode="first-order")
        exact_total, first_total = exact_total + exact_s, first_total + first_s
        exact_i, first_i = exact.mean(), first.mean()
        rows.append(
            {
                "step": step,
                "ffn_spearman": spearman(first_i.ffn[exact_i.ffn != 0], exact_i.ffn[exact_i.ffn != 0]),
                "attn_spearman": spearman(first_i.attn, exact_i.attn),
                "ffn_top1pct_jaccard": topk_jaccard(first_i.ffn, exact_i.ffn),
                "attn_top1pct_jaccard": topk_jaccard(first_i.attn, exact_i.attn),
                "exact_s": exact_s,
                "first_order_s": first_s,
            }
        )
    benchmark.extra_info.update(family=family, checkpoints=rows, speedup=exact_total / first_total)
    print(
        f"\n{family}: first-order is {exact_total / first_total:.0f}x faster than exact "
        "(neuron and head scores, 906 examples)"
    )
    for r in rows:
        print(
            f"  step {r['step']:>3}: Spearman ffn {r['ffn_spearman']:.3f} attn {r['attn_spearman']:.3f}; "
            f"top-1% Jaccard ffn {r['ffn_top1pct_jaccard']:.2f} attn {r['attn_top1pct_jaccard']:.2f}; "
            f"exact {r['exact_s']:.1f} s, first-order {r['first_order_s']:.2f} s"
        )
