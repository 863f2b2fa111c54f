"""What the miniature MoE's training step costs with the experts as one grouped matmul (transformers'
`experts_implementation="grouped_mm"`, the trainer's choice) against transformers' loop over the
experts ("eager"), on the default preset's MoE (16 layers × 32 experts, top-4, 16 × 64 tokens),
one thread per op as the trainer runs.

    pytest benchmarks/test_training_step.py -s
"""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from benchmarks.timing import best_of
from fixtures.miniature.presets import PRESETS
from fixtures.miniature.train import make_optimizer, router_z_loss
from lpi_core.reproducible import single_thread_ops

VOCAB = 1024


def training_step(model, optimizer, ids: torch.Tensor) -> float:
    with single_thread_ops():
        output = model(input_ids=ids, labels=ids, output_router_logits=True)
        loss = output.loss + 0.001 * router_z_loss(output.router_logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.item()


def test_moe_training_step_grouped_matmul_against_the_loop_over_experts(benchmark):
    preset = PRESETS["default"]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        preset.model_config("moe", VOCAB, dict(bos_token_id=0, eos_token_id=0, pad_token_id=1)), dtype=torch.float32
    ).train()
    optimizer = make_optimizer(model, preset.train)
    ids = torch.randint(0, VOCAB, (preset.train.batch_size, preset.train.seq_len), generator=torch.Generator().manual_seed(0))
    model.set_experts_implementation("grouped_mm")
    benchmark.pedantic(lambda: training_step(model, optimizer, ids), rounds=5, warmup_rounds=1)
    grouped_s = benchmark.stats.stats.min
    model.set_experts_implementation("eager")
    loop_s = best_of(lambda: training_step(model, optimizer, ids), rounds=3)
    benchmark.extra_info.update(loop_s=loop_s, ratio=grouped_s / loop_s)
    print(f"\nMoE training step, {preset.train.batch_size} x {preset.train.seq_len} tokens, one thread: grouped matmul "
          f"{grouped_s:.2f}s, loop over experts {loop_s:.2f}s, ratio {grouped_s / loop_s:.2f}")
