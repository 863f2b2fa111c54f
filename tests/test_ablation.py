"""Masking heads and FFN neurons, checked against independent manual edits of the weights."""

from __future__ import annotations

import pytest
import torch

from lpi_core import hit_at_k, hits_at_k, masked
from lpi_core.capture import last_position_logits
from lpi_core.tokenization import encode_prompts, target_token_ids
from tests.helpers import FAMILIES, MOE_FAMILIES, facts, tiny_lm

PROMPTS, ANSWERS = facts(40)


def logits(lm):
    return last_position_logits(lm, encode_prompts(lm.tokenizer, PROMPTS), batch_size=8)


@pytest.mark.parametrize("family", FAMILIES)
def test_masked_head_equals_zeroed_o_proj_input_by_hand(family):
    lm = tiny_lm(family)
    layer, head, d = 1, 2, lm.adapter.head_dim
    before = logits(lm)
    with masked(lm, heads=[(layer, head)]):
        hooked = logits(lm)
    o_proj = lm.adapter.o_proj(layer)
    handle = o_proj.register_forward_pre_hook(
        lambda m, a: (
            torch.cat(
                [
                    a[0][..., : head * d],
                    torch.zeros_like(a[0][..., head * d : (head + 1) * d]),
                    a[0][..., (head + 1) * d :],
                ],
                -1,
            ),
        )
    )
    by_hand = logits(lm)
    handle.remove()
    torch.testing.assert_close(hooked, by_hand)
    assert not torch.allclose(hooked, before)
    torch.testing.assert_close(logits(lm), before)  # the mask is gone after the block


@pytest.mark.parametrize("family", ["olmo", "llama", "olmo2", "gpt_neox"])
def test_masked_dense_neuron_equals_zero_coefficient(family):
    lm = tiny_lm(family)
    layer, neuron = 0, 5
    with masked(lm, ffn=[(layer, 0, neuron)]):
        hooked = logits(lm)
    mlp = lm.adapter.mlp(layer)
    down = mlp.dense_4h_to_h if family == "gpt_neox" else mlp.down_proj

    def zero_coefficient(module, args):
        m = args[0].clone()
        m[..., neuron] = 0
        return (m,)

    handle = down.register_forward_pre_hook(zero_coefficient)
    by_hand = logits(lm)
    handle.remove()
    torch.testing.assert_close(hooked, by_hand)
    assert not torch.allclose(hooked, logits(lm))


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_masked_expert_neuron_equals_zeroed_gate_and_up_rows(family):
    """act(0) * 0 = 0: zeroing the neuron's gate and up rows zeroes its coefficient independently."""
    lm = tiny_lm(family)
    layer, expert, neuron = 1, 2, 3
    before = logits(lm)
    with masked(lm, ffn=[(layer, expert, neuron)]):
        hooked = logits(lm)
    experts = lm.adapter.mlp(layer).experts
    ffn_dim = experts.down_proj.shape[-1]
    saved = experts.gate_up_proj.detach().clone()
    with torch.no_grad():
        experts.gate_up_proj[expert, neuron] = 0
        experts.gate_up_proj[expert, ffn_dim + neuron] = 0
    by_hand = logits(lm)
    with torch.no_grad():
        experts.gate_up_proj.copy_(saved)
    torch.testing.assert_close(hooked, by_hand)
    assert not torch.allclose(hooked, before)
    torch.testing.assert_close(logits(lm), before)


def test_shared_expert_neuron_mask():
    lm = tiny_lm("qwen2_moe")
    before = logits(lm)
    with masked(lm, ffn=[(0, "shared", 1)]):
        assert not torch.allclose(logits(lm), before)
    with pytest.raises(ValueError, match="no shared expert"):
        with masked(tiny_lm("olmoe"), ffn=[(0, "shared", 1)]):
            pass


def test_hit_at_k_counts_by_hand():
    lm = tiny_lm("llama")
    raw = logits(lm)
    targets = raw.argsort(-1, descending=True)[:, 3]  # every target is exactly 4th
    targets[::2] = raw.argmin(-1)[::2]  # half the targets are last
    assert hit_at_k(lm, PROMPTS, targets, k=4) == pytest.approx(0.5)
    assert hit_at_k(lm, PROMPTS, targets, k=3) == 0.0
    assert hits_at_k(lm, PROMPTS, targets, k=4).tolist() == [i % 2 == 1 for i in range(len(PROMPTS))]


def test_masks_out_of_range_are_rejected():
    lm = tiny_lm("olmoe")
    with pytest.raises(ValueError, match="out of range"):
        hit_at_k(lm, PROMPTS, target_token_ids(lm.tokenizer, ANSWERS), mask_heads=[(0, 9)])
    with pytest.raises(ValueError, match="out of range"):
        hit_at_k(lm, PROMPTS, target_token_ids(lm.tokenizer, ANSWERS), mask_ffn=[(0, 7, 0)])
