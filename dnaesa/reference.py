"""The reference: contigs in memory, their checksum, and the fragment windows cut from them.

A fragment is (contig index, start, end), 0-based half-open; fragments of `fragment_len` at
`stride` cover every contig, the last one ending at the contig's end, so every stretch of up to
`fragment_len - stride` bases lies wholly inside at least one fragment.

A reference may hold several genomes (`Reference.combine`): their contigs one after the other,
each named `GENOME:contig`, so that SAM's RNAME says which genome a read is placed on. One genome
keeps its contigs' own names. A genome is named by its file without the FASTA endings
(`ecoli.fa.gz` -> `ecoli`) unless named otherwise.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from dnaesa.dna import reverse_complement  # noqa: F401  (re-exported: older imports)
from dnaesa.errors import InputError, OptionsError
from dnaesa.io.fastx import read_reference

#: file endings dropped from a FASTA file's name to name its genome
FASTA_ENDINGS = (".gz", ".bgz", ".fa", ".fasta", ".fna", ".fas", ".ffn", ".seq")
#: a genome's name: it prefixes its contigs' names in SAM (`GENOME:contig`), so no ':' and no spaces
GENOME_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+~-]*")


def genome_name(path: str | Path) -> str:
    """`ref/ecoli_k12.fa.gz` -> `ecoli_k12`."""
    name = Path(path).name
    while name.lower().endswith(FASTA_ENDINGS) and "." in name[1:]:
        name = name[: name.rindex(".")]
    return name


def check_genome_name(name: str) -> str:
    """`name`, or OptionsError when it cannot prefix contig names."""
    if not GENOME_NAME.fullmatch(name):
        raise OptionsError(f"genome name {name!r}: use letters, digits and _ . + ~ - (not starting with . + ~ -); "
                           "give one with --genome NAME")
    return name


def fragment_windows(lengths: Sequence[int], fragment_len: int, stride: int) -> np.ndarray:
    """(n, 3) int64 (contig index, start, end) windows; the last window of a contig ends at its end."""
    rows = []
    for ci, length in enumerate(lengths):
        starts = list(range(0, max(length - fragment_len, 0) + 1, stride))
        if starts[-1] + fragment_len < length:
            starts.append(length - fragment_len)
        rows.extend((ci, st, min(st + fragment_len, length)) for st in starts)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def fragment_count(lengths: Sequence[int], fragment_len: int, stride: int) -> int:
    """len(fragment_windows(lengths, fragment_len, stride)), without making them."""
    return sum(max(0, -(-(length - fragment_len) // stride)) + 1 for length in lengths)


def genomes_checksum(genomes: Sequence[tuple[str, str]]) -> str:
    """The checksum of a reference of several genomes, from their (name, sequence checksum)."""
    h = hashlib.sha256(b"genomes\0")
    for name, checksum in genomes:
        h.update(f"{name}\0{checksum}\0".encode())
    return h.hexdigest()


@dataclass
class Genome:
    """One genome of a reference: its name, FASTA file (absolute), sequence checksum and how many
    contigs it has (they follow the previous genome's)."""

    name: str
    path: str
    checksum: str
    contigs: int


@dataclass
class Reference:
    """Contig names, sequences (uppercase, non-ACGT as N) and a checksum of their content.
    `genomes`: set by `combine` (empty for a reference loaded from one FASTA: one genome)."""

    path: str
    names: list[str]
    seqs: list[str]
    genomes: list[Genome] = field(default_factory=list)
    _checksum: str | None = field(default=None, repr=False, compare=False)
    #: read from an index's packed bases (`store.genomes.packed_reference`), not from the FASTA
    from_index: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path) -> "Reference":
        names, seqs = [], []
        for name, seq in read_reference(str(path)):
            names.append(name)
            seqs.append(seq)
        if not names:
            raise InputError(str(path), "no contigs in the reference")
        return cls(str(path), names, seqs)

    @classmethod
    def combine(cls, parts: Sequence[tuple[str, "Reference"]], path: str | Path | None = None) -> "Reference":
        """The genomes `parts` ((name, reference of one genome)) as one reference, contigs named
        `NAME:contig` (one genome: its own names); `path` names it (default: the one genome's file)."""
        if not parts:
            raise ValueError("no genomes to combine")
        names = [check_genome_name(name) for name, _ in parts]
        if len(set(names)) < len(names):
            raise OptionsError(f"two genomes are named {next(n for n in names if names.count(n) > 1)!r}; "
                               "name them apart with --genome NAME")
        one = len(parts) == 1
        contigs = [c if one else f"{name}:{c}" for name, ref in parts for c in ref.names]
        genomes = [Genome(name, os.path.abspath(ref.path), ref.checksum(), len(ref.names)) for name, ref in parts]
        return cls(str(path if path is not None else parts[0][1].path), contigs,
                   [s for _, ref in parts for s in ref.seqs], genomes)

    def genome_table(self) -> list[Genome]:
        """Its genomes: those it was combined from, or itself named by its file."""
        return self.genomes or [Genome(genome_name(self.path), os.path.abspath(self.path), self.checksum(),
                                       len(self.names))]

    @property
    def lengths(self) -> list[int]:
        packed = getattr(self.seqs, "lengths", None)  # `store.sequence_file.PackedSequence`
        return list(packed) if packed is not None else [len(s) for s in self.seqs]

    @property
    def contigs(self) -> list[tuple[str, int]]:
        return list(zip(self.names, self.lengths))

    def checksum(self) -> str:
        """SHA-256 of names and sequences, independent of line wrapping and compression (several
        genomes: of their names and checksums, `genomes_checksum`); computed once."""
        if self._checksum is None:
            if len(self.genomes) > 1:
                self._checksum = genomes_checksum([(g.name, g.checksum) for g in self.genomes])
            elif self.genomes:
                self._checksum = self.genomes[0].checksum
            else:
                h = hashlib.sha256()
                for name, seq in zip(self.names, self.seqs):
                    h.update(name.encode() + b"\0" + seq.encode() + b"\0")
                self._checksum = h.hexdigest()
        return self._checksum

    def fragments(self, fragment_len: int, stride: int) -> np.ndarray:
        """(n, 3) int64 array of (contig index, start, end) windows covering every contig."""
        return fragment_windows(self.lengths, fragment_len, stride)

    def fetch(self, contig_index: int, start: int, end: int) -> str:
        if not isinstance(self.seqs, list):  # packed bases (`store.sequence_file.PackedSequence`)
            return self.seqs.fetch(contig_index, start, end)
        seq = self.seqs[contig_index]
        return seq[max(start, 0) : min(end, len(seq))]
