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


def test_reference_on_chosen_layers_equals_its_full_run_there_and_leaves_the_rest_unscored():
    lm = tiny_lm("olmoe")
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, PROMPTS[:2]))
    targets = target_token_ids(lm.tokenizer, ANSWERS[:2])
    full, chosen = reference_scores(lm, captured, targets), reference_scores(lm, captured, targets, layers=[1])
    for name in ("ffn", "attn", "heads", "ffn_layer", "attn_layer"):
        assert torch.equal(getattr(chosen, name)[:, 1], getattr(full, name)[:, 1]), name
        assert getattr(chosen, name)[:, 0].isnan().all(), name
    with pytest.raises(ValueError, match="layer 9 out of range: the model has 2 layers"):
        reference_scores(lm, captured, targets, layers=[9])


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_unselected_experts_score_zero(family):
    lm = tiny_lm(family)
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, PROMPTS[:8]))
    scores = score_capture(lm.adapter, captured, captured.logits.argmax(-1))
    selected = torch.zeros(8, lm.adapter.num_layers, lm.adapter.num_experts, dtype=torch.bool)
    selected.scatter_(2, captured.router_index, True)
    assert (scores.ffn[~selected] == 0).all()
    assert (scores.ffn[selected].abs().sum(-1) > 0).all()


def _post_norm(norm, y, scale):
    """A sublayer post-norm (OLMo-2) frozen at `scale`, by hand: g ⊙ y · s; y itself without one."""
    return y if norm is None else norm.weight * y * scale[:, None]


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_decomposes_the_forward_pass(family):
    """Residual bookkeeping, unit vectors (plus the blocks' output biases, through a frozen
    post-norm where there is one) summing to block outputs, and the frozen projection of x_L
    equal to the model's logits."""
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
    torch.testing.assert_close(proj.base_logits(c.final_residual), c.logits, atol=1e-4, rtol=1e-4)
    has_post_norms = adapter.attn_post_norm(0) is not None
    assert (c.attn_post_scale is not None) == (c.ffn_post_scale is not None) == has_post_norms == (family == "olmo2")
    for l in range(adapter.num_layers):
        o_bias = 0 if adapter.o_proj(l).bias is None else adapter.o_proj(l).bias
        heads_sum = c.head_values[:, l] @ adapter.o_proj(l).weight.T
        attn_norm, ffn_norm = adapter.attn_post_norm(l), adapter.ffn_post_norm(l)
        if has_post_norms:  # the frozen scale is the real sublayer output's
            expected = torch.rsqrt((heads_sum + o_bias).pow(2).mean(-1) + attn_norm.variance_epsilon)
            torch.testing.assert_close(c.attn_post_scale[:, l], expected)
        attn_scale = None if c.attn_post_scale is None else c.attn_post_scale[:, l]
        torch.testing.assert_close(
            _post_norm(attn_norm, heads_sum + o_bias, attn_scale), c.attn_output[:, l], atol=1e-5, rtol=1e-4
        )
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
        if family == "gpt_neox":
            total += adapter.mlp(l).dense_4h_to_h.bias
        ffn_scale = None if c.ffn_post_scale is None else c.ffn_post_scale[:, l]
        torch.testing.assert_close(_post_norm(ffn_norm, total, ffn_scale), c.ffn_output[:, l], atol=1e-5, rtol=1e-4)


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


@pytest.mark.parametrize("family", ["olmoe", "olmo", "qwen2_moe", "llama", "olmo-clip", "olmo2", "gpt_neox"])
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


@pytest.mark.parametrize("family", ["olmoe", "olmo", "qwen2_moe", "olmo2", "gpt_neox"])
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


def test_sequential_gpt_neox_scores_equal_reference():
    """GPT-NeoX with `use_parallel_residual=False`: the FFN is then scored at h + attn, as in Llama."""
    lm = tiny_lm("gpt_neox")
    lm.model.config.use_parallel_residual = False
    for layer in lm.adapter.layers:
        layer.use_parallel_residual = False
    assert not lm.adapter.parallel_residual
    prompts, answers = PROMPTS[SAMPLE], ANSWERS[SAMPLE]
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, prompts), batch_size=4)
    targets = target_token_ids(lm.tokenizer, answers)
    fast, ref = score_capture(lm.adapter, captured, targets), reference_scores(lm, captured, targets)
    for name in ("ffn", "attn", "heads", "ffn_layer", "attn_layer"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), atol=1e-4, rtol=1e-4, msg=name)
    parallel = tiny_lm("gpt_neox")
    assert parallel.adapter.parallel_residual
    other = score_capture(
        parallel.adapter, capture_last_position(parallel, encode_prompts(lm.tokenizer, prompts)), targets
    )
    assert not torch.allclose(other.ffn_layer, fast.ffn_layer, atol=1e-3)  # the two wirings are different models


def test_olmo2_neuron_lpi_by_hand():
    """One OLMo-2 FFN neuron's Gated-LPI by hand: its vector m · down[:, i] through the post-norm frozen
    at the FFN output's own RMS, added to the residual after attention, through the frozen final norm."""
    lm = tiny_lm("olmo2")
    adapter, layer, neuron = lm.adapter, 1, 7
    prompt, answer = PROMPTS[3], ANSWERS[3]
    target = int(target_token_ids(lm.tokenizer, [answer])[0])
    scores = attribute(lm, [prompt], target_ids=[target], reduce="none")
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, [prompt]))
    block = adapter.layers[layer]
    x = captured.ffn_input[0, layer]  # OLMo-2 has no pre-norm: the residual after attention
    torch.testing.assert_close(x, captured.layer_input[0, layer] + captured.attn_output[0, layer])
    m = torch.nn.functional.silu(block.mlp.gate_proj.weight @ x) * (block.mlp.up_proj.weight @ x)
    y = block.mlp.down_proj.weight @ m
    post = block.post_feedforward_layernorm
    u = (
        post.weight
        * m[neuron]
        * block.mlp.down_proj.weight[:, neuron]
        / torch.sqrt(y.pow(2).mean() + post.variance_epsilon)
    )
    x_final, final = captured.final_residual[0], lm.model.model.norm
    frozen = lambda v: final.weight * v / torch.sqrt(x_final.pow(2).mean() + final.variance_epsilon)  # noqa: E731
    logp = lambda v: torch.log_softmax(lm.model.lm_head.weight @ frozen(v), -1)[target]  # noqa: E731
    by_hand = logp(x + u) - logp(x)
    torch.testing.assert_close(scores.ffn[0, layer, 0, neuron], by_hand, atol=1e-5, rtol=1e-4)
    assert abs(by_hand) > 1e-3
