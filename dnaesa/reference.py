"""The reference: contigs in memory, their checksum, and the fragment windows cut from them.

A fragment is (contig index, start, end), 0-based half-open; fragments of `fragment_len` at
`stride` cover every contig, the last one ending at the contig's end, so every stretch of up to
`fragment_len - stride` bases lies wholly inside at least one fragment.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dnaesa.dna import reverse_complement  # noqa: F401  (re-exported: older imports)
from dnaesa.errors import InputError
from dnaesa.io.fastx import read_reference


def fragment_windows(lengths: Sequence[int], fragment_len: int, stride: int) -> np.ndarray:
    """(n, 3) int64 (contig index, start, end) windows; the last window of a contig ends at its end."""
    rows = []
    for ci, length in enumerate(lengths):
        starts = list(range(0, max(length - fragment_len, 0) + 1, stride))
        if starts[-1] + fragment_len < length:
            starts.append(length - fragment_len)
        rows.extend((ci, st, min(st + fragment_len, length)) for st in starts)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


@dataclass
class Reference:
    """Contig names, sequences (uppercase, non-ACGT as N) and a checksum of their content."""

    path: str
    names: list[str]
    seqs: list[str]

    @classmethod
    def load(cls, path: str | Path) -> "Reference":
        names, seqs = [], []
        for name, seq in read_reference(str(path)):
            names.append(name)
            seqs.append(seq)
        if not names:
            raise InputError(str(path), "no contigs in the reference")
        return cls(str(path), names, seqs)

    @property
    def lengths(self) -> list[int]:
        return [len(s) for s in self.seqs]

    @property
    def contigs(self) -> list[tuple[str, int]]:
        return list(zip(self.names, self.lengths))

    def checksum(self) -> str:
        """SHA-256 of names and sequences, independent of line wrapping and compression."""
        h = hashlib.sha256()
        for name, seq in zip(self.names, self.seqs):
            h.update(name.encode() + b"\0" + seq.encode() + b"\0")
        return h.hexdigest()

    def fragments(self, fragment_len: int, stride: int) -> np.ndarray:
        """(n, 3) int64 array of (contig index, start, end) windows covering every contig."""
        return fragment_windows(self.lengths, fragment_len, stride)

    def fetch(self, contig_index: int, start: int, end: int) -> str:
        seq = self.seqs[contig_index]
        return seq[max(start, 0) : min(end, len(seq))]
