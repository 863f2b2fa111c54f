"""What MKL's strict reproducibility (lpi_core/reproducible.py) costs: a whole attribution with it and without.

MKL reads its mode once per process, so each mode runs in its own subprocess, the two alternating;
the ratio of their attribution times, strict / default, is in `extra_info`.

    pytest benchmarks/test_reproducibility_cost.py -s
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3
CHILD = """
import json, sys, time, torch
if sys.argv[1] == "default":
    torch.ones(2, 2) @ torch.ones(2, 2)  # MKL starts in its default mode, before lpi_core can set strict
from transformers import AutoModelForCausalLM, OlmoeConfig
from lpi_core import attribute, wrap_model
from lpi_core.reproducible import mkl_reproducibility
from tests.helpers import facts, tokenizer
tok = tokenizer()
config = OlmoeConfig(vocab_size=len(tok), hidden_size=128, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
                     intermediate_size=48, num_experts=32, num_experts_per_tok=4, max_position_embeddings=64)
torch.manual_seed(0)
lm = wrap_model(AutoModelForCausalLM.from_config(config), tok)
prompts, answers = facts(300)
start = time.perf_counter()
attribute(lm, prompts, targets=answers, reduce="none")
print(json.dumps({"mode": mkl_reproducibility(), "seconds": time.perf_counter() - start}))
"""


def attribution_seconds(mode: str) -> tuple[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["mode"], result["seconds"]


def test_strict_reproducibility_cost(benchmark):
    times: dict[str, list[float]] = {"strict": [], "default": []}
    modes: dict[str, str] = {}
    for _ in range(ROUNDS):
        for mode in times:
            modes[mode], seconds = attribution_seconds(mode)
            times[mode].append(seconds)
    assert modes == {"strict": "strict", "default": "off"}
    benchmark.pedantic(attribution_seconds, args=("strict",), rounds=1)  # the whole strict process, start-up included
    strict, default = min(times["strict"]), min(times["default"])
    benchmark.extra_info.update(strict_s=strict, default_s=default, ratio=strict / default, examples=300)
    print(f"\nattribution, 300 examples: strict {strict:.2f}s, default {default:.2f}s, strict/default {strict / default:.2f}")
