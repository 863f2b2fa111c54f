"""The opt-in first-order mode: the tangent of Gated-LPI at zero coefficient, checked against autograd."""

from __future__ import annotations

import pytest
import torch

from lpi_core import attribute
from lpi_core.capture import capture_last_position
from lpi_core.engine import score_capture
from lpi_core.lpi import first_order_neuron_lpi, log_prob_increase, lpi_gradient
from lpi_core.reference import _frozen_norm
from lpi_core.tokenization import encode_prompts
from tests.helpers import facts, tiny_lm

PROMPTS, _ = facts()


def test_first_order_neuron_lpi_is_the_tangent_at_zero():
    torch.manual_seed(0)
    base, coeff = torch.randn(4, 9), torch.randn(4, 5)
    unembedding, directions = torch.randn(9, 6), torch.randn(5, 6)
    target = torch.tensor([0, 8, 3, 3])
    images = directions @ unembedding.T

    def lpi(t: torch.Tensor) -> torch.Tensor:
        return log_prob_increase(base, (t * coeff)[:, :, None] * images[None], target)

    _, tangent = torch.autograd.functional.jvp(lpi, torch.tensor(0.0), torch.tensor(1.0))
    first = first_order_neuron_lpi(lpi_gradient(base, unembedding, target), coeff, directions)
    torch.testing.assert_close(first, tangent)
    assert not torch.allclose(first, lpi(torch.tensor(1.0)), atol=1e-2)  # an approximation, not the exact score


@pytest.mark.parametrize("family", ["olmoe", "olmo", "qwen2_moe"])
def test_engine_first_order_scores_are_gradient_times_unit_vector(family):
    lm = tiny_lm(family)
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, PROMPTS[:906:181]))
    targets = captured.logits.argmax(-1)
    first = score_capture(lm.adapter, captured, targets, mode="first-order")
    exact = score_capture(lm.adapter, captured, targets, mode="exact")
    heads, head_dim = lm.adapter.num_heads, lm.adapter.head_dim
    for b in range(len(targets)):
        norm = _frozen_norm(lm, captured.final_residual[b])

        def gradient(h: torch.Tensor) -> torch.Tensor:
            x = torch.zeros_like(h, requires_grad=True)
            torch.log_softmax(lm.model.lm_head(norm(h + x)), -1)[targets[b]].backward()
            return x.grad

        for l in range(lm.adapter.num_layers):
            g_attn = gradient(captured.layer_input[b, l])
            g_ffn = gradient(captured.layer_input[b, l] + captured.attn_output[b, l])
            ffn_total = first.ffn[b, l].sum() + (0 if first.shared_ffn is None else first.shared_ffn[b, l].sum())
            torch.testing.assert_close(ffn_total, g_ffn @ captured.ffn_output[b, l], atol=1e-4, rtol=1e-4)
            w_o = lm.adapter.o_proj(l).weight.detach().view(-1, heads, head_dim)
            values = captured.head_values[b, l].view(heads, head_dim)
            for h in range(heads):
                torch.testing.assert_close(first.heads[b, l, h], g_attn @ (w_o[:, h] @ values[h]), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(first.attn[b, l].sum(-1), first.heads[b, l], atol=1e-5, rtol=1e-4)
    assert torch.equal(first.ffn_layer, exact.ffn_layer) and torch.equal(first.attn_layer, exact.attn_layer)
    assert first.ffn.abs().max() > 1e-2


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be one of"):
        attribute(tiny_lm("olmo"), PROMPTS[:2], mode="second-order")
