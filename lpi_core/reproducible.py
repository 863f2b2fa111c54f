"""Results that do not depend on the thread count: one thread per op, independent items side by side.

Multithreaded CPU kernels may split a reduction by the number of threads: on AMD EPYC, MKL's
float32 matrix product of a few rows (a prompt's tokens, the tokens routed to one expert) gave
other bits with 2 threads than with 1, even in MKL's strict reproducibility mode (MKL_CBWR). Inside
`single_thread_ops()` every torch op runs on one intra-op thread, which gives the same bits on every
call; the cores are used by `parallel_map`, which runs independent items (the layers of an
attribution) side by side. Their results do not interact, so the outcome is the same whatever the
number of threads or workers. `numeric_environment()` names what the last bits still depend on.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")
_outer_threads: int | None = None  # torch's thread count outside the outermost single_thread_ops block


@contextmanager
def single_thread_ops() -> Iterator[int]:
    """Torch ops use one intra-op thread inside the block; yields the thread count from before it,
    the number of items `parallel_map` may run at once. Nested blocks share the outermost count."""
    global _outer_threads
    if _outer_threads is not None:
        yield _outer_threads
        return
    _outer_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _outer_threads
    finally:
        torch.set_num_threads(_outer_threads)
        _outer_threads = None


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """[fn(item) for item in items], computed on up to `workers` threads, each running ops on one
    thread (set in every new thread: OpenMP and MKL keep their thread count per thread)."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(min(workers, len(items)), initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return list(pool.map(fn, items))


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def numeric_environment() -> dict[str, str | int]:
    """What a result's last bits depend on besides code, data and options: the CPU and its kernel set
    (the thread count is recorded, though results do not depend on it)."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "threads": torch.get_num_threads(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
