"""Embedding an index's fragments in worker processes: the build's encoders run in `workers`
forked processes, a few chunks ahead of the main process, which stores and writes the vectors in
order. Each chunk is encoded exactly as in one process (the same fragments together), so the
shards are the same bytes whatever the number of workers (tested).

The workers are forked with the reference and the encoders in memory (copy-on-write) and receive
only a chunk's first fragment; each runs one torch thread. A worker that dies (killed, out of
memory) breaks the pool (`concurrent.futures`), which stops the build with one error line instead
of leaving it waiting for the lost chunk.
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence

from dnaesa import compiled
from dnaesa.errors import IndexDirError

#: chunks in flight per worker
AHEAD = 2
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
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # for a torch imported later


def encode_on_one_thread(encoders: Sequence, seqs: Sequence[str]) -> list:
    """Each encoder's vectors of `seqs`, computed on one BLAS thread wherever this runs (the main
    process, a worker, a Ray actor): OpenBLAS rounds some products otherwise with other thread
    counts (up to 1e-7 in the compact encoder), which would make an index's bytes depend on the
    machine and on -t."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return [encoder.encode(seqs) for encoder in encoders]


def encoded_chunks(encode: Callable[[int], list], starts: Sequence[int], workers: int) -> Iterator[list]:
    """`encode(lo)` for each chunk start, in order; with `workers` > 1 in that many forked
    processes, `AHEAD` chunks each ahead of the caller."""
    if workers <= 1 or len(starts) <= 1:
        yield from map(encode, starts)
        return
    _ENCODE[:] = [encode]
    compiled.load_all()  # the workers inherit the kernels (and a missing one is one warning, here)
    pool = ProcessPoolExecutor(min(workers, len(starts)), multiprocessing.get_context("fork"), _init_worker)
    try:
        todo = iter(starts)
        pending = collections.deque(pool.submit(_encode, lo) for _, lo in zip(range(AHEAD * workers), todo))
        while pending:
            try:
                vectors = pending.popleft().result()
            except BrokenProcessPool as err:  # a worker was killed: its chunk will never come
                raise IndexDirError("an embedding worker process died (killed; out of memory?); run again to resume "
                                    "the build, or with fewer threads (-t)") from err
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_encode, nxt))
            yield vectors
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _ENCODE.clear()
