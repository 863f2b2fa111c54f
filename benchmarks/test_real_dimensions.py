"""One OLMoE-1B-7B layer at its real dimensions (hidden 2048, vocab 50304, 64 experts of 1024,
top-8, 16 heads of 128), randomly initialised, CPU float32: the fast engine against the reference
on a handful of examples, extrapolated to a 906-example, 16-layer checkpoint with the one-off
per-layer vocabulary projection counted.

    pytest benchmarks/test_real_dimensions.py -s
"""
from __future__ import annotations

import time

import torch
from transformers import AutoModelForCausalLM, OlmoeConfig

from lpi_core import wrap_model
from lpi_core.capture import capture_last_position
from lpi_core.engine import score_capture
from lpi_core.reference import reference_scores
from lpi_core.tokenization import encode_prompts
from tests.helpers import facts, tokenizer

EXAMPLES, REFERENCE_EXAMPLES, LAYERS_PAPER, EXAMPLES_PAPER = 4, 1, 16, 906


def test_olmoe_layer_at_real_dimensions(benchmark):
    torch.manual_seed(0)
    config = OlmoeConfig(
        vocab_size=50304, hidden_size=2048, intermediate_size=1024, num_hidden_layers=1, num_attention_heads=16,
        num_key_value_heads=16, num_experts=64, num_experts_per_tok=8, max_position_embeddings=128,
    )
    tok = tokenizer()
    lm = wrap_model(AutoModelForCausalLM.from_config(config), tok)
    captured = capture_last_position(lm, encode_prompts(tok, facts(EXAMPLES)[0]))
    targets = captured.logits.argmax(-1)

    fast = benchmark.pedantic(score_capture, args=(lm.adapter, captured, targets), rounds=1, iterations=1)
    fast_s = benchmark.stats.stats.min
    projection_start = time.perf_counter()
    weights, unembed = lm.adapter.ffn_weights(0), lm.adapter.unembedding.float()
    for e in range(config.num_experts):
        weights.down[e].T.float() @ unembed.T
    projection_s = time.perf_counter() - projection_start  # the one-off images of all 64 experts

    sub = slice(0, REFERENCE_EXAMPLES)
    one = type(captured)(**{k: (v[sub] if isinstance(v, torch.Tensor) else v) for k, v in vars(captured).items()})
    start = time.perf_counter()
    reference = reference_scores(lm, one, targets[sub], chunk=1024)
    reference_per_example = time.perf_counter() - start
    torch.testing.assert_close(fast.ffn[sub], reference.ffn, atol=1e-4, rtol=1e-3)

    selected_images = projection_s * min(1.0, EXAMPLES * 8 / 64)  # the fast run projected only selected experts
    fast_per_example = max(fast_s - selected_images, 1e-9) / EXAMPLES
    checkpoint_fast = LAYERS_PAPER * (projection_s + EXAMPLES_PAPER * fast_per_example)
    checkpoint_reference = LAYERS_PAPER * EXAMPLES_PAPER * reference_per_example
    benchmark.extra_info.update(
        fast_per_example_s=fast_per_example,
        reference_per_example_s=reference_per_example,
        projection_per_layer_s=projection_s,
        checkpoint_fast_h=checkpoint_fast / 3600,
        checkpoint_reference_h=checkpoint_reference / 3600,
        speedup=checkpoint_reference / checkpoint_fast,
    )
    print(
        f"\nper example and layer: fast {fast_per_example:.2f}s, reference {reference_per_example:.1f}s; "
        f"projection {projection_s:.1f}s per layer\n906-example 16-layer checkpoint on this CPU: fast "
        f"{checkpoint_fast / 3600:.2f} h, reference {checkpoint_reference / 3600:.1f} h, speedup {checkpoint_reference / checkpoint_fast:.1f}x"
    )
