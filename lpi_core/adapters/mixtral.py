"""Mixtral: RMSNorm, top-2 routing with renormalised weights, GQA."""

from .fused_moe import FusedMoEAdapter


class MixtralAdapter(FusedMoEAdapter):
    family = "mixtral"
    model_types = ("mixtral",)
