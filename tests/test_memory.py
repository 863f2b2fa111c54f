"""Out of GPU memory: the engine retries a layer with smaller chunks, the forward pass with smaller
batches, and fails with a clear message only at the smallest size (OOM simulated on the CPU)."""

from __future__ import annotations

import pytest
import torch

from lpi_core import hits_at_k, modes
from lpi_core.capture import capture_last_position
from lpi_core.engine import score_capture
from lpi_core.memory import MIN_ELEMENTS, chunk_elements, halving_on_oom
from lpi_core.tokenization import encode_prompts
from tests.helpers import facts, tiny_lm

PROMPTS, ANSWERS = facts()
SIMULATED = "CUDA out of memory (simulated)"


def test_cpu_chunks_default_to_2_24_values():
    assert chunk_elements("cpu") == 1 << 24


def test_halving_stops_at_the_first_size_that_fits():
    tried = []

    def run(size: int) -> int:
        tried.append(size)
        if size > 100:
            raise torch.cuda.OutOfMemoryError(SIMULATED)
        return size

    assert halving_on_oom(run, 1000, 10, "x") == 62
    assert tried == [1000, 500, 250, 125, 62]


def test_a_layer_out_of_memory_is_redone_in_smaller_chunks(monkeypatch):
    lm = tiny_lm("olmoe")
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, PROMPTS[:12]))
    targets = captured.logits.argmax(-1)
    direct = score_capture(lm.adapter, captured, targets, max_elements=1 << 16)
    real, sizes, succeeded = modes.neuron_lpi, [], []

    def small_memory(*args):
        sizes.append(args[4])
        if args[4] > 1 << 16:
            raise torch.cuda.OutOfMemoryError(SIMULATED)
        succeeded.append(args[4])
        return real(*args)

    monkeypatch.setattr(modes, "neuron_lpi", small_memory)
    retried = score_capture(lm.adapter, captured, targets, max_elements=1 << 20)
    for name in ("ffn", "attn", "heads", "ffn_layer", "attn_layer"):
        assert torch.equal(getattr(retried, name), getattr(direct, name)), name
    # the layers are scored side by side, so their calls interleave: check sizes, not their order
    assert sizes[0] == 1 << 20 and (1 << 17) in sizes and set(succeeded) == {1 << 16}


def test_out_of_memory_at_the_smallest_chunk_names_the_layer(monkeypatch):
    lm = tiny_lm("olmo")
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, PROMPTS[:4]))

    def no_memory(*args):
        raise torch.cuda.OutOfMemoryError(SIMULATED)

    monkeypatch.setattr(modes, "neuron_lpi", no_memory)
    with pytest.raises(
        torch.cuda.OutOfMemoryError,
        match=f"attribution of layer 0: out of GPU memory even with chunks of {MIN_ELEMENTS}",
    ):
        score_capture(lm.adapter, captured, captured.logits.argmax(-1))


def test_a_batch_out_of_memory_is_split_and_the_capture_is_unchanged():
    lm = tiny_lm("olmoe")
    encoded = encode_prompts(lm.tokenizer, PROMPTS[:40:4])
    expected = capture_last_position(lm, encoded, batch_size=1)
    batches = []

    def fail_big_batches(module, args, kwargs):  # fires in layer 1, after layer 0's hooks kept their values
        batches.append(args[0].shape[0] if args else kwargs["hidden_states"].shape[0])
        if batches[-1] > 3:
            raise torch.cuda.OutOfMemoryError(SIMULATED)

    handle = lm.adapter.layers[1].register_forward_pre_hook(fail_big_batches, with_kwargs=True)
    try:
        split = capture_last_position(lm, encoded, batch_size=8)
        hits = hits_at_k(lm, PROMPTS[:40:4], expected.logits.argmax(-1), batch_size=8)
    finally:
        handle.remove()
    assert batches[:3] == [8, 4, 2] and 8 in batches and 2 in batches
    for name, value in vars(expected).items():
        if value is not None:
            torch.testing.assert_close(getattr(split, name), value, atol=1e-5, rtol=1e-5, msg=name)
            assert getattr(split, name).shape == value.shape
    assert hits.all()  # every target is the model's own top-1


def test_a_single_prompt_out_of_memory_is_raised():
    lm = tiny_lm("olmo")

    def always(module, args, kwargs):
        raise torch.cuda.OutOfMemoryError(SIMULATED)

    handle = lm.adapter.layers[0].register_forward_pre_hook(always, with_kwargs=True)
    try:
        with pytest.raises(torch.cuda.OutOfMemoryError, match="a single .*-token prompt is out of GPU memory"):
            capture_last_position(lm, encode_prompts(lm.tokenizer, PROMPTS[:3]), batch_size=2)
    finally:
        handle.remove()
