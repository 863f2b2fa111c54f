"""The exact neuron LPI's inner sum in one fused pass (lpi.neuron_lpi, `fused=True`):

    S[b, n] = Σ_v softmax(z_b)_v · exp(c[b, n] · img[n, v] - M[b, n])

compiled by torch.compile (inductor: vectorised C++ on the CPU, a Triton kernel on CUDA), so the
[rows, neurons, vocab] exponent is never written to memory. Each S[b, n] is one reduction over the
vocabulary, so its bits do not depend on the thread count. Where compilation fails (no C++
compiler, no Triton) `fused_available` says why once and the materialised path is used.
"""

from __future__ import annotations

import functools
import warnings

import torch

from .reproducible import single_thread_ops

KERNELS = ("auto", "fused", "materialised")


def weighted_exp_sum(
    probs: torch.Tensor, coefficients: torch.Tensor, images: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """S above: probs [B, V], coefficients [B, N], images [N, V], shift [B, N] -> [B, N]."""
    return (torch.exp(coefficients[:, :, None] * images[None] - shift[:, :, None]) * probs[:, None, :]).sum(-1)


@functools.cache
def _compiled():
    return torch.compile(weighted_exp_sum, dynamic=True)  # made on first use: importing the compiler costs a second


def compiled_weighted_exp_sum(
    probs: torch.Tensor, coefficients: torch.Tensor, images: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """`weighted_exp_sum` in one fused pass (compiled on the first call; dynamic shapes), compiled and
    run on one thread: inductor's code for two threads split some reductions and gave other bits."""
    with single_thread_ops():
        return _compiled()(probs, coefficients, images, shift)


@functools.cache
def fused_available(device_type: str) -> bool:
    """Whether the compiled sum runs on `device_type` and equals the eager one on a small input
    (compiling it once; later shapes reuse the dynamic-shape kernel)."""
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 7, generator=generator), -1)
    c, images = torch.randn(3, 5, generator=generator), torch.randn(5, 7, generator=generator)
    inputs = [t.to(device_type) for t in (probs, c, images, torch.zeros(3, 5))]
    try:
        agree = torch.allclose(compiled_weighted_exp_sum(*inputs), weighted_exp_sum(*inputs), rtol=1e-5, atol=1e-6)
    except Exception as err:  # inductor's failures have many types (no compiler, no Triton, unsupported device)
        warnings.warn(
            f"the fused LPI kernel does not compile on {device_type} ({type(err).__name__}: {err}); "
            "using the materialised path (install a C++ compiler, or Triton on CUDA, to fuse it)",
            stacklevel=2,
        )
        return False
    if not agree:
        warnings.warn(
            f"the fused LPI kernel disagrees with the eager sum on {device_type}; using the materialised path",
            stacklevel=2,
        )
    return agree


def use_fused(kernel: str, device: torch.device) -> bool:
    """`kernel`: auto (fused where it compiles), fused (required), or materialised."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, not {kernel!r}")
    if kernel == "materialised":
        return False
    if fused_available(device.type):
        return True
    if kernel == "fused":
        raise RuntimeError(
            f"kernel='fused' was asked for, but the fused LPI kernel does not compile on {device.type}; "
            "use kernel='auto'"
        )
    return False
