"""The compiled kernels: small C files (`store/_scan.c`, `model/_sketch.c`, `store/_seeds.c`) that `pip install` builds
as optional extensions, called through ctypes (no Python API); their signatures live here.

Each has a numpy path that gives the same results, which runs when a kernel is missing (no C
compiler at install) or is a build of another version of its C file (a stale in-place build
would be called with the wrong arguments). All are loaded together on the first use, with one
warning line for what is missing; code that forks worker processes calls `load_all` first, so
that the workers inherit them (and do not each warn).
"""
from __future__ import annotations

import ctypes
import importlib.util
import logging

log = logging.getLogger("dnaesa")

_P, _I64 = ctypes.c_void_p, ctypes.c_int64
#: the start of the one warning line a run prints when a kernel is missing (no C compiler at install)
MISSING_WARNING = "numpy runs instead of compiled kernels (same results, slower)"


def _configure_scan(lib: ctypes.CDLL) -> None:
    lib.dnaesa_scan_topk.restype = None
    lib.dnaesa_scan_topk.argtypes = [_P, _I64, _I64, _I64, _P, _P, _P, _P, _I64, _I64, _P, _P, _P, _P, _P, ctypes.c_int]
    lib.dnaesa_scan_simd.restype = ctypes.c_int
    lib.dnaesa_scan_columns.restype = None
    lib.dnaesa_scan_columns.argtypes = [_P, _I64, _P, _P, _P, _I64, _I64, _P, _P, _P, _P, _P, ctypes.c_int]
    lib.dnaesa_scan_pairs.restype = None
    lib.dnaesa_scan_pairs.argtypes = [_P, _I64, _P, _P, _P, _P, _I64, _P, _P, _P]
    lib.dnaesa_integer_rows.restype = None
    lib.dnaesa_integer_rows.argtypes = [_P, _I64, _I64, _I64, ctypes.c_float, _P, _P, _P]


def _configure_sketch(lib: ctypes.CDLL) -> None:
    lib.dnaesa_sketch.restype = ctypes.c_int
    lib.dnaesa_sketch.argtypes = [_P, _P, _P, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P, _P]


def _configure_seeds(lib: ctypes.CDLL) -> None:
    lib.dnaesa_seeds_sample.restype = _I64
    lib.dnaesa_seeds_sample.argtypes = [_P, _I64, _I64, ctypes.c_uint64, _P, _P]
    lib.dnaesa_seeds_candidates.restype = ctypes.c_int
    lib.dnaesa_seeds_candidates.argtypes = [_P, _P, _P, _I64, _I64, ctypes.c_uint64, ctypes.c_int, _P, _P, _I64, _P,
                                            _I64, _P, _P, _I64, _P, _I64, _I64, ctypes.c_double, _I64, _I64, _P, _P, _P]


SCAN, SKETCH, SEEDS = "dnaesa.store._scan", "dnaesa.model._sketch", "dnaesa.store._seeds"
#: each kernel module: (the version of its calling convention, which its `dnaesa_<stem>_abi()`
#: must return; what sets its functions' ctypes signatures)
KERNELS = {SCAN: (3, _configure_scan), SKETCH: (1, _configure_sketch), SEEDS: (4, _configure_seeds)}

_libs: dict[str, ctypes.CDLL | None] = {}
#: why a kernel module is not used, by module name
UNAVAILABLE: dict[str, str] = {}


def _open(name: str, abi: int, configure) -> tuple[ctypes.CDLL | None, str | None]:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        return None, "not built (no C compiler when dnaesa was installed)"
    try:
        lib = ctypes.CDLL(spec.origin)
        version = getattr(lib, f"dnaesa_{name.rpartition('.')[2].lstrip('_')}_abi", None)
        if version is None or version() != abi:
            raise OSError(f"{spec.origin} is a build of another version of its C file; run pip install again")
        configure(lib)
    except OSError as err:
        return None, f"not loaded ({err})"
    return lib, None


def load_all() -> None:
    """Load every kernel (once a process; forked workers inherit them); one warning line for those
    that are missing."""
    if _libs:
        return
    missing = []
    for name, (abi, configure) in KERNELS.items():
        _libs[name], why = _open(name, abi, configure)
        if why is not None:
            UNAVAILABLE[name] = why
            missing.append(f"{name} {why}")
    if missing:
        log.warning("%s: %s", MISSING_WARNING, "; ".join(missing))


def load(name: str) -> ctypes.CDLL | None:
    """The kernel module `name` (`SCAN`, `SKETCH`, `SEEDS`) as a ctypes library, or None when it is missing."""
    load_all()
    return _libs[name]
