"""The GPU path (CUDA, bfloat16): run with `pytest tests --gpu` on a machine with a GPU; skipped otherwise."""
from __future__ import annotations

import pytest
import torch

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
