"""OLMoE: RMSNorm, 64 experts top-8 without renormalising the top-k weights."""

from .fused_moe import FusedMoEAdapter


class OlmoeAdapter(FusedMoEAdapter):
    family = "olmoe"
    model_types = ("olmoe",)
