"""GPT-NeoX (Pythia): parallel attention and MLP, a plain GELU MLP with biases, LayerNorms with bias.

    h_{l+1} = h_l + attn(ln_1(h_l)) + mlp(ln_2(h_l))        (use_parallel_residual, Pythia's setting)

Both sublayers read the layer input, so both sublayers' units are scored against the residual
h_l (neither sees the other's output). A neuron's vector is `act(W_in x + b_in)_i · W_out[:, i]`;
the output biases (of `dense` and `dense_4h_to_h`) belong to the block, not to any unit. The
final LayerNorm's bias β adds `W_U β` to every logit vector of the frozen projection.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Adapter, FFNWeights


class GptNeoxAdapter(Adapter):
    family = "gpt_neox"
    model_types = ("gpt_neox",)
    final_norm_kind = "layernorm"
    value_module_name = "query_key_value"

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.gpt_neox.layers

    def attention(self, layer: int) -> nn.Module:
        return self.layers[layer].attention

    def o_proj(self, layer: int) -> nn.Linear:
        return self.layers[layer].attention.dense

    def value_states(self, output: torch.Tensor) -> torch.Tensor:
        """query_key_value's output is per head [q; k; v] (each head_dim wide): the values' thirds."""
        b, t = output.shape[:2]
        per_head = output.view(b, t, self.num_heads, 3 * self.head_dim)
        return per_head[..., 2 * self.head_dim :].reshape(b, t, self.num_heads * self.head_dim)

    @property
    def parallel_residual(self) -> bool:
        return bool(self.config.use_parallel_residual)

    def ffn_weights(self, layer: int) -> FFNWeights:
        mlp = self.mlp(layer)
        return FFNWeights(
            gate=mlp.dense_h_to_4h.weight[None],
            up=None,
            down=mlp.dense_4h_to_h.weight[None],
            act=mlp.act,
            gate_bias=None if mlp.dense_h_to_4h.bias is None else mlp.dense_h_to_4h.bias[None],
        )

    @property
    def final_norm(self) -> nn.Module:
        return self.model.gpt_neox.final_layer_norm

    @property
    def final_norm_eps(self) -> float:
        return self.final_norm.eps

    @property
    def final_norm_bias(self) -> torch.Tensor | None:
        return self.final_norm.bias
