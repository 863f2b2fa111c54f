"""Fast engine vs the reference (the direct formula through lm_head), same model, same inputs.

pytest benchmarks --benchmark-json reports/benchmarks.json
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, OlmoConfig, OlmoeConfig

from benchmarks.timing import best_of
from lpi_core import wrap_model
from lpi_core.capture import capture_last_position
from lpi_core.engine import score_capture
from lpi_core.reference import reference_scores
from lpi_core.tokenization import encode_prompts, target_token_ids
from tests.helpers import facts, tokenizer

SHAPE = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=8, max_position_embeddings=64)
MODELS = {
    "olmoe": lambda v: OlmoeConfig(vocab_size=v, intermediate_size=128, num_experts=8, num_experts_per_tok=2, **SHAPE),
    "olmo": lambda v: OlmoConfig(vocab_size=v, intermediate_size=512, **SHAPE),
}
EXAMPLES = 32


@pytest.mark.parametrize("family", MODELS)
def test_fast_engine_vs_reference(benchmark, family):
    torch.manual_seed(0)
    tok = tokenizer()
    lm = wrap_model(AutoModelForCausalLM.from_config(MODELS[family](len(tok))), tok)
    prompts, answers = facts(EXAMPLES)
    captured = capture_last_position(lm, encode_prompts(tok, prompts))
    targets = target_token_ids(tok, answers)

    fast = benchmark.pedantic(score_capture, args=(lm.adapter, captured, targets), rounds=3, warmup_rounds=1)
    reference_s = best_of(lambda: reference_scores(lm, captured, targets), rounds=1)
    reference = reference_scores(lm, captured, targets)
    torch.testing.assert_close(fast.ffn, reference.ffn, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast.attn, reference.attn, atol=1e-4, rtol=1e-4)

    speedup = reference_s / benchmark.stats.stats.min
    benchmark.extra_info.update(examples=EXAMPLES, vocab=len(tok), reference_s=reference_s, speedup=speedup)
    print(f"\n{family}: fast {benchmark.stats.stats.min:.3f}s, reference {reference_s:.3f}s, speedup {speedup:.1f}x")
