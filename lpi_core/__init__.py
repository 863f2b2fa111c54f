"""lpi_core: Gated-LPI attribution (exact, or its first-order approximation) of FFN/expert neurons,
attention neurons, heads and layers.

from lpi_core import load_model, attribute, hit_at_k
lm = load_model("allenai/OLMoE-1B-7B-0924", revision="step10000-tokens41B")
att = attribute(lm, prompts, targets=answers)
"""

__version__ = "0.3.1"

from .ablation import hit_at_k, hits_at_k, masked
from .adapters import SUPPORTED_MODEL_TYPES, UnsupportedArchitectureError
from .data import RelationFileError, evaluation_set, load_relation, relation_examples
from .engine import Attribution, attribute, score_capture
from .loading import CheckpointError, LanguageModel, load_model, wrap_model
from .tokenization import PromptError, TargetTokenError

__all__ = [
    "Attribution",
    "CheckpointError",
    "LanguageModel",
    "PromptError",
    "RelationFileError",
    "SUPPORTED_MODEL_TYPES",
    "TargetTokenError",
    "UnsupportedArchitectureError",
    "attribute",
    "evaluation_set",
    "hit_at_k",
    "hits_at_k",
    "load_model",
    "load_relation",
    "masked",
    "relation_examples",
    "score_capture",
    "wrap_model",
]
