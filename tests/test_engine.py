"""The fast engine against the reference and against the model's own forward pass."""

from __future__ import annotations

import pytest
import torch

from lpi_core import attribute
from lpi_core.capture import capture_last_position
from lpi_core.engine import score_capture
from lpi_core.lpi import log_prob_increase, neuron_lpi
from lpi_core.projection import FrozenProjection
from lpi_core.reference import reference_scores
from lpi_core.tokenization import encode_prompts, target_token_ids
from tests.helpers import FAMILIES, MOE_FAMILIES, facts, needs_fused_kernel, tiny_lm

PROMPTS, ANSWERS = facts()
SAMPLE = slice(0, 906, 151)  # six examples from different relations


def test_log_prob_increase_by_hand():
    base = torch.tensor([[0.0, 0.0]])
    delta = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    # adding [1, 0]: log(e/(e+1)) - log(1/2); adding [0, 2]: log(1/(1+e^2)) - log(1/2)
    expected = torch.tensor(
        [
            [
                1 - torch.log(torch.tensor(torch.e + 1)) + torch.log(torch.tensor(2.0)),
                -torch.log(torch.tensor(1 + torch.e**2)) + torch.log(torch.tensor(2.0)),
            ]
        ]
    )
    torch.testing.assert_close(log_prob_increase(base, delta, torch.tensor([0])), expected)


@pytest.mark.parametrize("fused", [False, True])
def test_neuron_lpi_equals_explicit_deltas_in_any_chunking(fused):
    if fused:
        needs_fused_kernel()
    torch.manual_seed(0)
    base, coeff, images = torch.randn(5, 11), torch.randn(5, 7), torch.randn(7, 11)
    target = torch.tensor([0, 3, 10, 3, 1])
    explicit = log_prob_increase(base, coeff[:, :, None] * images[None], target)
    for max_elements in (1, 30, 1 << 20):
        torch.testing.assert_close(neuron_lpi(base, coeff, images, target, max_elements, fused), explicit)


@pytest.mark.parametrize("kernel", ["fused", "materialised"])
@pytest.mark.parametrize("family", FAMILIES)
def test_fast_scores_equal_reference(family, kernel):
    if kernel == "fused":
        needs_fused_kernel()
    lm = tiny_lm(family)
    prompts, answers = PROMPTS[SAMPLE], ANSWERS[SAMPLE]
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, prompts), batch_size=4)
    targets = target_token_ids(lm.tokenizer, answers)
    fast = score_capture(lm.adapter, captured, targets, max_elements=1000, kernel=kernel)
    ref = reference_scores(lm, captured, targets)
    for name in ("ffn", "shared_ffn", "attn", "heads", "ffn_layer", "attn_layer"):
        if getattr(ref, name) is None:
            assert getattr(fast, name) is None
            continue
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), atol=1e-4, rtol=1e-4, msg=name)
    assert fast.ffn.abs().max() > 1e-2, "scores too small for the comparison to mean anything"
    assert (fast.shared_ffn is not None) == (family == "qwen2_moe")


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_unselected_experts_score_zero(family):
    lm = tiny_lm(family)
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, PROMPTS[:8]))
    scores = score_capture(lm.adapter, captured, captured.logits.argmax(-1))
    selected = torch.zeros(8, lm.adapter.num_layers, lm.adapter.num_experts, dtype=torch.bool)
    selected.scatter_(2, captured.router_index, True)
    assert (scores.ffn[~selected] == 0).all()
    assert (scores.ffn[selected].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_decomposes_the_forward_pass(family):
    """Residual bookkeeping, unit vectors summing to block outputs, and proj(x_L) == the model's logits."""
    lm = tiny_lm(family)
    adapter = lm.adapter
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, PROMPTS[:5]), batch_size=2)
    c = captured
    for l in range(adapter.num_layers - 1):
        torch.testing.assert_close(
            c.layer_input[:, l + 1], c.layer_input[:, l] + c.attn_output[:, l] + c.ffn_output[:, l]
        )
    last = adapter.num_layers - 1
    torch.testing.assert_close(
        c.final_residual, c.layer_input[:, last] + c.attn_output[:, last] + c.ffn_output[:, last]
    )
    proj = FrozenProjection.from_final_residual(adapter, c.final_residual)
    torch.testing.assert_close(proj.logits(c.final_residual), c.logits, atol=1e-4, rtol=1e-4)
    for l in range(adapter.num_layers):
        heads_sum = c.head_values[:, l] @ adapter.o_proj(l).weight.T
        torch.testing.assert_close(heads_sum, c.attn_output[:, l], atol=1e-5, rtol=1e-4)
        weights, x = adapter.ffn_weights(l), c.ffn_input[:, l]
        total = torch.zeros_like(x)
        for b in range(x.shape[0]):
            routed = (
                [(0, 1.0)]
                if c.router_index is None
                else zip(c.router_index[b, l].tolist(), c.router_weights[b, l].tolist())
            )
            for e, g in routed:
                total[b] += g * weights.down[e] @ weights.coefficients(x[b], e)
        if adapter.shared_expert(l) is not None:
            sw, gate = adapter.shared_expert(l)
            total += torch.sigmoid(gate(x)) * (sw.coefficients(x, 0) @ sw.down[0].T)
        torch.testing.assert_close(total, c.ffn_output[:, l], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["olmoe", "olmo"])
