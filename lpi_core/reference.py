"""The plain reference: each unit's vector built in the hidden space, added to the base, and
pushed through the model's own `lm_head` with the frozen final norm, neuron by neuron (batched).

    LPI(u | h) = log_softmax(lm_head(norm_frozen(h + u)))[w] - log_softmax(lm_head(norm_frozen(h)))[w]

A sublayer post-norm (OLMo-2) is frozen at the sublayer output y recomputed here from the block's
own modules (o_proj of the captured values; the FFN module on its captured input): a unit's vector
v becomes g ⊙ v / sqrt(mean(y²) + eps). A parallel block's FFN is added to the layer input.

Slow by design; it is what the fast engine is tested and benchmarked against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .capture import LastPositionCapture
from .engine import Attribution, target_rank
from .loading import LanguageModel


def _frozen_norm(lm: LanguageModel, x_final: torch.Tensor):
    adapter = lm.adapter
    weight, bias = adapter.final_norm_weight, adapter.final_norm_bias
    weight = 1.0 if weight is None else weight.float()
    bias = 0.0 if bias is None else bias.float()
    if adapter.final_norm_kind == "rms":
        scale = torch.rsqrt(x_final.pow(2).mean() + adapter.final_norm_eps)
        return lambda v: v * scale * weight
    scale = torch.rsqrt(x_final.var(unbiased=False) + adapter.final_norm_eps)
    return lambda v: (v - v.mean(-1, keepdim=True)) * scale * weight + bias


def _frozen_post_norm(norm: torch.nn.Module | None, sublayer_output: Callable[[], torch.Tensor]):
    """v -> g ⊙ v / sqrt(mean(y²) + eps) for a post-norm frozen at the sublayer output y; identity without one."""
    if norm is None:
        return lambda v: v
    scale = torch.rsqrt(sublayer_output().float().pow(2).mean() + norm.variance_epsilon)
    return lambda v: v * scale * norm.weight.float()


@torch.no_grad()
def reference_scores(
    lm: LanguageModel,
    captured: LastPositionCapture,
    target_ids: torch.Tensor,
    chunk: int = 256,
    layers: Sequence[int] | None = None,
) -> Attribution:
    """Per-example scores of every unit by the direct formula (same layout as `attribute(reduce="none")`).
    `layers`: score only these (the others' scores are NaN); every layer by default."""
    adapter, device = lm.adapter, lm.device
    unembed = adapter.lm_head
    n, num_layers = captured.layer_input.shape[:2]
    scored = range(num_layers) if layers is None else layers
    for l in scored:
        if not 0 <= l < num_layers:
            raise ValueError(f"layer {l} out of range: the model has {num_layers} layers")
    heads, head_dim = adapter.num_heads, adapter.head_dim
    shared_dim = adapter.shared_ffn_dim
    ffn = torch.zeros(n, num_layers, adapter.num_experts, adapter.ffn_dim)
    shared = None if shared_dim is None else torch.zeros(n, num_layers, shared_dim)
    attn = torch.zeros(n, num_layers, heads * head_dim)
    head_scores = torch.zeros(n, num_layers, heads)
    ffn_layer = torch.zeros(n, num_layers)
    attn_layer = torch.zeros(n, num_layers)

    for b in range(n):
        norm = _frozen_norm(lm, captured.final_residual[b].to(device))
        w = int(target_ids[b])

        def lpi(h: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
            base = torch.log_softmax(unembed(norm(h)[None].to(lm.dtype)).float(), -1)[0, w]
            out = []
            for part in vectors.split(chunk):
                logits = unembed(norm(h[None] + part).to(lm.dtype)).float()
                out.append(torch.log_softmax(logits, -1)[:, w] - base)
            return torch.cat(out).cpu()

        for l in scored:
            h_attn = captured.layer_input[b, l].to(device)
            h_ffn = h_attn if adapter.parallel_residual else h_attn + captured.attn_output[b, l].to(device)
            attn_layer[b, l] = lpi(h_attn, captured.attn_output[b, l][None].to(device))[0]
            ffn_layer[b, l] = lpi(h_ffn, captured.ffn_output[b, l][None].to(device))[0]

            w_o = adapter.o_proj(l).weight.float()
            values = captured.head_values[b, l].to(device)
            post = _frozen_post_norm(adapter.attn_post_norm(l), lambda: adapter.o_proj(l)(values.to(lm.dtype)))
            neuron_vectors = post(values[:, None] * w_o.T)  # [heads * head_dim, hidden]
            if captured.position_values is None:
                attn[b, l] = lpi(h_attn, neuron_vectors)
            else:  # the sum over source positions of each position's own LPI
                for term in captured.position_values[b, l].transpose(0, 1).to(device):  # [heads, head_dim] per position
                    if term.any():
                        attn[b, l] += lpi(h_attn, post(term.reshape(-1, 1) * w_o.T)) * (term.reshape(-1) != 0).cpu()
            head_scores[b, l] = lpi(h_attn, neuron_vectors.view(heads, head_dim, -1).sum(1))

            weights = adapter.ffn_weights(l)
            x = captured.ffn_input[b, l].to(device)
            post = _frozen_post_norm(adapter.ffn_post_norm(l), lambda: adapter.mlp(l)(x[None, None].to(lm.dtype))[0, 0])
            if captured.router_index is None:
                selected = [(0, 1.0)]
            else:
                selected = zip(captured.router_index[b, l].tolist(), captured.router_weights[b, l].tolist())
            for e, g in selected:
                m = weights.coefficients(x, e).float()
                ffn[b, l, e] = lpi(h_ffn, post(g * m[:, None] * weights.down[e].T.float()))
            if shared is not None:
                sw, gate = adapter.shared_expert(l)
                g = torch.sigmoid(gate(x.to(gate.weight.dtype)).float())
                m = sw.coefficients(x, 0).float()
                shared[b, l] = lpi(h_ffn, post(g * m[:, None] * sw.down[0].T.float()))

    skipped = sorted(set(range(num_layers)) - set(scored))
    for scores in (ffn, shared, attn, head_scores, ffn_layer, attn_layer):
        if scores is not None:
            scores[:, skipped] = float("nan")
    return Attribution(
        ffn=ffn,
        shared_ffn=shared,
        attn=attn.view(n, num_layers, heads, head_dim),
        heads=head_scores,
        ffn_layer=ffn_layer,
        attn_layer=attn_layer,
        target_ids=target_ids.cpu(),
        target_rank=target_rank(captured.logits, target_ids.cpu()),
    )
