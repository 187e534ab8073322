"""The compiled kernels: small C files (`store/_scan.c`, `model/_sketch.c`) that `pip install` builds
as optional extensions, called through ctypes (no Python API). Found, checked and loaded here, once
a run; each has a numpy path that gives the same results, which runs when a kernel is missing (no
C compiler at install) or is a build of another version of its C file (a stale in-place build
would be called with the wrong arguments), with one warning line for the whole run.
"""
from __future__ import annotations

import ctypes
import importlib.util
import logging
from typing import Callable

log = logging.getLogger("dnaesa")

_libs: dict[str, ctypes.CDLL | None] = {}
#: why a kernel module is not used, by module name
UNAVAILABLE: dict[str, str] = {}
_warned = False


def load(name: str, abi: int, configure: Callable[[ctypes.CDLL], None]) -> ctypes.CDLL | None:
    """The compiled module `name` (`dnaesa.store._scan`) as a ctypes library, once its
    `dnaesa_<stem>_abi()` says `abi` and `configure` has set its functions' types; None (and one
    warning line a run) when it is not there or not that version."""
    global _warned
    if name in _libs:
        return _libs[name]
    lib, why = None, None
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        why = "not built (no C compiler when dnaesa was installed)"
    else:
        try:
            lib = ctypes.CDLL(spec.origin)
            version = getattr(lib, f"dnaesa_{name.rpartition('.')[2].lstrip('_')}_abi", None)
            if version is None or version() != abi:
                raise OSError(f"{spec.origin} is a build of another version of its C file; run pip install again")
            configure(lib)
        except OSError as err:
            lib, why = None, f"not loaded ({err})"
    if why is not None:
        UNAVAILABLE[name] = why
        if not _warned:
            log.warning("a compiled kernel (%s) is %s: numpy runs instead (same results, slower)", name, why)
            _warned = True
    _libs[name] = lib
    return lib
