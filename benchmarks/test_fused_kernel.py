"""The exact neuron kernel fused (one compiled pass, lpi_core/fused.py) against the materialised
path, the reference of the same run, per layer on one CPU thread: the miniature default's MoE
layer (906 examples × 32 experts of 48 + 128 attention neurons, vocabulary 1024) and a token's
active slice of an OLMoE-1B-7B layer (8 examples × 8 experts of 1024, vocabulary 50304). The
ratio materialised / fused is in extra_info; the one-off compile time too.

    pytest benchmarks/test_fused_kernel.py -s
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.timing import best_of, timed
from lpi_core import fused
from lpi_core.lpi import neuron_lpi
from lpi_core.reproducible import single_thread_ops

SHAPES = {"miniature-moe-layer": (906, 32 * 48 + 128, 1024), "olmoe-active-slice": (8, 8 * 1024, 50304)}


def kernel_inputs(examples: int, neurons: int, vocab: int):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(examples, vocab, generator=g) * 4,
        torch.randn(examples, neurons, generator=g) * 3,
        torch.randn(neurons, vocab, generator=g) * 0.82,
        torch.randint(vocab, (examples,), generator=g),
    )


@pytest.mark.parametrize("shape", list(SHAPES))
def test_fused_kernel_against_the_materialised_path(benchmark, shape):
    inputs = kernel_inputs(*SHAPES[shape])
    with single_thread_ops():
        _, compile_s = timed(fused.fused_available, "cpu")
        materialised_s = best_of(lambda: neuron_lpi(*inputs, fused=False), rounds=2)
        out = benchmark.pedantic(neuron_lpi, args=inputs, kwargs=dict(fused=True), rounds=2, warmup_rounds=1)
    fused_s = benchmark.stats.stats.min
    difference = (out - neuron_lpi(*inputs, fused=False)).abs().max().item()
    benchmark.extra_info.update(
        shape=dict(zip(("examples", "neurons", "vocab"), SHAPES[shape])),
        materialised_s=materialised_s,
        fused_s=fused_s,
        materialised_over_fused=materialised_s / fused_s,
        first_compile_s=compile_s,
        max_abs_difference=difference,
        threads=1,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
    )
    print(
        f"\n{shape} {SHAPES[shape]}: materialised {materialised_s:.3f} s, fused {fused_s:.3f} s "
        f"({materialised_s / fused_s:.1f}x); compile once {compile_s:.1f} s; max |difference| {difference:.1e}"
    )
