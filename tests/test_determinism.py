"""Scores do not depend on the thread layout: 1 thread and 2 threads give the same bits.

A record is computed with two threads under `pytest claims` and with one thread per worker under
`pytest claims -n 2`; these tests hold each step of it (forward capture, every score, HIT@10 with
masks) to bit identity across the two layouts, on the CPU this suite runs on (the bootstrap means:
tests/test_metrics.py).
"""
from __future__ import annotations

import pytest
import torch

from lpi_core import attribute, hits_at_k
from lpi_core.capture import capture_last_position
from lpi_core.loading import ATTENTION
from lpi_core.tokenization import encode_prompts

from .helpers import facts, tiny_lm

SCORES = ("ffn", "attn", "heads", "ffn_layer", "attn_layer")


@pytest.fixture
def threads():
    """Run a function under a given torch thread count; the original count is restored afterwards."""
    before = torch.get_num_threads()

    def run(count: int, fn):
        torch.set_num_threads(count)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    yield run
    torch.set_num_threads(before)


@pytest.mark.parametrize("family", ["olmoe", "olmo", "qwen2_moe"])
def test_capture_and_scores_are_bit_identical_with_one_and_two_threads(family, threads):
    lm = tiny_lm(family)
    prompts, answers = facts(300)
    encoded = encode_prompts(lm.tokenizer, prompts, lm.max_positions)

    def record():
        captured = capture_last_position(lm, encoded, batch_size=32)
        att = attribute(lm, prompts, targets=answers, reduce="none", batch_size=32)
        hits = hits_at_k(lm, prompts, att.target_ids, mask_heads=[(0, 1), (1, 2)], batch_size=32)
        return captured, att, hits

    (cap1, att1, hits1), (cap2, att2, hits2) = threads(1, record), threads(2, record)
    for name in ("layer_input", "attn_output", "head_values", "ffn_input", "ffn_output", "final_residual", "logits"):
        assert torch.equal(getattr(cap1, name), getattr(cap2, name)), name
    for name in SCORES:
        assert torch.equal(getattr(att1, name), getattr(att2, name)), name
    assert torch.equal(hits1, hits2)


def test_models_attend_eagerly():
    """The fused SDPA kernel's reductions depend on the thread count on some CPUs; eager's do not."""
    assert ATTENTION == "eager"
    assert tiny_lm("olmoe").model.config._attn_implementation == "eager"
