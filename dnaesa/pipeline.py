"""The align path: read -> embed -> search -> refine -> MAPQ -> write.

`Aligner` is the public face, in the spirit of minimap2's mappy: `Aligner(ref).map(seq)` gives
alignment objects, `align_file(reads, out)` writes SAM/BAM in input order. Reads stream in batches;
each batch is embedded in one call (the reads, and their reverse complements unless the encoder is
strand-symmetric), searched in one call, its candidate windows picked with array operations, then
aligned read by read and formatted as SAM in worker processes; on CPU the workers embed and search
the batch too. Several batches are in flight while the main process parses and writes; batches are
written in input order.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dnaesa import runtime
from dnaesa.align.candidates import CandidateFinder
from dnaesa.align.refine import Refiner
from dnaesa.align.types import Alignment
from dnaesa.engine.local import MIN_PARALLEL_READS, LocalEngine
from dnaesa.io.fastx import read_batches_at
from dnaesa.io.sam import SamWriter
from dnaesa.model.base import Encoder, load_encoder
from dnaesa.options import resolve_options
from dnaesa.reference import Reference
from dnaesa.store.index_dir import Index, open_index

log = logging.getLogger("dnaesa")


@dataclass
class Summary:
    reads: int = 0
    mapped: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        pct = 100.0 * self.mapped / self.reads if self.reads else 0.0
        rate = self.reads / self.seconds if self.seconds > 0 else 0.0
        return f"[dnaesa] {self.reads} reads, {self.mapped} mapped ({pct:.2f}%), {self.seconds:.1f} s, {rate:.0f} reads/s"


class Aligner:
    """Maps reads to one reference.

    `ref` is a FASTA path (plain or gz) or a loaded `Reference`; `model` an encoder name (`kmer`,
    `default`) or a model directory; `index` the index directory (default: beside the reference).
    `preset` a named preset (`sr`, `divergent`: see `dnaesa.options.PRESETS`), applied before the
    other keywords, which are fields of `IndexOptions` and `MapOptions` (e.g. `top_k=16`).
    """

    def __init__(self, ref: str | Path | Reference, model: str | None = None, index: str | Path | None = None, *,
                 encoder: Encoder | None = None, device: str = "auto", threads: int | None = None,
                 rebuild: bool = False, progress: bool = False, preset: str = "sr", **options):
        self.index_options, self.options = resolve_options(preset, **options)
        self.device = runtime.resolve_device(device)
        threads = runtime.check_threads(threads)
        if threads:
            runtime.set_threads(threads)
        self.encoder = encoder or load_encoder(model, self.device)
        self.reference = ref if isinstance(ref, Reference) else Reference.load(ref)
        self.index: Index = open_index(self.reference, self.encoder, self.index_options, index, rebuild,
                                       progress=lambda total: _progress_bar("index", total, progress))
        self.index.store.to(self.device, self.options.search_backend, keep_faiss=False)
        self.refiner = Refiner(self.reference, self.options)
        self.engine = LocalEngine(self.refiner, threads or os.cpu_count() or 1)
        #: `align_file` lets the worker processes embed and search batches (they fork with the
        #: store in memory) on CPU; on CUDA the search stays in this process, on the device
        self.search_in_workers = self.device == "cpu"
        #: reads -> candidate windows (embed, search, prune): in this process or in the workers
        self.find_candidates = CandidateFinder(self.encoder, self.index.store, self.index.fragments,
                                               self.reference.lengths, self.options, self.index_options.fragment_len)

    def map(self, seq: str) -> list[Alignment]:
        """Placements of one read, primary first (empty when unmapped)."""
        return self.map_batch([seq.upper()])[0]

    def map_batch(self, seqs: Sequence[str]) -> list[list[Alignment]]:
        """Placements of each read of a batch, primary first; empty lists for unmapped reads."""
        return self.engine.place(seqs, self.find_candidates(seqs)).get()

    def align_file(self, reads: str, out: str | None = None, read_group: str | None = None,
                   command_line: str | None = None, progress: bool = False) -> Summary:
        """Align every read of `reads` (FASTQ/FASTA, plain/gz, '-' for stdin) to `out` (SAM/BAM/stdout).

        The main process parses reads and writes records; the workers search (on CPU), align and
        format them. Up to `workers + 2` batches are in flight, so the workers are never idle."""
        summary, t0 = Summary(), time.perf_counter()
        command_line = command_line or f"dnaesa align {reads} {self.reference.path}"
        bar = AlignProgress(reads, progress)
        engine, worker_search = self.engine, self.search_in_workers
        limit = engine.workers + 2 if engine.parallel else 0  # batches in flight besides the newest
        in_flight: deque = deque()
        with SamWriter(out, self.reference.contigs, command_line, read_group=read_group,
                       secondary=self.options.secondary, threads=engine.workers,
                       inputs=(reads, self.reference.path), reference=self.reference) as writer:
            engine.start(writer.formatter, self.find_candidates if worker_search else None)
            try:
                for batch, position in read_batches_at(reads, self.options.batch_size):
                    names, seqs, quals = [r.name for r in batch], [r.seq for r in batch], [r.qual for r in batch]
                    searched_there = worker_search and engine.parallel and len(batch) >= MIN_PARALLEL_READS
                    job = engine.submit(names, seqs, quals, None if searched_there else self.find_candidates(seqs))
                    in_flight.append((len(batch), position, job))
                    while len(in_flight) > limit:
                        self._write_batch(*in_flight.popleft(), writer, summary, bar)
                while in_flight:
                    self._write_batch(*in_flight.popleft(), writer, summary, bar)
            except BaseException:
                engine.terminate()
                bar.close()
                raise
        bar.close()
        engine.close()
        summary.seconds = time.perf_counter() - t0
        return summary

    @staticmethod
    def _write_batch(n_reads: int, position: int | None, job, writer: SamWriter, summary: Summary,
                     bar: AlignProgress) -> None:
        texts, mapped = job.get()
        for text in texts:
            writer.write_text(text)
        summary.reads += n_reads
        summary.mapped += mapped
        bar.update(n_reads, position)


class AlignProgress:
    """The alignment progress bar on stderr (when enabled and stderr is a terminal): reads
    written, and, for a reads file, the share of its bytes read (compressed bytes for gzip), which
    gives tqdm's percentage and ETA."""

    def __init__(self, reads: str, enabled: bool):
        self._bar, self._done, self._reads = None, 0, 0
        if not enabled or not sys.stderr.isatty():
            return
        from tqdm import tqdm

        try:
            total = os.path.getsize(reads) if reads != "-" and os.path.isfile(reads) else None
        except OSError:
            total = None
        self._bar = tqdm(total=total, desc="align", unit="B", unit_scale=True, file=sys.stderr,
                         **_bar_size(), bar_format=None if total else "{desc}: {postfix} [{elapsed}]")

    def update(self, n_reads: int, position: int | None) -> None:
        if self._bar is None:
            return
        self._reads += n_reads
        self._bar.set_postfix_str(f"{self._reads:,} reads", refresh=False)
        if position is not None and self._bar.total:
            self._bar.update(position - self._done)
            self._done = position
        else:
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _bar_size() -> dict:
    """tqdm's ncols and nrows for stderr's terminal, with a default where it reports 0 (a bar in
    a terminal of 0 columns or 0 rows is not drawn at all)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return {}
    return {"ncols": size.columns or 80, "nrows": size.lines or 24}


def set_threads(threads: int) -> None:
    """Kept for older imports: `dnaesa.runtime.set_threads`."""
    runtime.set_threads(threads)


def _progress_bar(what: str, total: int | None, enabled: bool):
    """A tqdm bar on stderr (only when enabled and stderr is a terminal) -> an `update(n)` callable."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=what, unit=" frag" if what == "index" else " reads", file=sys.stderr,
               **_bar_size())
    return bar.update
