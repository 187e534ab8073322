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

import dataclasses
import itertools
import logging
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from dnaesa import compiled, runtime
from dnaesa.align.candidates import CandidateFinder
from dnaesa.align.pairing import InsertSize, PairChoice, estimate_insert_size, parse_insert_size
from dnaesa.align.place import place_pair
from dnaesa.align.refine import Refiner
from dnaesa.align.types import Alignment
from dnaesa.engine.local import MIN_PARALLEL_READS, LocalEngine, PairContext
from dnaesa.engine.ray import KILL_HOOK
from dnaesa.errors import OptionsError
from dnaesa.io.fastx import read_batches_at, read_pair_batches_at
from dnaesa.io.sam import SamWriter
from dnaesa.model.base import Encoder, load_encoder
from dnaesa.options import IndexOptions, resolve_options
from dnaesa.reference import Reference, genome_name
from dnaesa.store.genomes import add_genomes, load_reference
from dnaesa.store.index_dir import Index, open_index

log = logging.getLogger("dnaesa")
#: flat stores of fewer fragments (about 2 Mb of reference) are searched by FAISS on CPU: the
#: bfloat16 torch product is faster per batch, but importing torch costs more than it saves there
SMALL_STORE = 2_000
INDEX_OPTION_NAMES = {f.name for f in dataclasses.fields(IndexOptions)}
#: pairs whose placements estimate the insert size when it is not given (BWA-MEM: each batch)
INSERT_SAMPLE = 2000


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

    `ref` is a FASTA path (plain or gz), an index folder (all the genomes it holds), several FASTA
    paths (genomes in one index, named by `genomes` or by their files; `index` needed), or a loaded
    `Reference`; one FASTA of an index of several genomes brings the others (`dnaesa.store.genomes`).
    `model` an encoder name (`kmer`, `default`) or a model directory; `index` the index directory
    (default: beside the reference). `preset` a named preset (`sr`, `divergent`: see
    `dnaesa.options.PRESETS`), applied before the other keywords, which are fields of
    `IndexOptions` and `MapOptions` (e.g. `top_k=16`).
    """

    def __init__(self, ref: str | Path | Sequence[str | Path] | Reference, model: str | None = None,
                 index: str | Path | None = None, *, encoder: Encoder | None = None, device: str = "auto",
                 threads: int | None = None, rebuild: bool = False, progress: bool = False, preset: str = "sr",
                 engine: str = "local", ray_address: str | None = None, ray_workers: int | None = None,
                 ray_gpus_per_worker: float = 0.0, genomes: Sequence[str] | None = None, **options):
        if engine == "ray" and (encoder is not None or isinstance(ref, Reference)):
            raise OptionsError("the Ray engine needs a reference path and an encoder name or folder, which its "
                               "actors load themselves")
        self._ray = _ray_engine(engine, threads, ray_address, ray_workers, ray_gpus_per_worker)
        self.index_options, self.options = resolve_options(preset, **options)
        self._model_spec = model
        self.device = runtime.resolve_device(device)
        threads = runtime.check_threads(threads)
        if threads:
            runtime.set_threads(threads)
        self.encoder = encoder or load_encoder(model, self.device)
        if isinstance(ref, Reference):
            self.reference = ref
        else:
            self.reference = load_reference(ref, index, genomes, rebuild)
            if index is None and isinstance(ref, (str, Path)) and os.path.isdir(ref):
                index = ref  # an index folder as the reference
        given = {k for k, v in options.items() if v is not None and k in INDEX_OPTION_NAMES}
        self.index: Index = open_index(self.reference, self.encoder, self.index_options, index, rebuild,
                                       progress=lambda total: progress_bar("index", total, progress),
                                       options_given=bool(given), workers=threads or os.cpu_count() or 1,
                                       engine=self._ray)
        self.index_options = IndexOptions(**{k: v for k, v in self.index.manifest["options"].items()
                                             if k in INDEX_OPTION_NAMES})
        backend = self.options.search_backend
        if backend == "auto" and self.device == "cpu" and self.index.store.kind == "flat" and \
                (self.index.store.ntotal < SMALL_STORE or self.index.store.reranks()):
            # a reference of a few Mb: no torch import (a second or more); a count sketch's integer
            # vectors: the exact integer scan, with the seeds, also where bfloat16 products are fast
            # (measured on an AVX512-BF16 EPYC, 100,000 reads, 2 threads: E. coli 11.3-12.0 s against
            # 23.6-24.0 by bfloat16, human 10 Mb 18.9 s against 40.7, fewer errors)
            backend = "faiss"
        if self.index.coarse is not None:  # tiered: the coarse tier searches, the exact one scores its picks
            self.index.coarse.to(self.device)
            self.index.store.open_shards()
        elif not (backend == "faiss" and self.device == "cpu" and self.index.store.kind == "flat"):
            self.index.store.to(self.device, backend, keep_faiss=False)  # (a flat store opens so: keep its integer scan)
        if threads:
            runtime.set_threads(threads)  # again: torch may have been imported by the store
        self.refiner = Refiner(self.reference, self.options)
        self.engine = LocalEngine(self.refiner, threads or os.cpu_count() or 1)
        #: `align_file` lets the worker processes embed and search batches (they fork with the
        #: store in memory) on CPU; on CUDA the search stays in this process, on the device
        self.search_in_workers = self.device == "cpu"
        #: reads -> candidate windows (embed, search, prune): in this process or in the workers
        coarse = (self.index.coarse_encoder, self.index.coarse) if self.index.coarse is not None else None
        exact = None
        if self.index_options.index_kind == "lean":  # the exact tier from the reference's sequence
            from dnaesa.store.sequence_tier import SequenceTier

            exact = SequenceTier(self.encoder, self.reference, self.index.fragments)
        seeds = self.index.seeds if exact is not None or self.index.store.reranks() else None
        self.find_candidates = CandidateFinder(self.encoder, self.index.store, self.index.fragments,
                                               self.reference.lengths, self.options, self.index_options.fragment_len,
                                               coarse=coarse, exact=exact, seeds=seeds)

    def map(self, seq: str) -> list[Alignment]:
        """Placements of one read, primary first (empty when unmapped)."""
        return self.map_batch([seq.upper()])[0]

    def map_batch(self, seqs: Sequence[str]) -> list[list[Alignment]]:
        """Placements of each read of a batch, primary first; empty lists for unmapped reads."""
        return self.engine.place(seqs, self.find_candidates(seqs)).get()

    def map_pair(self, seq1: str, seq2: str, insert_size: InsertSize | str | None = None) -> PairChoice:
        """Placements of a pair's mates, chosen jointly (`insert_size`: an `InsertSize` or "MEAN,SD";
        None: no insert-size prior, so no proper pair and no mate rescue)."""
        insert = parse_insert_size(insert_size) if isinstance(insert_size, str) else insert_size
        seqs = [seq1.upper(), seq2.upper()]
        tiers = self.find_candidates(seqs).tiers()
        return place_pair(self.refiner, (seqs[0], seqs[1]), tiers, insert, self.reference.lengths)

    def align_file(self, reads: str, out: str | None = None, read_group: str | None = None,
                   command_line: str | None = None, progress: bool = False, mates: str | None = None,
                   interleaved: bool = False, insert_size: InsertSize | str | None = None,
                   split_as_secondary: bool = False, hard_clip: bool = False) -> Summary:
        """Align every read of `reads` (FASTQ/FASTA, plain/gz, '-' for stdin) to `out` (SAM/BAM/stdout).

        Paired-end: `mates` is the file of mate 2, or `interleaved` says `reads` alternates mate 1
        and mate 2. `insert_size` ("MEAN,SD" or an `InsertSize`) is otherwise estimated from the
        first `INSERT_SAMPLE` pairs. `split_as_secondary` flags the other parts of a split read 256
        instead of 2048 (bwa's -M, for Picard-era tools); `hard_clip` hard-clips them (bwa's default; soft as
        bwa -Y otherwise). The main process parses reads and writes records; the workers
        search (on CPU), align and format them. Up to `workers + 2` batches are in flight, so the
        workers are never idle."""
        paired = mates is not None or interleaved
        if mates is not None and interleaved:
            raise OptionsError("give either a mate file or --interleaved, not both")
        t0 = time.perf_counter()
        command_line = command_line or f"dnaesa align {reads} {self.reference.path}"
        if paired:
            batches = read_pair_batches_at(reads, mates, self.options.batch_size)
            insert = parse_insert_size(insert_size) if isinstance(insert_size, str) else insert_size
            if insert is None:
                batches, insert = self._estimate_insert_size(batches)
            pairing = PairContext(insert, tuple(self.reference.lengths))
        else:
            batches, pairing = read_batches_at(reads, self.options.batch_size), None
        if self._ray is not None:
            spec = {"ref": str(self.reference.path), "model": self._model_spec, "index": str(self.index.directory),
                    "device": "cuda" if self._ray.gpus else self.device, "preset": "sr",  # GPU actors search on CUDA
                    "options": {**dataclasses.asdict(self.index_options), **dataclasses.asdict(self.options)}}
            if os.environ.get(KILL_HOOK):  # tests: an actor dies while aligning this batch, once
                spec["kill"] = (int(os.environ[KILL_HOOK]), str(self.index.directory) + ".killed")
            bar = AlignProgress(reads, progress)
            try:
                return self._ray.align_file(self, spec, batches, pairing, (reads, mates), out, read_group,
                                            command_line, bar, split_as_secondary, hard_clip)
            finally:
                bar.close()
        summary = Summary()
        bar = AlignProgress(reads, progress)
        engine, worker_search = self.engine, self.search_in_workers
        limit = engine.workers + 2 if engine.parallel else 0  # batches in flight besides the newest
        in_flight: deque = deque()
        inputs = (reads, mates, self.reference.path, *(g.path for g in self.reference.genomes))
        with SamWriter(out, self.reference.contigs, command_line, read_group=read_group,
                       secondary=0 if paired else self.options.secondary, threads=engine.workers,
                       inputs=inputs, reference=self.reference, split_as_secondary=split_as_secondary,
                       hard_clip=hard_clip) as writer:
            # before the workers fork, so that they share them (and a missing kernel is one warning
            # line of this process, not one a worker)
            compiled.load_all()
            self.index.store.prepare_search()
            engine.start(writer.formatter, self.find_candidates if worker_search else None, pairing)
            try:
                for batch, position in batches:
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

    def _estimate_insert_size(self, batches: Iterator) -> tuple[Iterator, InsertSize | None]:
        """The insert size from the first `INSERT_SAMPLE` pairs (read ahead, then given back with
        the rest of `batches`), so that it does not depend on the batch size."""
        ahead, reads = [], []
        for batch in batches:
            ahead.append(batch)
            reads += batch[0]
            if len(reads) >= 2 * INSERT_SAMPLE:
                break
        sample = reads[: 2 * INSERT_SAMPLE]
        seqs = [r.seq for r in sample]
        placed = []
        for lo in range(0, len(seqs), self.options.batch_size):
            placed += self.map_batch(seqs[lo : lo + self.options.batch_size])
        insert = estimate_insert_size(list(zip(placed[0::2], placed[1::2])))
        if insert is None:
            log.warning("[dnaesa] too few confidently placed pairs among the first %d to estimate the insert "
                        "size: no pair is marked proper and no mate is rescued; give it with -I MEAN,SD",
                        len(sample) // 2)
        else:
            log.info("[dnaesa] %s", insert.describe())
        return itertools.chain(ahead, batches), insert

    @staticmethod
    def _write_batch(n_reads: int, position: int | None, job, writer: SamWriter, summary: Summary,
                     bar: AlignProgress) -> None:
        texts, mapped = job.get()
        for text in texts:
            writer.write_text(text)
        summary.reads += n_reads
        summary.mapped += mapped
        bar.update(n_reads, position)


def add_to_index(index: str | Path, fastas: Sequence[str | Path], genomes: Sequence[str] | None = None,
                 model: str | None = None, device: str = "auto", threads: int | None = None, progress: bool = False,
                 engine: str = "local", ray_address: str | None = None, ray_workers: int | None = None,
                 ray_gpus_per_worker: float = 0.0, **index_options) -> Index:
    """`dnaesa index FASTA... --index DIR --add`: append genomes (named by `genomes` or by their
    files) to the index in `index`, embedding only their fragments with `model` (the encoder the
    index was built with). Index options given (`IndexOptions` fields) must be the index's own."""
    if genomes and len(genomes) != len(fastas):
        raise OptionsError(f"{len(genomes)} genome names (--genome) for {len(fastas)} FASTA files: give one for each")
    device = runtime.resolve_device(device)
    threads = runtime.check_threads(threads)
    if threads:
        runtime.set_threads(threads)
    names = genomes or [genome_name(path) for path in fastas]
    ray = _ray_engine(engine, threads, ray_address, ray_workers, ray_gpus_per_worker)  # encodes the new chunks
    return add_genomes(index, list(zip(names, fastas)), load_encoder(model, device), index_options,
                       progress=lambda total: progress_bar("index", total, progress), workers=threads or os.cpu_count() or 1,
                       engine=ray)


def _ray_engine(engine: str, threads: int | None, address: str | None, workers: int | None, gpus: float):
    """The `RayEngine` of `engine="ray"` (actors: `workers`, else `threads`, else all cores), None for
    the local engine; another name is an OptionsError."""
    if engine not in ("local", "ray"):
        raise OptionsError(f"unknown engine {engine!r}: use local or ray")
    if engine == "local":
        return None
    from dnaesa.engine.ray import RayEngine

    return RayEngine(workers or threads or os.cpu_count() or 1, address, 1, gpus)


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


def progress_bar(what: str, total: int | None, enabled: bool):
    """A tqdm bar on stderr (only when enabled and stderr is a terminal) -> an `update(n)` callable."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=what, unit=" frag" if what == "index" else " reads", file=sys.stderr,
               **_bar_size())
    return bar.update
