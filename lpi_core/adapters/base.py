"""What the engine needs to know about an architecture family, and nothing else.

An adapter names the parts of a decoder-only model: its layers, the attention output
projection and head size, the FFN or experts (as weight tensors), the router, the final norm
and the unembedding. Adding a model family means adding a subclass, not editing the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn


@dataclass(frozen=True)
class FFNWeights:
    """An FFN as stacked experts: gated `down[e] @ (act(gate[e] @ x) * (up[e] @ x))`, or with `up`
    None the plain `down[e] @ act(gate[e] @ x + gate_bias[e])` (GPT-NeoX). A bias of `down` is not
    a neuron's: it is part of the block's output, never of a neuron's vector.

    gate, up: [experts, ffn_dim, hidden]; gate_bias: [experts, ffn_dim]; down: [experts, hidden, ffn_dim].
    Dense FFNs have one expert.
    """

    gate: torch.Tensor
    up: torch.Tensor | None
    down: torch.Tensor
    act: Callable[[torch.Tensor], torch.Tensor]
    gate_bias: torch.Tensor | None = None

    def coefficients(self, x: torch.Tensor, expert: int) -> torch.Tensor:
        """Neuron coefficients `m` of one expert (each down column's factor), x: [..., hidden] -> [..., ffn_dim]."""
        x = x.to(self.gate.dtype)
        pre = x @ self.gate[expert].T
        if self.gate_bias is not None:
            pre = pre + self.gate_bias[expert]
        return self.act(pre) if self.up is None else self.act(pre) * (x @ self.up[expert].T)


class Adapter:
    """Base adapter for Llama-style decoders (`model.model.layers[i].self_attn.o_proj`, `.mlp`)."""

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    final_norm_kind: ClassVar[Literal["rms", "layernorm"]] = "rms"
    is_moe: ClassVar[bool] = False
    value_module_name: ClassVar[str] = "v_proj"

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.config = model.config

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.model.layers

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_heads(self) -> int:
        return self.config.num_attention_heads

    @property
    def head_dim(self) -> int:
        return self.o_proj(0).in_features // self.num_heads

    def attention(self, layer: int) -> nn.Module:
        return self.layers[layer].self_attn

    def o_proj(self, layer: int) -> nn.Linear:
        return self.layers[layer].self_attn.o_proj

    def v_proj(self, layer: int) -> nn.Linear:
        """The projection whose output holds each position's values (`value_states` reads them)."""
        return getattr(self.attention(layer), self.value_module_name)

    def value_states(self, output: torch.Tensor) -> torch.Tensor:
        """Each position's values from `v_proj`'s output: [B, T, kv_heads * head_dim]."""
        return output

    @property
    def parallel_residual(self) -> bool:
        """Attention and FFN both read the layer input and both add to it (GPT-NeoX, GPT-J)."""
        return False

    def attn_post_norm(self, layer: int) -> nn.Module | None:
        """An RMSNorm applied to the attention output before it enters the residual (OLMo-2), or None."""
        return None

    def ffn_post_norm(self, layer: int) -> nn.Module | None:
        """An RMSNorm applied to the FFN output before it enters the residual (OLMo-2), or None."""
        return None

    def mlp(self, layer: int) -> nn.Module:
        """The FFN/MoE block: its input is the normed residual, its output is added to the residual."""
        return self.layers[layer].mlp

    def router(self, layer: int) -> nn.Module | None:
        """A module whose output is `(logits, top_k_weights, top_k_index)`, or None for a dense FFN."""
        return None

    def ffn_weights(self, layer: int) -> FFNWeights:
        mlp = self.mlp(layer)
        return FFNWeights(
            gate=mlp.gate_proj.weight[None],
            up=mlp.up_proj.weight[None],
            down=mlp.down_proj.weight[None],
            act=mlp.act_fn,
        )

    def shared_expert(self, layer: int) -> tuple[FFNWeights, nn.Linear] | None:
        """A gated shared expert (weights, sigmoid-gate linear), or None."""
        return None

    @property
    def final_norm(self) -> nn.Module:
        return self.model.model.norm

    @property
    def final_norm_weight(self) -> torch.Tensor | None:
        return self.final_norm.weight

    @property
    def final_norm_eps(self) -> float:
        return self.final_norm.variance_epsilon

    @property
    def final_norm_bias(self) -> torch.Tensor | None:
        """The final norm's additive bias β (LayerNorm with bias), or None."""
        return None

    @property
    def lm_head(self) -> nn.Linear:
        return self.model.get_output_embeddings()

    @property
    def unembedding(self) -> torch.Tensor:
        """W_U: [vocab, hidden]."""
        return self.lm_head.weight

    @property
    def num_experts(self) -> int:
        return 1

    @property
    def ffn_dim(self) -> int:
        return self.ffn_weights(0).down.shape[-1]

    @property
    def shared_ffn_dim(self) -> int | None:
        shared = self.shared_expert(0)
        return None if shared is None else shared[0].down.shape[-1]
