"""What this machine offers: the device to run on, CPU threads and CPU features; the one home for them.

`resolve_device("auto")` does not import torch on a machine without an NVIDIA device node (importing
torch costs about a second, most of the time to the first record on a small reference); with one,
torch is asked whether CUDA works.
"""
from __future__ import annotations

import functools
import glob
import logging
import os
import sys

from dnaesa.errors import OptionsError

log = logging.getLogger("dnaesa")
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: x86 flags of int8 dot-product instructions, which `torch._int_mm` needs to be fast on CPU
_INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")


def _cuda_available() -> bool:
    if "torch" not in sys.modules and not glob.glob("/dev/nvidia[0-9]*"):
        return False
    import torch

    return torch.cuda.is_available()


def resolve_device(device: str = "auto") -> str:
    """`auto` -> `cuda` when torch sees a GPU, else `cpu`; `cuda` without a GPU is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise OptionsError(f"unknown device {device!r}: use auto, cpu or cuda")
    if device == "cpu":
        return device
    available = _cuda_available()
    if device == "cuda" and not available:
        raise OptionsError("--device cuda was asked for, but torch sees no CUDA device; use --device auto or cpu")
    return "cuda" if available else "cpu"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), not all the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_threads(threads: int | None) -> int | None:
    """`threads` as asked, capped at the usable cores (more only adds contention), with a warning."""
    if threads is None:
        return None
    if threads < 1:
        raise OptionsError(f"threads must be at least 1, got {threads}")
    cores = usable_cores()
    if threads > cores:
        log.warning("[dnaesa] -t %d is more than the %d cores here: using %d", threads, cores, cores)
        return cores
    return threads


def set_threads(threads: int) -> None:
    """Use `threads` CPU threads in FAISS, and in torch when it is imported (call again after
    importing it: this does not import torch, which costs a second or more)."""
    import faiss

    faiss.omp_set_num_threads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The first CPU's flags in Linux /proc/cpuinfo (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True on x86 CPUs that compute bfloat16 natively (AMX or AVX512-BF16): Linux /proc/cpuinfo."""
    return bool(_cpu_flags() & set(_BF16_FLAGS))


def cpu_has_fast_int8() -> bool:
    """True on x86 CPUs with int8 dot-product instructions (AMX, AVX512-VNNI, AVX-VNNI), where
    `torch._int_mm` beats float32 products; `DNAESA_INT8_PRODUCTS=1` or `=0` overrides. Measured
    2026-12-02: 420 GOPS a core on an AVX512-VNNI EPYC, 3.6 on an AVX2-only one (float32: 49)."""
    forced = os.environ.get("DNAESA_INT8_PRODUCTS")
    if forced in ("0", "1"):
        return forced == "1"
    return bool(_cpu_flags() & set(_INT8_FLAGS))
