"""The GPU path (CUDA, bfloat16): run with `pytest tests --gpu` on a machine with a GPU; skipped otherwise."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from transformers import AutoTokenizer

from claims.fixtures.miniature.build import (
    _train_series,
    build_miniature,
    build_series,
    prepare_miniature,
    preset_config,
    run_directory,
)
from claims.fixtures.miniature.evaluation import checkpoint_hits
from claims.fixtures.miniature.presets import PRESETS
from lpi_core import attribute, wrap_model
from lpi_core.memory import chunk_elements
from tests.helpers import FAMILIES, facts, tiny_lm

pytestmark = pytest.mark.gpu
PROMPTS, ANSWERS = facts()


@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_bfloat16_scores_match_cpu_float32(family):
    cpu = tiny_lm(family)
    gpu = wrap_model(tiny_lm(family).model.to("cuda", torch.bfloat16), cpu.tokenizer)
    prompts, answers = PROMPTS[::90], ANSWERS[::90]
    expected = attribute(cpu, prompts, targets=answers)
    measured = attribute(gpu, prompts, targets=answers)
    for name in ("ffn_layer", "attn_layer", "heads"):
        got, want = getattr(measured, name).flatten(), getattr(expected, name).flatten()
        assert torch.isfinite(got).all() and torch.corrcoef(torch.stack([got, want]))[0, 1] > 0.95, name


def test_gpu_chunks_follow_free_memory():
    free, _ = torch.cuda.mem_get_info()
    assert chunk_elements("cuda") == max(1 << 16, free // 64)


def test_the_miniature_trains_on_the_gpu_in_its_own_cache_entry(tmp_path):
    gpu = build_miniature("smoke", cache_dir=tmp_path, device="cuda")
    assert gpu.manifest["config"]["train"]["device"] == "cuda" and gpu.root != run_directory("smoke", tmp_path)
    assert gpu.training_precision == "float32 on a CUDA GPU"  # the smoke preset's precision
    losses = gpu.losses("moe")
    assert len(losses) == 60 and losses[-1] < losses[0] - 1.0
    for family in ("moe", "dense"):
        last = gpu.series(family).checkpoints[-1]
        assert set(gpu.hit_at_10(family)) == {15, 30, 45, 60}
        assert gpu.hit_at_10(family)[60] == pytest.approx(checkpoint_hits(last.source)[10], abs=0.01)  # on the CPU


def test_the_miniature_trains_in_bfloat16_on_the_gpu_and_resumes_there(tmp_path):
    smoke = PRESETS["smoke"]
    bf16 = dataclasses.replace(smoke, train=dataclasses.replace(smoke.train, mixed_precision="bfloat16"))
    run = prepare_miniature(bf16, tmp_path, device="cuda")
    assert run.training_precision == "bfloat16 mixed precision on a CUDA GPU"
    config = preset_config(bf16, "cuda")
    short = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=30), checkpoints=(15, 30))
    _train_series(
        run.root / "moe" / "seed0",
        "moe",
        0,
        short,
        AutoTokenizer.from_pretrained(run.root / "tokenizer"),
        run.token_stream(),
        False,
    )
    assert (
        run.root / "moe" / "seed0" / "step30" / "trainer_state.pt"
    ).exists()  # a resumable state, as a killed build leaves
    series = build_series(run, "moe")  # resumes from step 30 on the GPU
    losses = run.losses("moe")
    assert len(losses) == 60 and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] - 1.0
    assert [c.step for c in series.checkpoints] == [15, 30, 45, 60]
