"""The local engine: per-read alignment of a batch, in this process or in forked worker processes.

The per-read dynamic programming is Python driving C libraries, so it scales by processes. Workers
are forked once with the reference, the refiner (and, on CPU, the encoder and the vector store) in
memory (copy-on-write) and receive only reads and candidate windows as flat arrays
(`CandidateBatch`). For `align_file` they also format the SAM records, so the main process only
parses reads and writes text; on CPU they embed and search the batch too (`submit` without
candidates), the main process then does almost nothing per read. Several batches are in flight at
once, so the workers never wait for the main process. Results come back in input order.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from dnaesa.align.candidates import CandidateBatch
from dnaesa.align.pairing import InsertSize
from dnaesa.align.place import place_pair, place_read
from dnaesa.align.refine import Refiner
from dnaesa.align.types import Alignment
from dnaesa.errors import WorkerError

#: below this many reads a batch is aligned in-process (sending work costs more than it saves)
MIN_PARALLEL_READS = 256
#: the worker processes the pool of this process started (see `_Pool.Process`)
_STARTED: list = []
#: how often a wait for results checks that no worker died (a dead worker's batch never comes back)
WATCH_SECONDS = 0.5
#: what the forked workers use, set just before the fork: "refiner", "search", "formatter"
_WORKER: dict = {}


def _place_chunk(jobs: tuple[list[str], CandidateBatch]) -> list[list[Alignment]]:
    seqs, candidates = jobs
    return [place_read(_WORKER["refiner"], s, c, r) for s, (c, r) in zip(seqs, candidates.tiers())]


def format_reads(refiner: Refiner, formatter, names: Sequence[str], seqs: Sequence[str],
                 quals: Sequence[str | None], candidates: CandidateBatch,
                 search: Callable[[list[str]], CandidateBatch] | None = None) -> tuple[str, int]:
    """Place reads and format their SAM records: (the records' text, how many reads mapped).
    `search`, when given, looks for the clipped part of a split read (`place_read`)."""
    parts, mapped = [], 0
    for name, seq, qual, (cands, rescue) in zip(names, seqs, quals, candidates.tiers()):
        alignments = place_read(refiner, seq, cands, rescue, search=search)
        parts.append(formatter.records(name, seq, qual, alignments))
        mapped += bool(alignments)
    return "".join(parts), mapped


def format_pairs(refiner: Refiner, formatter, pairing: PairContext, names: Sequence[str], seqs: Sequence[str],
                 quals: Sequence[str | None], candidates: CandidateBatch,
                 search: Callable[[list[str]], CandidateBatch] | None = None) -> tuple[str, int]:
    """Place pairs (reads 2i and 2i + 1 are mates 1 and 2 of pair i; names[2i] its name) and format
    their records: (the records' text, how many reads mapped)."""
    parts, mapped = [], 0
    tiers = candidates.tiers()
    for i in range(0, len(seqs), 2):
        choice = place_pair(refiner, (seqs[i], seqs[i + 1]), tiers[i : i + 2], pairing.insert, pairing.contig_lengths,
                            search)
        mates = ((seqs[i], quals[i]), (seqs[i + 1], quals[i + 1]))
        parts.append(formatter.pair(names[i], mates, (choice.first, choice.second), choice.proper))
        mapped += (choice.first is not None) + (choice.second is not None)
    return "".join(parts), mapped


@dataclass(frozen=True)
class PairContext:
    """What pairing needs besides the refiner: the insert size (None: unknown) and contig lengths."""

    insert: InsertSize | None
    contig_lengths: tuple[int, ...]


def _format(refiner: Refiner, context: dict, job: tuple) -> tuple[str, int]:
    if context.get("pairing") is not None:
        return format_pairs(refiner, context["formatter"], context["pairing"], *job, search=context.get("search"))
    return format_reads(refiner, context["formatter"], *job, search=context.get("search"))


def _format_chunk(job: tuple) -> tuple[str, int]:
    return _format(_WORKER["refiner"], _WORKER, job)


def _search_batch(seqs: list[str]) -> CandidateBatch:
    return _WORKER["search"](seqs)


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the main process dies (even by SIGKILL), so no
    orphan keeps computing or prints tracebacks about the broken result pipe."""
    import ctypes
    import os
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != _WORKER.get("parent", os.getppid()):  # it died before prctl took effect
        os._exit(1)


def _init_worker() -> None:
    """One thread per worker for torch and FAISS: the workers are the parallelism (and OpenMP's
    thread pool does not survive the fork: a forked worker using it would hang). Measured: two
    workers each running torch's default two threads on 2 cores spent several times the CPU in integer
    matrix products (OpenMP threads spinning for a core). Ctrl-C reaches
    the whole process group: the workers leave it to the main process, which stops them."""
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the main process's handler: terminate() sends it
    _die_with_parent()
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    else:  # imported later, by the search (a tiered store's main process never imports it): one thread too
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(1)


class Done:
    """A result already computed, with the `get()` of an asynchronous one."""

    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


class Pending:
    """Chunks placed by the worker pool; `get()` waits (watching the workers) and joins them in order."""

    def __init__(self, async_result, engine: LocalEngine):
        self.async_result, self._engine = async_result, engine

    def get(self) -> list[list[Alignment]]:
        while not self.async_result.ready():
            self._engine.check_workers()
            self.async_result.wait(WATCH_SECONDS)
        return [placed for chunk in self.async_result.get() for placed in chunk]


class BatchJob:
    """A batch formatted by the workers, after they searched it (no candidates given) or not.

    The pool's result thread hands the searched batch on to the workers as aligning chunks (the
    callbacks below), so no batch waits for the main process. `get()` -> (SAM text of each chunk,
    reads mapped)."""

    def __init__(self, engine: LocalEngine, names, seqs, quals, candidates: CandidateBatch | None):
        self._engine, self._reads = engine, (names, seqs, quals)
        self._done = threading.Event()
        self._value: tuple[list[str], int] | None = None
        self._error: BaseException | None = None
        #: the pool this batch runs on: if it is stopped meanwhile, the batch fails, never starts another
        self._pool = engine._get_pool()
        if candidates is None:
            self._pool.apply_async(_search_batch, (seqs,), callback=self._searched, error_callback=self._fail)
        else:
            self._searched(candidates)

    def _searched(self, candidates: CandidateBatch) -> None:
        try:
            names, seqs, quals = self._reads
            self._reads = None
            jobs = [(names[lo:hi], seqs[lo:hi], quals[lo:hi], candidates.slice(lo, hi))
                    for lo, hi in self._engine.chunks(len(seqs))]
            if self._engine._pool is not self._pool:  # stopped (a signal, an error) while it was searched
                raise WorkerError("the worker pool was stopped")
            self._pool.map_async(_format_chunk, jobs, callback=self._formatted, error_callback=self._fail)
        except BaseException as e:  # noqa: BLE001 - an exception here would stop the pool's result thread
            self._fail(e)

    def _formatted(self, parts: list[tuple[str, int]]) -> None:
        self._value = ([text for text, _ in parts], sum(n for _, n in parts))
        self._done.set()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def get(self) -> tuple[list[str], int]:
        while not self._done.wait(WATCH_SECONDS):
            self._engine.check_workers()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


class _Pool(multiprocessing.pool.Pool):
    """A fork pool whose worker-maintenance thread does not wake up for every result.

    CPython's pool thread that replaces dead workers also waits on the result pipe, so while a
    result is being read it spins (about 1 ms of CPU per large result, in this process, holding
    the GIL). It needs only the workers' own sentinels and the pool's change notifier."""

    def __init__(self, workers: int):
        super().__init__(workers, initializer=_init_worker, context=multiprocessing.get_context("fork"))

    def _get_sentinels(self):
        return [self._change_notifier._reader]

    @staticmethod
    def Process(ctx, *args, **kwds):
        """Every worker ever started, recorded as it is made: one killed before `check_workers`
        first looked is seen too (its replacement would otherwise hide it)."""
        process = ctx.Process(*args, **kwds)
        _STARTED.append(process)
        return process


class LocalEngine:
    """Places reads with `workers` processes (1: in this process)."""

    def __init__(self, refiner: Refiner, workers: int = 1):
        self.refiner, self.workers = refiner, max(1, workers)
        self._pool = None
        self._workers: list = []
        self._context: dict = {}
        #: why the run stopped when a worker died (no pool is started again)
        self._dead: str | None = None

    @property
    def parallel(self) -> bool:
        return self.workers > 1 and "fork" in multiprocessing.get_all_start_methods()

    def chunks(self, n: int) -> list[tuple[int, int]]:
        """(lo, hi) ranges of a batch of n reads: four chunks per worker, for an even load; with
        pairs, of an even size (a pair's mates stay together)."""
        size = max(1, -(-n // (self.workers * 4)))
        if self._context.get("pairing") is not None:
            size += size % 2
        return [(lo, min(lo + size, n)) for lo in range(0, n, size)]

    def place(self, seqs: Sequence[str], candidates: CandidateBatch) -> Done | Pending:
        """Start placing a batch; the returned object's `get()` gives the placements in order."""
        if not self.parallel or len(seqs) < MIN_PARALLEL_READS:
            return Done([place_read(self.refiner, s, c, r) for s, (c, r) in zip(seqs, candidates.tiers())])
        seqs = list(seqs)
        jobs = [(seqs[lo:hi], candidates.slice(lo, hi)) for lo, hi in self.chunks(len(seqs))]
        return Pending(self._get_pool().map_async(_place_chunk, jobs), self)

    def start(self, formatter, search: Callable[[list[str]], CandidateBatch] | None = None,
              pairing: PairContext | None = None) -> None:
        """Get ready for `submit`: workers format records with `formatter` and, when `search` is
        given, search batches themselves; with `pairing`, consecutive reads are the mates of a
        pair. A pool forked before is replaced (it lacks them)."""
        self.close()
        self._context = {"formatter": formatter, "search": search, "pairing": pairing}

    def submit(self, names: list[str], seqs: list[str], quals: list[str | None],
               candidates: CandidateBatch | None = None) -> Done | BatchJob:
        """Start formatting a batch (after `start`); `get()` -> (texts, reads mapped). Without
        candidates the workers search the batch first."""
        if not self.parallel or len(seqs) < MIN_PARALLEL_READS:
            if candidates is None:
                candidates = self._context["search"](seqs)
            text, mapped = _format(self.refiner, self._context, (names, seqs, quals, candidates))
            return Done(([text], mapped))
        if candidates is None and self._context.get("search") is None:
            raise ValueError("no candidates, and the workers cannot search")
        return BatchJob(self, names, seqs, quals, candidates)

    def _get_pool(self):
        if self._dead is not None:  # the pool's result thread may ask again after a worker died
            raise WorkerError(self._dead)
        if self._pool is None:
            _WORKER.clear()
            _WORKER.update(self._context, refiner=self.refiner, parent=os.getpid())  # inherited by the forked workers
            _STARTED.clear()
            self._pool = _Pool(self.workers)
            self._workers = _STARTED
        return self._pool

    def check_workers(self) -> None:
        """Raise WorkerError when a worker process has died (killed, or by the OOM killer): the
        pool would start another, but the dead one's batch would never come back."""
        for process in self._workers:
            if process.exitcode is not None:
                code = process.exitcode
                how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
                hint = " (out of memory?)" if code == -9 else ""
                self._dead = f"a worker process died ({how}{hint}); stopped, no output written"
                self._abandon()
                raise WorkerError(self._dead)

    def close(self) -> None:
        self._workers = []
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    def _abandon(self) -> None:
        """Stop a pool one of whose workers died: stop its worker handler from starting others,
        kill the live workers and drop the pool without `terminate()`, which can wait forever on a
        queue lock that the dead worker held (it died while reading a task or writing a result).
        The pool's threads are daemons; its finalizer, which would wait the same way at exit, is
        cancelled."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool._terminate.cancel()
            pool._state = pool._worker_handler._state = multiprocessing.pool.TERMINATE
            pool._change_notifier.put(None)  # wake the handler: it stops, starting no more workers
            pool._worker_handler.join(5)
        for process in self._workers:
            if getattr(process, "_popen", None) is not None and process.exitcode is None:
                process.kill()
                process.join(5)
        self._workers = []

    def terminate(self) -> None:
        """Stop the workers at once (after an error or a signal: queued work is dropped). Always by
        `_abandon`, never `Pool.terminate()`: besides a dead worker's lock, that can wait forever
        on its result thread, stuck reading a result that a worker was writing when it was stopped
        (seen once in about 6 runs of a SIGTERM mid-run, 2026-12-03: the run never ended). A batch
        still being searched then fails instead of starting a new pool from the old pool's result
        thread (it did, and that pool's exit handler waited forever on a lock its killed worker held)."""
        self._abandon()

    def __del__(self):
        if self._pool is not None:
            self._pool.terminate()
