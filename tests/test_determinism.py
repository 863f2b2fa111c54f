"""Results do not depend on the thread layout: 1 thread and 2 threads give the same bits (lpi_core/reproducible.py).

A record is computed with two threads under `pytest claims` and with one thread per worker under
`pytest claims -n 2`, and so is a miniature series; these tests hold each step (forward capture,
every score, HIT@10 with masks, training) to bit identity across the two layouts, at shapes where
multithreaded kernels did differ on AMD EPYC (the bootstrap means: tests/test_metrics.py).
"""

from __future__ import annotations

import pytest
import torch

from claims.fixtures.miniature.train import TrainConfig, train
from lpi_core import attribute, hits_at_k
from lpi_core.capture import capture_last_position
from lpi_core.reproducible import numeric_environment, parallel_map, single_thread_ops
from lpi_core.tokenization import encode_prompts

from .helpers import facts, tiny_lm, tokenizer

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


@pytest.mark.parametrize("family", ["olmoe", "olmo", "qwen2_moe", "olmo2", "gpt_neox"])
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


def test_numeric_environment_names_the_layout_a_result_came_from(threads):
    one, two = threads(1, numeric_environment), threads(2, numeric_environment)
    assert (one["threads"], two["threads"]) == (1, 2)
    assert one["aten_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert one["cpu"] and one["cores"] >= 1


def test_single_thread_ops_nest_and_restore_the_thread_count(threads):
    def inside():
        with single_thread_ops() as outer:
            with single_thread_ops() as nested:
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1  # the inner block leaves the outer one's setting
            seen = parallel_map(lambda _: torch.get_num_threads(), range(4), outer)
        return outer, nested, seen, torch.get_num_threads()

    assert threads(2, inside) == (2, 2, [1, 1, 1, 1], 2)
    assert parallel_map(lambda x: x * x, range(5), workers=3) == [0, 1, 4, 9, 16]  # in order


@pytest.mark.parametrize("family", ["olmoe", "olmo"])
def test_training_is_bit_identical_with_one_and_two_threads(family, threads):
    """A miniature series built by an xdist worker (one thread) equals one built by `pytest claims` (two)."""
    prompts, answers = facts(400)
    stream = torch.tensor([i for p, a in zip(prompts, answers) for i in tokenizer()(f"{p} {a}.")["input_ids"]])
    config = TrainConfig(steps=6, batch_size=1, seq_len=8, lr=3e-3, warmup_steps=1)  # 8-row products: see test above

    def trained():
        model = tiny_lm(family).model
        losses = train(model, stream, config, save_at=(), save=lambda *_: None)
        return model.state_dict(), losses

    (one, losses_one), (two, losses_two) = threads(1, trained), threads(2, trained)
    assert losses_one == losses_two
    assert all(torch.equal(one[name], two[name]) for name in one)
