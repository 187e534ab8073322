"""What this machine offers: the device to run on, CPU threads and CPU features; the one home for them.

`resolve_device("auto")` does not import torch on a machine without an NVIDIA device node (importing
torch costs about a second, most of the time to the first record on a small reference); with one,
torch is asked whether CUDA works.
"""
from __future__ import annotations

import glob
import logging
import os
import sys

from dnaesa.errors import OptionsError

log = logging.getLogger("dnaesa")
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


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


def cpu_has_fast_bf16() -> bool:
    """True on x86 CPUs that compute bfloat16 natively (AMX or AVX512-BF16): Linux /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in _BF16_FLAGS)
    except OSError:
        pass
    return False
