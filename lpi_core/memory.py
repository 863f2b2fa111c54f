"""Staying within memory: chunk sizes from the device's free memory, and smaller chunks on OOM."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import torch

from .lpi import DEFAULT_MAX_ELEMENTS

T = TypeVar("T")
log = logging.getLogger(__name__)
MIN_ELEMENTS = 1 << 16


def chunk_elements(device: torch.device | str) -> int:
    """Values per temporary in `neuron_lpi`: 2^24 on CPU; on a GPU, 1/16 of its free memory in float32."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(MIN_ELEMENTS, free // (16 * 4))
    return DEFAULT_MAX_ELEMENTS


def release_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def halving_on_oom(run: Callable[[int], T], size: int, minimum: int, what: str) -> T:
    """`run(size)`, retried with half the size after each out-of-memory error down to `minimum`."""
    while True:
        try:
            return run(size)
        except torch.cuda.OutOfMemoryError as err:
            if size <= minimum:
                raise torch.cuda.OutOfMemoryError(
                    f"{what}: out of GPU memory even with chunks of {size}; "
                    "free the GPU (other processes?) or run on the CPU"
                ) from err
        release_cached_memory()  # outside the handler: the traceback no longer holds the failed step's tensors
        size = max(minimum, size // 2)
        log.warning("%s: out of GPU memory, retrying with chunks of %d", what, size)
