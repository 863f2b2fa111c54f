"""Scores do not depend on the thread layout: 1 thread and 2 threads give the same bits (lpi_core/reproducible.py).

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
from lpi_core.reproducible import mkl_reproducibility, numeric_environment
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


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch without MKL: its BLAS has no strict mode to check")
def test_small_matrix_products_are_bit_identical_with_one_and_two_threads(threads):
    """MKL's strict reproducibility (set by importing lpi_core): without it, 5-11-row float32 products
    (a prompt's tokens, the tokens routed to one expert) differ between 1 and 2 threads on AMD EPYC."""
    generator = torch.Generator().manual_seed(0)
    for rows in range(1, 41):
        x, w = torch.randn(rows, 64, generator=generator), torch.randn(64, 128, generator=generator)
        assert torch.equal(threads(1, lambda: x @ w), threads(2, lambda: x @ w)), rows
    assert mkl_reproducibility() == "strict"


def test_numeric_environment_names_the_layout_a_result_came_from(threads):
    one, two = threads(1, numeric_environment), threads(2, numeric_environment)
    assert (one["threads"], two["threads"]) == (1, 2)
    assert one["aten_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert one["mkl"] == ("strict" if torch.backends.mkl.is_available() else "no MKL")
    assert one["cpu"] and one["cores"] >= 1
