"""Architecture adapters: one per family, looked up by the checkpoint's `model_type`."""

from __future__ import annotations

from torch import nn

from .base import Adapter, FFNWeights
from .gpt_neox import GptNeoxAdapter
from .llama import LlamaAdapter
from .mixtral import MixtralAdapter
from .olmo import OlmoAdapter
from .olmo2 import Olmo2Adapter
from .olmoe import OlmoeAdapter
from .qwen2_moe import Qwen2MoeAdapter

ADAPTERS: tuple[type[Adapter], ...] = (
    OlmoeAdapter,
    OlmoAdapter,
    Olmo2Adapter,
    LlamaAdapter,
    MixtralAdapter,
    Qwen2MoeAdapter,
    GptNeoxAdapter,
)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for a in ADAPTERS for t in a.model_types)


class UnsupportedArchitectureError(ValueError):
    """The checkpoint's architecture has no adapter."""


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter for `model`, chosen by `model.config.model_type`."""
    model_type = getattr(model.config, "model_type", None)
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter(model)
    raise UnsupportedArchitectureError(
        f"unsupported architecture {model_type!r} ({type(model).__name__}); supported model types: "
        f"{', '.join(SUPPORTED_MODEL_TYPES)}. Add an adapter in lpi_core/adapters/ to support it."
    )


__all__ = ["ADAPTERS", "SUPPORTED_MODEL_TYPES", "Adapter", "FFNWeights", "UnsupportedArchitectureError", "adapter_for"]
