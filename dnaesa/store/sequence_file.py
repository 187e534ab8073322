"""The reference's bases kept in the index folder, 2 bits a base, memory-mapped.

Reading a 3.1 Gb FASTA and checksumming it took about 18 of the 23.5 CPU seconds that a run at
that scale spent before its first read (benchmarks/RESULTS.md, "The reference from the index"),
and its 3.1 GB of text stayed in memory. So, as bwa keeps its `.pac`, an index keeps the bases of
the reference it was built for: `bases.<checksum>.npy` (4 bases a byte, A C G T as 0-3, the first
base in the lowest bits) and `nruns.<checksum>.npy` (int64 (m, 2): [start, end) of each run of N,
in coordinates along all contigs one after the other). `Reference.fetch` then decodes a window (11
us for 1,250 bases at 3.1 Gb, with its 101,052 runs of N), and the operating system shares the pages between worker processes. A
reference of up to 64 Mb is decoded to text once loaded (`DECODE_UP_TO`), as the FASTA would
have given it.

The manifest's `sequence` entry names the two files with their SHA-256, the reference checksum
they were made for, and the size and modification time of each genome's FASTA file when they
were made or last checked. A run given those very FASTA files (same path, size and time to the
nanosecond) or the index folder takes the reference from here, after checking both files against
their checksums (0.5 s at 3.1 Gb); any other FASTA is read and checksummed as before, and a match
records its size and time anew. A FASTA changed in place with its size and time forged is not
noticed: the index's own bases are then used, consistently with its vectors.

The files are written when an index is built, and added in place to an index made before them
the next time it is opened (best effort: a read-only or full folder is left as it is).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("dnaesa")

#: references of at most this many bases are decoded to text once loaded (E. coli: 20 ms): a
#: window of text is cut in well under a microsecond, a packed one decoded in 5-11 (the runs of N)
DECODE_UP_TO = 64_000_000
#: bases packed at a time while writing (a multiple of 4)
PACK_CHUNK = 1 << 24
#: ASCII base -> 2-bit code (N and anything else -> 0; Ns are kept as runs)
_CODE = np.zeros(256, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _i
#: packed byte -> its 4 bases as ASCII, lowest bits first
_DECODE = np.array([[b"ACGT"[(byte >> (2 * j)) & 3] for j in range(4)] for byte in range(256)], dtype=np.uint8)
_N = ord("N")


class PackedSequence(Sequence):
    """Contig sequences read from packed bases: `seqs[i]` is contig i as a str (decoded whole: for
    small contigs and tests), `fetch(i, start, end)` a window of it, `lengths` their lengths."""

    def __init__(self, packed: np.ndarray, n_runs: np.ndarray, lengths: list[int]):
        self.packed, self.lengths = np.asarray(packed), list(lengths)  # a plain view: slicing a memmap costs ~4 us more
        self.offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        self.n_starts = np.ascontiguousarray(n_runs[:, 0]) if len(n_runs) else np.zeros(0, np.int64)
        self.n_ends = np.ascontiguousarray(n_runs[:, 1]) if len(n_runs) else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, ci):
        if isinstance(ci, slice):
            return [self[i] for i in range(*ci.indices(len(self)))]
        if ci < 0:
            ci += len(self)
        if not 0 <= ci < len(self):
            raise IndexError(ci)
        return self.fetch(ci, 0, self.lengths[ci])

    def fetch(self, ci: int, start: int, end: int) -> str:
        length = self.lengths[ci]
        start, end = max(start, 0), min(end, length)
        if end <= start:
            return ""
        base = int(self.offsets[ci])
        return self.ascii(base + start, base + end).tobytes().decode("ascii")

    def ascii(self, lo: int, hi: int) -> np.ndarray:
        """uint8 ASCII bases [lo, hi) of the contigs laid end to end (a new, writable array)."""
        out = _DECODE[self.packed[lo >> 2 : (hi + 3) >> 2]].reshape(-1)[lo & 3 : (lo & 3) + hi - lo]
        i = int(np.searchsorted(self.n_ends, lo, side="right"))
        while i < len(self.n_starts) and self.n_starts[i] < hi:
            out[max(int(self.n_starts[i]), lo) - lo : min(int(self.n_ends[i]), hi) - lo] = _N
            i += 1
        return out


def pack(seqs: Sequence[str], bases_path: Path, runs_path: Path) -> None:
    """Write the contigs `seqs` (uppercase ACGT and N) packed to `bases_path` and their runs of N
    to `runs_path` (both .npy), streaming: memory holds one chunk of bases. Plain writes, not a
    memory map: a full disk is then an OSError, not a SIGBUS that kills the run."""
    total = sum(len(s) for s in seqs)
    runs, carry, offset = [], np.zeros(0, np.uint8), 0
    with open(bases_path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": ((total + 3) // 4,)})
        for seq in seqs:
            for lo in range(0, len(seq), PACK_CHUNK):
                chunk = np.frombuffer(seq[lo : lo + PACK_CHUNK].encode("ascii"), dtype=np.uint8)
                is_n = np.concatenate(([False], chunk == _N, [False]))
                runs.append(np.flatnonzero(is_n[1:] != is_n[:-1]).reshape(-1, 2) + offset + lo)
                codes = np.concatenate((carry, _CODE[chunk]))
                whole = len(codes) & ~3
                fh.write(_pack4(codes[:whole]).tobytes())
                carry = codes[whole:]
            offset += len(seq)
        if len(carry):
            fh.write(_pack4(np.concatenate((carry, np.zeros(4 - len(carry), np.uint8)))).tobytes())
    merged = _merge_runs(np.concatenate(runs) if runs else np.zeros((0, 2), np.int64))
    np.save(runs_path, merged.astype(np.int64))


def _pack4(codes: np.ndarray) -> np.ndarray:
    """2-bit codes (a multiple of 4 of them) -> bytes, the first code in the lowest bits."""
    q = codes.reshape(-1, 4)
    return q[:, 0] | (q[:, 1] << 2) | (q[:, 2] << 4) | (q[:, 3] << 6)


def _merge_runs(runs: np.ndarray) -> np.ndarray:
    """Runs of N that touch (across a chunk's edge) joined into one."""
    if len(runs) < 2:
        return runs.reshape(-1, 2)
    keep = np.ones(len(runs), dtype=bool)
    keep[1:] = runs[1:, 0] != runs[:-1, 1]
    starts = runs[keep, 0]
    ends = runs[np.append(keep[1:], True), 1]
    return np.stack([starts, ends], axis=1)


def stamp(path: str | Path) -> dict:
    """What identifies a FASTA file without reading it: absolute path, size, modification time."""
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def check_files(folder: Path, entry: dict) -> None:
    """ValueError unless both files of the manifest's `sequence` entry match their checksums."""
    from dnaesa.store.vector_store import file_checksum

    for name in (entry["bases"], entry["nruns"]):
        if file_checksum(folder / name) != entry["checksums"][name]:
            raise ValueError(f"{name} does not match its checksum")


def load_packed(folder: Path, entry: dict, lengths: list[int]) -> PackedSequence:
    """The bases named by the manifest's `sequence` entry in `folder`, checked against their
    checksums and the contig lengths (ValueError otherwise), as a `PackedSequence` over the
    memory-mapped file."""
    check_files(folder, entry)
    packed, n_runs = np.load(folder / entry["bases"], mmap_mode="r"), np.load(folder / entry["nruns"])
    if packed.dtype != np.uint8 or len(packed) != (sum(lengths) + 3) // 4 or n_runs.ndim != 2:
        raise ValueError("the packed bases do not fit the contigs")
    return PackedSequence(packed, n_runs, lengths)


def file_names(reference_checksum: str) -> tuple[str, str]:
    return f"bases.{reference_checksum[:16]}.npy", f"nruns.{reference_checksum[:16]}.npy"