def test_batches_in_length_order_give_each_prompt_its_own_results(family):
    """Prompts of mixed lengths forwarded in length-ordered batches: every captured tensor and
    logit row is the one of that prompt forwarded alone, in the prompts' own order."""
    lm = tiny_lm(family)
    encoded = encode_prompts(lm.tokenizer, PROMPTS[::60])
    lengths = [len(e) for e in encoded]
    assert lengths != sorted(lengths) and len(set(lengths)) > 3  # the order really changes
    batched = capture_last_position(lm, encoded, batch_size=4)
    alone = [capture_last_position(lm, [e], batch_size=1) for e in encoded]
    for name in ("layer_input", "head_values", "ffn_output", "final_residual", "logits"):
        torch.testing.assert_close(
            getattr(batched, name), torch.cat([getattr(a, name) for a in alone]), atol=1e-5, rtol=1e-4
        )
    if family == "olmoe":
        torch.testing.assert_close(batched.router_index, torch.cat([a.router_index for a in alone]))


@pytest.mark.parametrize("family", ["olmoe", "olmo"])
def test_layer_score_is_lpi_of_its_units_summed(family):
    lm = tiny_lm(family)
    adapter = lm.adapter
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, PROMPTS[:4]))
    w = captured.logits.argmax(-1)
    scores = score_capture(adapter, captured, w)
    proj = FrozenProjection.from_final_residual(adapter, captured.final_residual)
    for l in range(adapter.num_layers):
        h = captured.layer_input[:, l]
        heads_total = captured.head_values[:, l] @ adapter.o_proj(l).weight.T
        expected_attn = log_prob_increase(proj.logits(h), proj.logits(heads_total), w)
        torch.testing.assert_close(scores.attn_layer[:, l], expected_attn, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(scores.attn_layer.sum(-1), scores.attn.sum((-1, -2, -3))), "LPI is not additive"


def test_reduce_mean_and_target_override():
    lm = tiny_lm("olmoe")
    per_example = attribute(lm, PROMPTS[:6], targets=ANSWERS[:6], reduce="none")
    mean = attribute(lm, PROMPTS[:6], targets=ANSWERS[:6])
    assert per_example.ffn.shape == (6, 2, 4, 24) and mean.ffn.shape == (2, 4, 24)
    assert per_example.heads.shape == (6, 2, 4) and per_example.attn.shape == (6, 2, 4, 8)
    torch.testing.assert_close(mean.ffn, per_example.ffn.mean(0))
    torch.testing.assert_close(mean.heads, per_example.heads.mean(0))
    override = attribute(lm, PROMPTS[:6], targets=ANSWERS[:6], target_ids=[5] * 6, reduce="none")
    assert override.target_ids.tolist() == [5] * 6
    assert not torch.allclose(override.ffn, per_example.ffn)
    predicted = attribute(lm, PROMPTS[:6], reduce="none")
    assert (predicted.target_rank == 0).all()


@pytest.mark.parametrize("fused", [False, True])
def test_neuron_lpi_survives_extreme_logits(fused):
    """A base distribution so peaked that the shifted sum underflows still gives the exact LPI."""
    if fused:
        needs_fused_kernel()
    base = torch.tensor([[0.0, -200.0, -200.0], [5.0, 0.0, -3.0]])
    images = torch.tensor([[0.0, 3.0, -1.0], [1.0, -2.0, 0.5]])
    coeff = torch.tensor([[60.0, -1.0], [2.0, 0.5]])
    target = torch.tensor([1, 0])
    explicit = log_prob_increase(base, coeff[:, :, None] * images[None], target)
    torch.testing.assert_close(neuron_lpi(base, coeff, images, target, fused=fused), explicit)


@pytest.mark.parametrize("family", ["olmoe", "olmo", "qwen2_moe", "llama", "olmo-clip"])
def test_position_terms_sum_to_the_heads_values(family):
    """Each source position's term (attention weight × value, GQA heads repeated) sums to o_proj's
    input; nothing past a prompt's end; OLMo's in-place value clipping included (clip_qkv)."""
    lm = tiny_lm("olmo") if family == "olmo-clip" else tiny_lm(family)
    if family == "olmo-clip":
        lm.model.config.clip_qkv = 0.05  # small enough to clip most values of this initialisation
    encoded = encode_prompts(lm.tokenizer, PROMPTS[:6])
    plain = capture_last_position(lm, encoded, batch_size=4)
    each = capture_last_position(lm, encoded, batch_size=4, positions=True)
    assert plain.position_values is None and lm.model.config._attn_implementation != "eager"  # restored
    terms = each.position_values  # [N, L, heads, positions, head_dim]
    assert terms.shape[:3] == (6, lm.adapter.num_layers, lm.adapter.num_heads)
    assert terms.shape[3] == max(len(e) for e in encoded)
    summed = terms.sum(3).reshape(6, lm.adapter.num_layers, -1)
    torch.testing.assert_close(summed, each.head_values, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(each.head_values, plain.head_values, atol=1e-5, rtol=1e-4)
    for i, e in enumerate(encoded):
        assert (terms[i, :, :, len(e) :] == 0).all()
        assert (terms[i, :, :, : len(e)].abs().sum(-1) > 0).all()
    if family == "olmo-clip":
        lm.model.config.clip_qkv = None
        unclipped = capture_last_position(lm, encoded, batch_size=4, positions=True)
        assert not torch.allclose(unclipped.head_values, each.head_values, atol=1e-3)


@pytest.mark.parametrize("family", ["olmoe", "olmo", "qwen2_moe"])
def test_per_position_attention_scores_equal_reference(family):
    lm = tiny_lm(family)
    prompts, answers = PROMPTS[SAMPLE], ANSWERS[SAMPLE]
    targets = target_token_ids(lm.tokenizer, answers)
    each = attribute(lm, prompts, target_ids=targets, reduce="none", batch_size=4, attn_positions="each")
    summed = attribute(lm, prompts, target_ids=targets, reduce="none", batch_size=4)
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, prompts), batch_size=4, positions=True)
    ref = reference_scores(lm, captured, targets)
    torch.testing.assert_close(each.attn, ref.attn, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(each.ffn, summed.ffn, atol=1e-5, rtol=1e-4)  # only attention neurons change
    assert (each.attn - summed.attn).abs().max() > 1e-3, "the two readings should differ"
    with pytest.raises(ValueError, match="attn_positions must be one of"):
        attribute(lm, prompts[:1], target_ids=targets[:1], attn_positions="mean")
