"""Qwen2-MoE: routed experts plus a shared expert scaled by `sigmoid(shared_expert_gate(x))`.

The shared expert's neurons are scored like routed ones, as their own unit set. Checkpoints with
dense-only layers (`mlp_only_layers`, `decoder_sparse_step > 1`) are not supported.
"""

from __future__ import annotations

from torch import nn

from .base import FFNWeights
from .fused_moe import FusedMoEAdapter


class Qwen2MoeAdapter(FusedMoEAdapter):
    family = "qwen2_moe"
    model_types = ("qwen2_moe",)

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        cfg = model.config
        if cfg.mlp_only_layers or cfg.decoder_sparse_step != 1:
            raise ValueError(
                "Qwen2-MoE checkpoints with dense-only layers (mlp_only_layers or decoder_sparse_step != 1) "
                "are not supported: every layer must be a sparse MoE block."
            )

    def shared_expert(self, layer: int) -> tuple[FFNWeights, nn.Linear]:
        mlp = self.mlp(layer)
        expert = mlp.shared_expert
        weights = FFNWeights(
            gate=expert.gate_proj.weight[None],
            up=expert.up_proj.weight[None],
            down=expert.down_proj.weight[None],
            act=expert.act_fn,
        )
        return weights, mlp.shared_expert_gate
