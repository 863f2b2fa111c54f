"""Top-k routed MoE with fused expert tensors (transformers 5): `mlp.gate` router, `mlp.experts`.

`experts.gate_up_proj` is [experts, 2 * ffn_dim, hidden] (gate rows first), `experts.down_proj`
is [experts, hidden, ffn_dim]. The router returns `(logits, top_k_weights, top_k_index)`, the
weights exactly as the model scales the experts' outputs.
"""

from __future__ import annotations

from torch import nn

from .base import Adapter, FFNWeights


class FusedMoEAdapter(Adapter):
    is_moe = True

    def router(self, layer: int) -> nn.Module:
        return self.mlp(layer).gate

    def ffn_weights(self, layer: int) -> FFNWeights:
        experts = self.mlp(layer).experts
        gate, up = experts.gate_up_proj.chunk(2, dim=1)
        return FFNWeights(gate=gate, up=up, down=experts.down_proj, act=experts.act_fn)

    @property
    def num_experts(self) -> int:
        return self.mlp(0).experts.gate_up_proj.shape[0]
