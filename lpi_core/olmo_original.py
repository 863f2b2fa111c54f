"""The original OLMo format (allenai/OLMo-7B's revisions, written by ai2-olmo's `hf_olmo`) loaded into
transformers' OlmoForCausalLM by converting the weights on load, as transformers'
convert_olmo_weights_to_hf.py does (rope_theta kept, which that script drops):

    blocks.i.att_proj = [q; k; v]  -> q_proj, k_proj, v_proj      blocks.i.attn_out -> o_proj
    blocks.i.ff_proj  = [up; gate] -> up_proj, gate_proj          blocks.i.ff_out   -> down_proj
    wte -> embed_tokens            ff_out (untied) or wte (weight_tying) -> lm_head

OLMo's SwiGLU is `x, gate = ff_proj(h).chunk(2); silu(gate) * x`, so the first half is `up`. The
norms are parameter-free LayerNorms in both. Settings transformers' OLMo cannot express are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # transformers' OLMo modules are imported on use: they add a second to every import of lpi_core
    from transformers import OlmoConfig, OlmoForCausalLM

PREFIX = "model.transformer."
REQUIRED = {  # setting -> the value OlmoForCausalLM computes with (None: absent is fine too)
    "rope": True,
    "alibi": False,
    "include_bias": False,
    "layer_norm_type": "default",
    "layer_norm_with_affine": False,
    "attention_layer_norm": False,
    "embedding_layer_norm": False,
    "norm_after": False,
    "block_type": "sequential",
    "activation_type": "swiglu",
    "scale_logits": False,
    "block_group_size": 1,
}
DEFAULTS = {"embedding_layer_norm": False, "norm_after": False, "scale_logits": False, "block_group_size": 1}
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
ORIGINAL_FILES = [
    "config.json",
    "*.safetensors",
    "*.bin",
    "*.index.json",
    "tokenizer*",
    "special_tokens_map.json",
]  # what loading needs


def is_original_olmo(config: Mapping) -> bool:
    """A config.json of the original format (it names `d_model`, not transformers' `hidden_size`)."""
    return config.get("model_type") in ("olmo", "hf_olmo") and "d_model" in config


def olmo_config(original: Mapping) -> OlmoConfig:
    """transformers' configuration of an original-format config.json (ValueError for what it cannot express)."""
    from transformers import OlmoConfig

    unsupported = [
        f"{k}={original.get(k, DEFAULTS.get(k))!r}"
        for k, v in REQUIRED.items()
        if original.get(k, DEFAULTS.get(k)) != v
    ]
    if unsupported:
        raise ValueError(
            f"original OLMo settings that transformers' OlmoForCausalLM cannot express: {', '.join(unsupported)}"
        )
    heads, width = original["n_heads"], original["d_model"]
    kv_heads = original.get("n_kv_heads") or (1 if original.get("multi_query_attention") else heads)
    ffn = original.get("mlp_hidden_size") or original["mlp_ratio"] * width
    return OlmoConfig(
        vocab_size=original.get("embedding_size") or original["vocab_size"],
        hidden_size=width,
        intermediate_size=ffn // 2,
        num_hidden_layers=original["n_layers"],
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=original["max_sequence_length"],
        rope_theta=float(original.get("rope_theta", 10_000)),
        clip_qkv=original.get("clip_qkv"),
        tie_word_embeddings=original["weight_tying"],
        attention_bias=False,
        pad_token_id=original.get("pad_token_id"),
        eos_token_id=original.get("eos_token_id"),
        bos_token_id=None,
    )


def olmo_state_dict(original: Mapping[str, torch.Tensor], config: OlmoConfig) -> dict[str, torch.Tensor]:
    """OlmoForCausalLM's weights from an original-format state dict (keys `model.transformer.*`)."""
    head_dim = config.hidden_size // config.num_attention_heads
    split = [config.hidden_size, config.num_key_value_heads * head_dim, config.num_key_value_heads * head_dim]
    converted = {
        "model.embed_tokens.weight": original[PREFIX + "wte.weight"],
        "lm_head.weight": original[PREFIX + ("wte.weight" if config.tie_word_embeddings else "ff_out.weight")],
    }
    for i in range(config.num_hidden_layers):
        block, layer = f"{PREFIX}blocks.{i}.", f"model.layers.{i}."
        q, k, v = torch.split(original[block + "att_proj.weight"], split, dim=0)
        up, gate = torch.chunk(original[block + "ff_proj.weight"], 2, dim=0)
        converted |= {
            layer + "self_attn.q_proj.weight": q,
            layer + "self_attn.k_proj.weight": k,
            layer + "self_attn.v_proj.weight": v,
            layer + "self_attn.o_proj.weight": original[block + "attn_out.weight"],
            layer + "mlp.up_proj.weight": up,
            layer + "mlp.gate_proj.weight": gate,
            layer + "mlp.down_proj.weight": original[block + "ff_out.weight"],
        }
    return converted


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint directory: safetensors or a torch pickle, single or sharded."""
    from safetensors.torch import load_file

    for name in WEIGHT_FILES:
        path = directory / name
        if not path.exists():
            continue
        files = (
            sorted(set(json.loads(path.read_text())["weight_map"].values())) if name.endswith(".index.json") else [name]
        )
        state: dict[str, torch.Tensor] = {}
        for file in files:
            part = directory / file
            state |= (
                load_file(part)
                if file.endswith(".safetensors")
                else torch.load(part, map_location="cpu", weights_only=True)
            )
        return state
    raise FileNotFoundError(f"{directory}: no weights file ({', '.join(WEIGHT_FILES)})")


def load_original_olmo(directory: str | Path, dtype: torch.dtype = torch.float32) -> OlmoForCausalLM:
    """An original-format checkpoint directory as transformers' OlmoForCausalLM (every weight checked present)."""
    from transformers import OlmoForCausalLM

    directory = Path(directory)
    config = olmo_config(json.loads((directory / "config.json").read_text()))
    with torch.device("meta"):
        model = OlmoForCausalLM(config)
    weights = olmo_state_dict(read_state_dict(directory), config)
    missing = set(model.state_dict()) - set(weights)
    if missing:
        raise ValueError(f"{directory}: the converted weights lack {sorted(missing)[:5]}")
    model.load_state_dict({k: v.to(dtype) for k, v in weights.items()}, strict=True, assign=True)
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config)  # its buffers were made on the meta device
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"{directory}: no converted value for {left[:5]}")
    return model.eval()
