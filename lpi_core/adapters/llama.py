"""Llama-style dense decoders: Llama, Mistral, Qwen2 (RMSNorm, gated SiLU FFN, GQA)."""

from .base import Adapter


class LlamaAdapter(Adapter):
    family = "llama"
    model_types = ("llama", "mistral", "qwen2")
