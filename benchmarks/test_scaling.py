"""How the exact kernel (lpi.neuron_lpi) grows with examples, neurons per layer and vocabulary
size: each axis doubled three times with the others fixed, and a straight line fitted, time =
fixed + per unit × size. Linear growth shows as small residuals of that fit (printed, and in
extra_info); the fixed part is per-call work such as the images' row extrema.

    pytest benchmarks/test_scaling.py -s
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.timing import best_of
from lpi_core.lpi import neuron_lpi

BASE = dict(examples=16, neurons=1024, vocab=8192)
AXES = {"examples": (8, 16, 32, 64), "neurons": (256, 512, 1024, 2048), "vocab": (4096, 8192, 16384, 32768)}
UNIT = {"examples": "example", "neurons": "neuron", "vocab": "vocabulary entry"}


def kernel_inputs(examples: int, neurons: int, vocab: int):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(examples, vocab, generator=g),
        torch.randn(examples, neurons, generator=g) * 0.1,
        torch.randn(neurons, vocab, generator=g),
        torch.randint(vocab, (examples,), generator=g),
    )


@pytest.mark.parametrize("axis", AXES)
def test_exact_kernel_scales_linearly(benchmark, axis):
    sizes, seconds = AXES[axis], []
    for size in sizes[:-1]:
        inputs = kernel_inputs(**{**BASE, axis: size})
        seconds.append(best_of(lambda: neuron_lpi(*inputs)))
    inputs = kernel_inputs(**{**BASE, axis: sizes[-1]})
    benchmark.pedantic(neuron_lpi, args=inputs, rounds=3, warmup_rounds=1)
    seconds.append(benchmark.stats.stats.min)
    per_unit, fixed = np.polyfit(sizes, seconds, 1)
    residual = max(abs(fixed + per_unit * n - s) / s for n, s in zip(sizes, seconds))
    benchmark.extra_info.update(
        axis=axis,
        sizes=list(sizes),
        seconds=seconds,
        fixed_s=fixed,
        per_unit_s=per_unit,
        max_relative_residual=residual,
    )
    print(
        f"\n{axis} (others: {', '.join(f'{k} {v}' for k, v in BASE.items() if k != axis)}): "
        f"time = {fixed * 1e3:.1f} ms + "
        f"{per_unit * 1e6:.2f} µs per {UNIT[axis]}; largest residual {100 * residual:.1f}%"
    )
    for size, s in zip(sizes, seconds):
        print(f"  {size:>6}: {s * 1e3:8.1f} ms (fit {1e3 * (fixed + per_unit * size):8.1f} ms)")
