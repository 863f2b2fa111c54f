"""Thread-count-independent arithmetic on the CPU: MKL's strict conditional numerical reproducibility.

torch's x86 builds multiply float32 matrices with MKL, whose GEMM takes thread-count-dependent
code paths for some small shapes (measured on AMD EPYC: 5 to 11 rows, the size of a prompt or of
the few tokens routed to one expert), so the same checkpoint gave other activations, and other
scores, with 1 thread than with 2. With `MKL_CBWR=AUTO,STRICT` MKL's GEMM gives the same bits
whatever the thread count, at the fastest code path of the CPU. MKL reads the setting at its first
call, so importing lpi_core sets it (unless the user chose an MKL_CBWR of their own) before any
computation; `mkl_reproducibility()` reports the mode MKL actually runs in, and
`numeric_environment()` everything of the machine that the last bits of a result depend on.
"""
from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

STRICT = "AUTO,STRICT"
_STRICT_FLAG = 0x10000  # MKL_CBWR_STRICT in mkl_cbwr.h
_ALL = -1  # MKL_CBWR_ALL

os.environ.setdefault("MKL_CBWR", STRICT)


def mkl_reproducibility() -> str:
    """"strict" if MKL's GEMM is thread-count independent, "off" if MKL runs without strict mode
    (it was initialised before lpi_core was imported, or MKL_CBWR says otherwise), "no MKL" if
    torch does not use MKL, "unknown" if its mode cannot be read."""
    import torch

    if not torch.backends.mkl.is_available():
        return "no MKL"
    try:
        library = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        mode = library.mkl_serv_cbwr_get(ctypes.c_int(_ALL))
    except (OSError, AttributeError):
        return "unknown"
    return "strict" if mode & _STRICT_FLAG else "off"


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def numeric_environment() -> dict[str, str | int]:
    """What a result's last bits depend on besides code and data: CPU, kernel set, threads, MKL mode."""
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "threads": torch.get_num_threads(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": mkl_reproducibility(),
    }
