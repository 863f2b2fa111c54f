"""What a training step of the miniature costs.

- The MoE's step with the experts as one grouped matmul (transformers'
  `experts_implementation="grouped_mm"`, the trainer's choice) against transformers' loop over the
  experts ("eager"), on the default preset's MoE (16 layers × 32 experts, top-4, 16 × 64 tokens),
  one thread per op as the trainer runs.
- Seconds per step of the trainer itself (`claims.fixtures.miniature.train.train`, the loop a build runs:
  data windows, learning rate, autocast, z-loss, clipping, AdamW, the loss read back) for a preset's
  two models, on random tokens of its vocabulary, in the precision the device gives the preset
  (`presets.for_device`), a few steps after a warm-up (`STEPS`). `extra_info` holds seconds per
  step, tokens per second and the training time of a series at that rate (for `large` on a GPU, what
  issue 11 asks a seed to cost), and on the GPU the ratio to the same preset's CPU step when that ran
  in the same session. (pytest-benchmark's own time of this test also holds the model's build and
  the warm-up: read the seconds per step from `extra_info`.)

    pytest benchmarks/test_training_step.py -s          # on the CPU
    pytest benchmarks/test_training_step.py --gpu -s    # and the default and large presets on the GPU
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from benchmarks.timing import best_of, timed
from claims.fixtures.miniature.build import preset_config
from claims.fixtures.miniature.presets import PRESETS
from claims.fixtures.miniature.train import make_optimizer, router_z_loss, train
from lpi_core.reproducible import single_thread_ops

VOCAB = 1024
SPECIAL = dict(bos_token_id=0, eos_token_id=0, pad_token_id=1)
STEPS = {"cpu": (2, 5), "cuda": (20, 100)}  # warm-up steps, timed steps
SECONDS_PER_STEP: dict[tuple[str, str, str], float] = {}  # (device, preset, family): this run's figures
TRAINER_CASES = [("cpu", "default")] + [pytest.param("cuda", p, marks=pytest.mark.gpu) for p in ("default", "large")]


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
    model = AutoModelForCausalLM.from_config(preset.model_config("moe", VOCAB, SPECIAL), dtype=torch.float32).train()
    optimizer = make_optimizer(model, preset.train)
    ids = torch.randint(
        0, VOCAB, (preset.train.batch_size, preset.train.seq_len), generator=torch.Generator().manual_seed(0)
    )
    model.set_experts_implementation("grouped_mm")
    benchmark.pedantic(lambda: training_step(model, optimizer, ids), rounds=5, warmup_rounds=1)
    grouped_s = benchmark.stats.stats.min
    model.set_experts_implementation("eager")
    loop_s = best_of(lambda: training_step(model, optimizer, ids), rounds=3)
    benchmark.extra_info.update(loop_s=loop_s, ratio=grouped_s / loop_s)
    print(
        f"\nMoE training step, {preset.train.batch_size} x {preset.train.seq_len} tokens, one thread: grouped matmul "
        f"{grouped_s:.2f}s, loop over experts {loop_s:.2f}s, ratio {grouped_s / loop_s:.2f}"
    )


def step_seconds(preset: str, family: str, device: str) -> tuple[list[float], dict]:
    """The timed steps' losses and the seconds per trainer step of `family` of `preset` on `device`."""
    config = preset_config(preset, device)
    warmup, timed_steps = STEPS[device]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        config.model_config(family, config.vocab_size, SPECIAL), dtype=torch.float32
    )
    stream = torch.randint(2, config.vocab_size, (1 << 20,), generator=torch.Generator().manual_seed(0))
    first = dataclasses.replace(config.train, steps=warmup)
    optimizer = make_optimizer(model, first)
    train(model, stream, first, (), lambda *_: None, optimizer=optimizer, progress=False)
    then = dataclasses.replace(config.train, steps=warmup + timed_steps)
    losses, seconds = timed(
        train, model, stream, then, (), lambda *_: None, start_step=warmup, optimizer=optimizer, progress=False
    )
    per_step = seconds / timed_steps
    tokens = config.train.batch_size * config.train.seq_len
    return losses, dict(
        seconds_per_step=per_step,
        tokens_per_second=tokens / per_step,
        timed_steps=timed_steps,
        precision=config.train.mixed_precision or "float32",
        vocabulary=config.vocab_size,
        series_steps=config.train.steps,
        series_training_seconds=per_step * config.train.steps,
    )


@pytest.mark.parametrize("family", ["moe", "dense"])
@pytest.mark.parametrize("device,preset", TRAINER_CASES)
def test_trainer_seconds_per_step(benchmark, device, preset, family):
    losses, info = benchmark.pedantic(step_seconds, args=(preset, family, device), rounds=1, iterations=1)
    SECONDS_PER_STEP[(device, preset, family)] = info["seconds_per_step"]
    if device == "cuda":
        info["device"] = torch.cuda.get_device_name()
        if ("cpu", preset, family) in SECONDS_PER_STEP:
            info["cpu_over_gpu"] = SECONDS_PER_STEP[("cpu", preset, family)] / info["seconds_per_step"]
    benchmark.extra_info.update(info)
    print(f"\n{preset} {family} on {device}: {info}")
    # every timed step trained: one loss each, finite, not below the entropy of uniformly random tokens
    # (less a sampling margin) and within 2 nats above it (initialisation, load balancing, z-loss)
    entropy = math.log(info["vocabulary"] - 2)
    assert len(losses) == STEPS[device][1] and all(entropy - 0.1 < v < entropy + 2.0 for v in losses), losses
