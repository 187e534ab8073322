"""The local engine: per-read alignment of a batch, in this process or in forked worker processes.

Embedding and search already use every thread (torch, FAISS); the per-read dynamic programming is
Python driving C libraries, so it scales by processes. Workers are forked once with the reference
and the refiner in memory (copy-on-write) and receive only reads and candidate windows. Results
come back in input order.
"""
from __future__ import annotations

import multiprocessing
from typing import Sequence

from dnaesa.align.mapq import assign_mapq
from dnaesa.align.refine import Candidate, Refiner
from dnaesa.align.types import Alignment

#: below this many reads a batch is aligned in-process (sending work costs more than it saves)
MIN_PARALLEL_READS = 256
_WORKER_REFINER: Refiner | None = None


def place_read(refiner: Refiner, seq: str, candidates: list[Candidate]) -> list[Alignment]:
    """Reportable placements of one read, primary first, with MAPQ set."""
    alignments = [a for a in refiner.align(seq, candidates) if a.score >= refiner.opts.min_score]
    assign_mapq(alignments, refiner.opts)
    return alignments


def _place_chunk(jobs: list[tuple[str, list[Candidate]]]) -> list[list[Alignment]]:
    return [place_read(_WORKER_REFINER, seq, cands) for seq, cands in jobs]


class Done:
    """A result already computed, with the `get()` of an asynchronous one."""

    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


class Pending:
    """Chunks placed by the worker pool; `get()` waits and joins them in order."""

    def __init__(self, async_result):
        self.async_result = async_result

    def get(self) -> list[list[Alignment]]:
        return [placed for chunk in self.async_result.get() for placed in chunk]


class LocalEngine:
    """Places reads with `workers` processes (1: in this process)."""

    def __init__(self, refiner: Refiner, workers: int = 1):
        self.refiner, self.workers = refiner, max(1, workers)
        self._pool = None

    def place(self, seqs: Sequence[str], candidates: Sequence[list[Candidate]]) -> Done | Pending:
        """Start placing a batch; the returned object's `get()` gives the placements in order."""
        if self.workers == 1 or len(seqs) < MIN_PARALLEL_READS or "fork" not in multiprocessing.get_all_start_methods():
            return Done([place_read(self.refiner, s, c) for s, c in zip(seqs, candidates)])
        jobs = list(zip(seqs, candidates))
        size = -(-len(jobs) // (self.workers * 4))
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        return Pending(self._get_pool().map_async(_place_chunk, chunks))

    def _get_pool(self):
        global _WORKER_REFINER
        if self._pool is None:
            _WORKER_REFINER = self.refiner  # inherited by the forked workers
            self._pool = multiprocessing.get_context("fork").Pool(self.workers)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    def __del__(self):
        if self._pool is not None:
            self._pool.terminate()
