"""One OLMoE-1B-7B layer at its real dimensions (hidden 2048, vocabulary 50304, 64 experts of 1024,
top-8, 16 heads of 128), randomly initialised, CPU float32: the exact engine and the first-order
mode against the reference, extrapolated to a 906-example, 16-layer checkpoint with the one-off
per-layer vocabulary images counted, and the process's peak memory.

    pytest benchmarks/test_real_dimensions.py -s
"""

from __future__ import annotations

import resource

import torch
from transformers import AutoModelForCausalLM, OlmoeConfig

from benchmarks.timing import timed
from lpi_core import metrics, wrap_model
from lpi_core.capture import capture_last_position
from lpi_core.engine import score_capture
from lpi_core.projection import FrozenProjection
from lpi_core.reference import reference_scores
from lpi_core.tokenization import encode_prompts
from tests.helpers import facts, tokenizer

SIZES, LAYERS_PAPER, EXAMPLES_PAPER, MEMORY_LIMIT_GB = (16, 64), 16, 906, 24
CONFIG = dict(
    vocab_size=50304,
    hidden_size=2048,
    intermediate_size=1024,
    num_hidden_layers=1,
    num_attention_heads=16,
    num_key_value_heads=16,
    num_experts=64,
    num_experts_per_tok=8,
    max_position_embeddings=128,
)
COLUMNS_PER_LAYER = CONFIG["num_experts"] * CONFIG["intermediate_size"] + CONFIG["hidden_size"]


def first(captured, n: int):
    return type(captured)(**{k: (v[:n] if isinstance(v, torch.Tensor) else v) for k, v in vars(captured).items()})


def linear_fit(sizes, seconds) -> tuple[float, float]:
    """(fixed, per example) of seconds = fixed + per_example · size, through the two points."""
    per_example = (seconds[1] - seconds[0]) / (sizes[1] - sizes[0])
    return seconds[0] - per_example * sizes[0], per_example


def test_olmoe_layer_at_real_dimensions(benchmark, monkeypatch):
    torch.manual_seed(0)
    tok = tokenizer()
    lm = wrap_model(AutoModelForCausalLM.from_config(OlmoeConfig(**CONFIG)), tok)
    prompts = facts(906)[0][:: 906 // SIZES[-1]][: SIZES[-1]]
    captured = capture_last_position(lm, encode_prompts(tok, prompts))
    targets = captured.logits.argmax(-1)

    images = {"seconds": 0.0, "columns": 0}  # the engine's own vocabulary-image calls, timed in place
    original = FrozenProjection.images

    def timed_images(self, v):
        out, seconds = timed(original, self, v)
        images["seconds"] += seconds
        images["columns"] += v.shape[0] if v.dim() == 2 else 0
        return out

    monkeypatch.setattr(FrozenProjection, "images", timed_images)
    exact_rest = []  # seconds besides the images, per size
    for n in SIZES:
        images.update(seconds=0.0, columns=0)
        if n == SIZES[-1]:
            exact = benchmark.pedantic(
                score_capture, args=(lm.adapter, first(captured, n), targets[:n]), rounds=1, iterations=1
            )
            seconds = benchmark.stats.stats.min
        else:
            _, seconds = timed(score_capture, lm.adapter, first(captured, n), targets[:n])
        exact_rest.append(seconds - images["seconds"])
    images_per_layer = images["seconds"] / images["columns"] * COLUMNS_PER_LAYER  # all 64 experts and o_proj
    monkeypatch.setattr(FrozenProjection, "images", original)
    exact_fixed, exact_per_example = linear_fit(SIZES, exact_rest)
    first_order = [timed(score_capture, lm.adapter, first(captured, n), targets[:n], mode="first-order") for n in SIZES]
    first_fixed, first_per_example = linear_fit(SIZES, [s for _, s in first_order])

    reference, reference_s = timed(reference_scores, lm, first(captured, 1), targets[:1], chunk=1024)
    torch.testing.assert_close(exact.ffn[:1], reference.ffn, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(exact.attn[:1], reference.attn, atol=1e-4, rtol=1e-3)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert peak_gb < MEMORY_LIMIT_GB

    checkpoint = {
        "reference": LAYERS_PAPER * EXAMPLES_PAPER * reference_s,
        "exact": LAYERS_PAPER * (images_per_layer + exact_fixed + EXAMPLES_PAPER * exact_per_example),
        "first-order": LAYERS_PAPER * (first_fixed + EXAMPLES_PAPER * first_per_example),
    }
    selected = exact.ffn != 0
    spearman = metrics.spearman(first_order[-1][0].ffn[selected], exact.ffn[selected])
    benchmark.extra_info.update(
        examples=list(SIZES),
        images_per_layer_s=images_per_layer,
        exact_fixed_per_layer_s=exact_fixed,
        exact_per_example_layer_s=exact_per_example,
        first_order_per_example_layer_s=first_per_example,
        reference_per_example_layer_s=reference_s,
        checkpoint_hours={k: v / 3600 for k, v in checkpoint.items()},
        exact_vs_reference=checkpoint["reference"] / checkpoint["exact"],
        first_order_vs_exact=checkpoint["exact"] / checkpoint["first-order"],
        first_order_spearman_random_init=spearman,
        peak_memory_gb=peak_gb,
    )
    print(
        f"\nper layer, once: vocabulary images {images_per_layer:.0f} s, other fixed work {exact_fixed:.1f} s; "
        f"per example and layer: exact {exact_per_example:.3f} s, first-order {first_per_example:.4f} s, "
        f"reference {reference_s:.1f} s\n"
        f"906-example 16-layer checkpoint on this CPU: reference {checkpoint['reference'] / 3600:.1f} h, exact "
        f"{checkpoint['exact'] / 3600:.2f} h ({checkpoint['reference'] / checkpoint['exact']:.0f}x), first-order "
        f"{checkpoint['first-order'] / 60:.1f} min ({checkpoint['exact'] / checkpoint['first-order']:.0f}x over exact; "
        f"Spearman {spearman:.3f} on this random layer); peak memory {peak_gb:.1f} GB"
    )
