"""What thread-count-independent scores cost (lpi_core/reproducible.py): one thread per op with the
layers scored side by side, against every op on all of torch's threads (the layout before).

    pytest benchmarks/test_reproducibility_cost.py -s
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import AutoModelForCausalLM, OlmoeConfig

from benchmarks.timing import best_of
from lpi_core import attribute, capture, engine, wrap_model
from tests.helpers import facts, tokenizer

EXAMPLES = 300


@contextmanager
def all_threads_per_op():
    """The layout before: each op on all of torch's threads, the layers one after another."""
    yield 1


def test_single_thread_ops_cost(benchmark, monkeypatch):
    tok = tokenizer()
    config = OlmoeConfig(
        vocab_size=len(tok),
        hidden_size=128,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        intermediate_size=48,
        num_experts=32,
        num_experts_per_tok=4,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    lm = wrap_model(AutoModelForCausalLM.from_config(config), tok)
    prompts, answers = facts(EXAMPLES)

    def run():
        return attribute(lm, prompts, targets=answers, reduce="none")

    fixed = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    with monkeypatch.context() as patch:
        for module in (engine, capture):
            patch.setattr(module, "single_thread_ops", all_threads_per_op)
        threaded_s = best_of(run, rounds=3)
        threaded = run()
    torch.testing.assert_close(fixed.ffn, threaded.ffn, atol=1e-5, rtol=1e-4)  # the same scores, up to the last bits
    fixed_s = benchmark.stats.stats.min
    benchmark.extra_info.update(
        examples=EXAMPLES, threads=torch.get_num_threads(), all_threads_s=threaded_s, ratio=fixed_s / threaded_s
    )
    print(
        f"\nattribution, {EXAMPLES} examples, {torch.get_num_threads()} threads: one thread per op {fixed_s:.2f}s, "
        f"all threads per op {threaded_s:.2f}s, ratio {fixed_s / threaded_s:.2f}"
    )
