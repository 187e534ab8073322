"""Embedding an index's fragments in worker processes: the build's encoders run in `workers`
forked processes, a few chunks ahead of the main process, which stores and writes the vectors in
order. Each chunk is encoded exactly as in one process (the same fragments together), so the
shards are the same bytes whatever the number of workers (tested).

The workers are forked with the reference and the encoders in memory (copy-on-write) and receive
only a chunk's first fragment; each runs one torch / BLAS thread. A worker that dies (killed, out
of memory) stops the build with an error instead of leaving it waiting for the lost chunk.
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import signal
import sys
from typing import Callable, Iterator, Sequence

from dnaesa.errors import IndexDirError

#: chunks in flight per worker
AHEAD = 2
#: how often a wait for a chunk checks that the workers live
WATCH_SECONDS = 0.5
#: the function the forked workers run: set just before the fork
_ENCODE: list = []


def _encode(lo: int):
    return _ENCODE[0](lo)


def _init_worker() -> None:
    """One thread per worker (the workers are the parallelism; OpenMP's pool does not survive a
    fork); Ctrl-C is left to the main process, which stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"


def encoded_chunks(encode: Callable[[int], list], starts: Sequence[int], workers: int) -> Iterator[list]:
    """`encode(lo)` for each chunk start, in order; with `workers` > 1 in that many forked
    processes, `AHEAD` chunks each ahead of the caller."""
    if workers <= 1 or len(starts) <= 1:
        yield from map(encode, starts)
        return
    _ENCODE[:] = [encode]
    context = multiprocessing.get_context("fork")
    try:
        with context.Pool(min(workers, len(starts)), initializer=_init_worker) as pool:
            started = list(pool._pool)  # noqa: SLF001 (the pool replaces a dead worker: keep the old one's exit code)
            todo = iter(starts)
            pending = collections.deque(pool.apply_async(_encode, (lo,)) for _, lo in zip(range(AHEAD * workers), todo))
            while pending:
                result = pending.popleft()
                while not result.ready():
                    result.wait(WATCH_SECONDS)
                    started += [p for p in pool._pool if p not in started]  # noqa: SLF001
                    dead = [p.exitcode for p in started if p.exitcode not in (None, 0)]
                    if dead and not result.ready():
                        raise IndexDirError(f"an embedding worker process died (exit code {dead[0]}; out of memory?); "
                                            "run again to resume the build, or with fewer threads (-t)")
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.apply_async(_encode, (nxt,)))
                yield result.get()
    finally:
        _ENCODE.clear()
