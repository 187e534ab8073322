"""The align path: read -> embed -> search -> refine -> MAPQ -> write.

`Aligner` is the public face, in the spirit of minimap2's mappy: `Aligner(ref).map(seq)` gives
alignment objects, `align_file(reads, out)` writes SAM/BAM in input order. Reads stream in batches;
each batch is embedded in one call (the reads, and their reverse complements unless the encoder is
strand-symmetric), searched in one call, then aligned read by read in worker
processes while the next batch is embedded and searched; batches are written in input order.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np

from dnaesa.align.refine import Candidate, Refiner
from dnaesa.align.types import Alignment
from dnaesa.engine.local import LocalEngine
from dnaesa.io.fastx import Read, read_batches
from dnaesa.io.sam import SamWriter
from dnaesa.model.base import Encoder, load_encoder, resolve_device
from dnaesa.options import IndexOptions, MapOptions
from dnaesa.reference import Reference, reverse_complement
from dnaesa.store.index_dir import Index, open_index

log = logging.getLogger("dnaesa")
#: bases added on each side of a candidate fragment beyond the read's length
WINDOW_SLACK = 16


@dataclass
class Summary:
    reads: int = 0
    mapped: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        pct = 100.0 * self.mapped / self.reads if self.reads else 0.0
        rate = self.reads / self.seconds if self.seconds > 0 else 0.0
        return f"[dnaesa] {self.reads} reads, {self.mapped} mapped ({pct:.2f}%), {self.seconds:.1f} s, {rate:.0f} reads/s"


def split_options(options: dict) -> tuple[IndexOptions, MapOptions]:
    """Keyword options -> (IndexOptions, MapOptions); an unknown name is a TypeError."""
    index_names = {f.name for f in fields(IndexOptions)}
    map_names = {f.name for f in fields(MapOptions)}
    unknown = set(options) - index_names - map_names
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return (IndexOptions(**{k: v for k, v in options.items() if k in index_names}),
            MapOptions(**{k: v for k, v in options.items() if k in map_names}))


class Aligner:
    """Maps reads to one reference.

    `ref` is a FASTA path (plain or gz) or a loaded `Reference`; `model` an encoder name (`kmer`,
    `default`) or a model directory; `index` the index directory (default: beside the reference).
    Other keywords are fields of `IndexOptions` and `MapOptions` (e.g. `top_k=16`).
    """

    def __init__(self, ref: str | Path | Reference, model: str | None = None, index: str | Path | None = None, *,
                 encoder: Encoder | None = None, device: str = "auto", threads: int | None = None,
                 rebuild: bool = False, progress: bool = False, **options):
        self.index_options, self.options = split_options(options)
        self.device = resolve_device(device)
        if threads:
            set_threads(threads)
        self.encoder = encoder or load_encoder(model, self.device)
        self.reference = ref if isinstance(ref, Reference) else Reference.load(ref)
        self.index: Index = open_index(self.reference, self.encoder, self.index_options, index, rebuild,
                                       progress=lambda total: _progress_bar("index", total, progress))
        self.index.store.to(self.device, self.options.search_backend, keep_faiss=False)
        self.refiner = Refiner(self.reference, self.options)
        self.engine = LocalEngine(self.refiner, threads or os.cpu_count() or 1)
        self._lengths = self.reference.lengths

    def map(self, seq: str) -> list[Alignment]:
        """Placements of one read, primary first (empty when unmapped)."""
        return self.map_batch([seq.upper()])[0]

    def map_batch(self, seqs: Sequence[str]) -> list[list[Alignment]]:
        """Placements of each read of a batch, primary first; empty lists for unmapped reads."""
        return self.engine.place(seqs, self._batch_candidates(seqs)).get()

    def _batch_candidates(self, seqs: Sequence[str]) -> list[list[Candidate]]:
        """Embed and search a batch: the candidate windows of each read."""
        if not seqs:
            return []
        o = self.options
        n = len(seqs)
        symmetric = self.encoder.strand_symmetric
        queries = list(seqs) if symmetric else list(seqs) + [reverse_complement(s) for s in seqs]
        scores, ids = self.index.store.search(self.encoder.encode(queries), o.top_k)
        if symmetric:  # one search serves both strands: candidates carry no strand
            strands = np.full(ids.shape, -1, dtype=np.int8)
        else:
            scores, ids = np.hstack([scores[:n], scores[n:]]), np.hstack([ids[:n], ids[n:]])
            strands = np.repeat(np.array([[0, 1]], dtype=np.int8), o.top_k, axis=1)
        return [self._candidates(scores[i], ids[i], strands[i], len(seq)) for i, seq in enumerate(seqs)]

    def _candidates(self, scores: np.ndarray, ids: np.ndarray, strands: np.ndarray, read_len: int) -> list[Candidate]:
        """Windows around the best-scoring fragments, pruned against the best score.

        `strands` holds 0 (forward), 1 (reverse) or -1 (either: align both orientations)."""
        o = self.options
        ok = ids >= 0
        if not ok.any():
            return []
        best = scores[ok].max()
        if best <= 0:
            return []
        keep = np.flatnonzero(ok & (scores >= best * o.candidate_ratio))
        keep = keep[np.argsort(-scores[keep], kind="stable")][: o.max_candidates]
        pad = read_len + WINDOW_SLACK
        lengths = self._lengths
        out = []
        for j in keep:
            ci, st, en = self.index.fragments[ids[j]]
            orientation = None if strands[j] < 0 else bool(strands[j])
            out.append(Candidate(int(ci), max(int(st) - pad, 0), min(int(en) + pad, lengths[ci]), orientation))
        return out

    def align_file(self, reads: str, out: str | None = None, read_group: str | None = None,
                   command_line: str | None = None, progress: bool = False) -> Summary:
        """Align every read of `reads` (FASTQ/FASTA, plain/gz, '-' for stdin) to `out` (SAM/BAM/stdout)."""
        summary, t0 = Summary(), time.perf_counter()
        command_line = command_line or f"dnaesa align {reads} {self.reference.path}"
        bar = _progress_bar("align", None, progress)
        pending = None  # the batch whose alignment runs in the workers while the next one is searched
        with SamWriter(out, self.reference.contigs, command_line, read_group=read_group) as writer:
            for batch in read_batches(reads, self.options.batch_size):
                seqs = [r.seq for r in batch]
                job = self.engine.place(seqs, self._batch_candidates(seqs))
                if pending:
                    self._write_batch(*pending, writer, summary, bar)
                pending = (batch, job)
            if pending:
                self._write_batch(*pending, writer, summary, bar)
        self.engine.close()
        summary.seconds = time.perf_counter() - t0
        return summary

    def _write_batch(self, batch: list[Read], job, writer: SamWriter, summary: Summary, bar) -> None:
        for read, alignments in zip(batch, job.get()):
            primary = alignments[0] if alignments else None
            writer.write(read, primary, alignments[1 : 1 + self.options.secondary])
            summary.reads += 1
            summary.mapped += primary is not None
        if bar:
            bar(len(batch))


def set_threads(threads: int) -> None:
    """Use `threads` CPU threads in torch and FAISS."""
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def _progress_bar(what: str, total: int | None, enabled: bool):
    """A tqdm bar on stderr (only when enabled and stderr is a terminal) -> an `update(n)` callable."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=what, unit=" frag" if what == "index" else " reads", file=sys.stderr)
    return bar.update
