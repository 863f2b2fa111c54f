"""Tiny randomly initialised models of every supported family, with a small trained tokenizer."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    Olmo2Config,
    OlmoConfig,
    OlmoeConfig,
    Qwen2Config,
    Qwen2MoeConfig,
)

from claims.fixtures.miniature.tokenizer import train_tokenizer
from claims.statistics.measure import Trajectory
from lpi_core import evaluation_set, wrap_model
from lpi_core.loading import LanguageModel

COMMON = dict(
    hidden_size=32,
    intermediate_size=24,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    initializer_range=0.3,
)
CONFIGS = {
    "olmoe": lambda v: OlmoeConfig(vocab_size=v, num_experts=4, num_experts_per_tok=2, **COMMON),
    "olmo": lambda v: OlmoConfig(vocab_size=v, **COMMON),
    "olmo2": lambda v: Olmo2Config(vocab_size=v, **COMMON),
    "gpt_neox": lambda v: GPTNeoXConfig(
        vocab_size=v,
        **{k: x for k, x in COMMON.items() if k != "num_key_value_heads"},
        rotary_pct=0.5,
        bos_token_id=0,
        eos_token_id=0,
    ),
    "llama": lambda v: LlamaConfig(vocab_size=v, **COMMON),
    "mistral": lambda v: MistralConfig(vocab_size=v, **COMMON),
    "qwen2": lambda v: Qwen2Config(vocab_size=v, **COMMON),
    "mixtral": lambda v: MixtralConfig(vocab_size=v, num_local_experts=4, num_experts_per_tok=2, **COMMON),
    "qwen2_moe": lambda v: Qwen2MoeConfig(
        vocab_size=v,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=16,
        shared_expert_intermediate_size=20,
        **COMMON,
    ),
}
FAMILIES = tuple(CONFIGS)
MOE_FAMILIES = ("olmoe", "mixtral", "qwen2_moe")
# families whose biases and norm gains start at 0 and 1: drawn at random here, so that a test would see one dropped
RANDOM_NORMS_AND_BIASES = ("olmo2", "gpt_neox")


@functools.cache
def facts(limit: int = 906) -> tuple[list[str], list[str]]:
    data = evaluation_set()
    return list(data["prompt"][:limit]), list(data["object"][:limit])


@functools.cache
def tokenizer():
    prompts, answers = facts()
    return train_tokenizer([p + " " + a for p, a in zip(prompts, answers)], vocab_size=400)


def tiny_lm(family: str, seed: int = 0) -> LanguageModel:
    tok = tokenizer()
    torch.manual_seed(seed)
    config = CONFIGS[family](len(tok))
    config.bos_token_id = config.eos_token_id = tok.eos_token_id
    config.pad_token_id = tok.pad_token_id
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if family in RANDOM_NORMS_AND_BIASES:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0.0, 0.3)
                elif "norm" in name:
                    p.uniform_(0.5, 1.5)
    return wrap_model(model, tok, name=f"tiny-{family}")


def needs_fused_kernel() -> None:
    """Skip (saying why) where torch.compile cannot build the fused kernel: no C++ compiler."""
    from lpi_core.fused import fused_available

    if not fused_available("cpu"):
        pytest.skip(
            "the fused LPI kernel does not compile here (no C++ compiler?); the materialised path is tested instead"
        )


def same_measurements(a, b) -> bool:
    """Two series' measurements (claims.statistics.measure.SeriesMeasurements), field by field: arrays of one
    dtype and shape with the same bits (NaN equal to NaN), the rest equal."""

    def equal(x, y) -> bool:
        if isinstance(x, np.ndarray):
            return (
                isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
            )
        if isinstance(x, Trajectory):
            return isinstance(y, Trajectory) and all(equal(getattr(x, f), getattr(y, f)) for f in vars(x))
        if isinstance(x, dict):
            return isinstance(y, dict) and x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
        return type(x) is type(y) and x == y

    return all(equal(getattr(a, f), getattr(b, f)) for f in vars(a))
