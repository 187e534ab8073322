"""Seeds: a sub-linear first search for a lean or flat index, before its exhaustive one.

At genome scale a read's cost was the coarse tier's pass over every fragment (the sieve's scan of
3.1 M product-quantisation codes: about 8 CPU ms a read, five times bwa's whole cost per read;
benchmarks/RESULTS.md, "Genome scale"). Vector search cannot be made sub-linear here without losing
recall: count sketches of unrelated fragments are nearly orthogonal, so IVF and HNSW keep 60-87%
(measured there). This module narrows the search the other way round, as a sparse embedding with
an inverted index: the read's sampled k-mers are looked up in a table of the reference's, and the
few fragments they point to are scored by the exact tier (`SequenceTier`), the same cosine as
before (`align.candidates.CandidateFinder`):
- first pass, every read: half of its seeds (`half`); it is settled when its best score is what
  a read inside a fragment scores (`MapOptions.seed_accept`);
- any other read (divergent, all seeds missed, a seed too frequent to look up, or more copies than
  the candidates hold: a repeat, whose copies must all be seen for its MAPQ) takes the coarse tier
  as before, and all of its seeds' fragments are merged with that search's hits: a divergent
  read's one surviving seed can find what the coarse tier misses.
A flat index of a count sketch keeps seeds too (twelfth session): there all of a read's seeds are
looked up at once, their fragments are scored by the store's integer scan (`IntegerScan.rerank`,
the scores its exhaustive search gives), and the reads they do not settle take that search.

The table (`SEED_PARAMS`): every canonical k-mer (k = 19) of the reference whose 64-bit hash
(splitmix64's finaliser of its 2-bit code) has its low `log2(sample)` bits zero, one in 8;
the same rule samples a read, so a read and its source share their sampled k-mers wherever no
error falls (at 1% errors a 250 bp read has about 24 of them, a 150 bp read about 14). Stored as
two sorted uint32 arrays (8 bytes an entry, about 1,000 bytes a fragment): the key (the hash's
high 32 bits with the lowest one replaced by the strand on which the k-mer is canonical) and the
position (along all contigs laid end to end). A hit's strand and the k-mer's offset in the read
give the read's start on the reference, and so the fragment that holds the read: hits that agree
vote for the same fragment, as a diagonal does in a chaining aligner. Keys that occur more than
`MapOptions.seed_max_occ` times are not looked up, and send the read to the dense search (unless
they are at most `MapOptions.seed_frequent_share` of its seeds).

The files `seedkeys.<checksum>.npy` and `seedpos.<checksum>.npy` are made from the index's packed
bases (`sequence_file.py`) when it keeps them, and are named with their SHA-256 in the manifest's
`seeds` entry (`index_dir.keep_seeds`).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from dnaesa import compiled
from dnaesa.model.kmer import BASE_CODE
from dnaesa.store.codes import ranges

#: the manifest's `seeds`: k-mers of `k` bases kept where hash % `sample` == 0
SEED_PARAMS = {"kind": "sampled-kmers", "k": 19, "sample": 8, "version": 1}
#: the compiled lookup's directory of fragments: one entry per this many bases (`_seeds.c`)
DIRECTORY_STEP = 1 << 10
#: bases hashed at a time while building (a multiple of 4)
BUILD_CHUNK = 1 << 22
#: bases either side of a read's start and end, as its seeds place it, whose fragments are
#: candidates too (indels shift the placement; a read at a fragment's first base is in two)
SLACK = 32
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
#: ASCII -> base code: A C G T (either case) 0-3, anything else 255, which breaks the k-mers over it
_CODES = BASE_CODE.view(np.uint8)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (a bijection of 64-bit integers), in place."""
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def sampled_kmers(codes: np.ndarray, k: int, sample: int) -> tuple[np.ndarray, np.ndarray]:
    """The sampled canonical k-mers of `codes` (uint8 0-3; anything else breaks the k-mers over it):
    (keys uint32: the hash's high 32 bits, lowest bit = 1 where the k-mer is canonical as its
    reverse complement; positions int64 of their first base). Compiled (`_seeds.c`) where built."""
    lib = compiled.load(compiled.SEEDS)
    if lib is None:
        return _sampled_kmers_numpy(codes, k, sample)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    keys = np.empty(len(codes), dtype=np.uint32)
    positions = np.empty(len(codes), dtype=np.int64)
    got = lib.dnaesa_seeds_sample(codes.ctypes.data, len(codes), k, sample - 1, keys.ctypes.data, positions.ctypes.data)
    return keys[:got].copy(), positions[:got].copy()


def _sampled_kmers_numpy(codes: np.ndarray, k: int, sample: int) -> tuple[np.ndarray, np.ndarray]:
    """`sampled_kmers` in numpy: the same keys and positions."""
    m = len(codes) - k + 1
    if m <= 0:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    c = np.minimum(codes, 3).astype(np.uint64)
    fwd = np.zeros(m, dtype=np.uint64)
    rev = np.zeros(m, dtype=np.uint64)
    for j in range(k):
        part = c[j : j + m]
        fwd <<= np.uint64(2)
        fwd |= part
        rev |= (np.uint64(3) - part) << np.uint64(2 * j)
    bad = np.concatenate(([0], np.cumsum(codes > 3, dtype=np.int64)))
    ok = bad[k:] == bad[:-k]
    strand = rev < fwd
    h = _mix(np.minimum(fwd, rev))
    keep = np.flatnonzero(ok & ((h & np.uint64(sample - 1)) == 0))
    keys = ((h[keep] >> np.uint64(32)).astype(np.uint32) & np.uint32(0xFFFFFFFE)) | strand[keep].astype(np.uint32)
    return keys, keep


def build(packed, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """The table of `packed` (`sequence_file.PackedSequence`): (keys, positions), both uint32,
    sorted by key then position (strided views of one array: save them, or copy them).

    Two passes over the bases, counting and then filling, so that the peak memory is one table of
    key << 32 | position (3.1 GB at 3.1 Gb) and not two or three; each pass samples the k-mers anew."""
    k, sample = params["k"], params["sample"]
    total = int(packed.offsets[-1])
    if total >= 1 << 32:
        raise ValueError(f"seeds address at most 4,294,967,295 bases; this reference has {total:,}")

    def chunks():  # (where the chunk starts along all contigs, its sampled k-mers)
        for ci, length in enumerate(packed.lengths):
            base = int(packed.offsets[ci])
            for lo in range(0, length, BUILD_CHUNK):
                hi = min(length, lo + BUILD_CHUNK + k - 1)
                yield base + lo, sampled_kmers(_CODES[packed.ascii(base + lo, base + hi)], k, sample)
                if hi == length:
                    break

    both = np.empty(sum(len(keys) for _, (keys, _) in chunks()), dtype=np.uint64)  # key << 32 | position
    at = 0
    for start, (keys, positions) in chunks():
        both[at : at + len(keys)] = (keys.astype(np.uint64) << np.uint64(32)) | (positions + start).astype(np.uint64)
        at += len(keys)
    both.sort()
    halves = both.view(np.uint32).reshape(-1, 2)
    high, low = (1, 0) if sys.byteorder == "little" else (0, 1)
    return halves[:, high], halves[:, low]


def file_names(reference_checksum: str) -> tuple[str, str]:
    """The table's two files: keys and positions."""
    return f"seedkeys.{reference_checksum[:16]}.npy", f"seedpos.{reference_checksum[:16]}.npy"


class SeedTable:
    """The seeds of a lean index, and the fragments they point reads to."""

    def __init__(self, keys: np.ndarray, positions: np.ndarray, params: dict, fragments: np.ndarray,
                 contig_lengths: Sequence[int]):
        # the compiled lookup reads them as plain arrays (a memory map of the files already is one)
        self.keys, self.positions = np.ascontiguousarray(keys), np.ascontiguousarray(positions)
        self.k, self.sample = params["k"], params["sample"]
        lengths = np.asarray(contig_lengths, dtype=np.int64)
        self.contig_starts = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.contig_starts[1:])
        #: each fragment's start along all contigs (ascending: fragments come in contig order)
        self.fragment_starts = self.contig_starts[fragments[:, 0]] + fragments[:, 1]
        self.fragment_ends = self.contig_starts[fragments[:, 0]] + fragments[:, 2]
        #: a read longer than this votes as its first `longest` bases would (no fragment holds it)
        self.longest = int((self.fragment_ends - self.fragment_starts).max(initial=0))
        #: whether `candidates` calls the compiled kernel where it is built (tests compare the paths)
        self.compiled = True
        #: for the kernel: the last fragment starting at or before each multiple of `DIRECTORY_STEP`
        #: bases (-1: none); 8 bytes for every 1,024 bases (24 MB at 3.1 Gb), made before workers fork
        bucket = np.arange(0, int(self.contig_starts[-1]) + DIRECTORY_STEP, DIRECTORY_STEP, dtype=np.int64)
        self.directory = np.searchsorted(self.fragment_starts, bucket, side="right") - 1
        #: the kernel's table arguments (`_candidates_compiled`), made at its first call
        self._table_args: tuple | None = None

    def candidates(self, seqs: Sequence[str], limit: int, max_occ: int, half: bool = False,
                   frequent_share: float = 0.0, votes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """For each read: the fragments its seeds point to, most votes first (ties to the lower
        id), at most `limit` (int64 (n, limit), -1 pads); and whether the seeds can speak for the
        read (bool (n,): some seed was found, no more than `frequent_share` of its seeds (0: none)
        was too frequent to look up (seen more than `max_occ` times), and the fragment after the
        first `limit` has under half the best one's votes: a repeat of more copies than that is left
        to the dense search). With `half`, only the seeds whose key has its second bit clear are
        looked up (the same half of every k-mer's occurrences: half the work, enough for a read
        close to the reference).
        `votes`, when given (int64 (n, limit)), receives each fragment's votes (0 pads)."""
        n = len(seqs)
        lens = np.fromiter(map(len, seqs), dtype=np.int64, count=n)
        lib = compiled.load(compiled.SEEDS) if self.compiled else None
        if lib is not None:
            return self._candidates_compiled(lib, seqs, lens, limit, max_occ, half, frequent_share, votes)
        read, start, contig, kmer, frequent = self._hits(seqs, lens, max_occ, half, frequent_share)
        out = np.full((n, limit), -1, dtype=np.int64)
        rows, frag, votes_of = self._votes(read, start, lens[read], contig, kmer)
        bounds = np.searchsorted(rows, np.arange(n + 1))
        rank = np.arange(len(rows)) - bounds[rows]
        keep = rank < limit
        out[rows[keep], rank[keep]] = frag[keep]
        if votes is not None:
            votes[:] = 0
            votes[rows[keep], rank[keep]] = votes_of[keep]
        # a repeat with more copies than `limit` holds: the first left out has half the best's votes
        left_out = rank == limit
        crowded = np.zeros(n, dtype=bool)
        crowded[rows[left_out]] = 2 * votes_of[left_out] >= votes_of[bounds[rows[left_out]]]
        return out, (bounds[1:] > bounds[:-1]) & ~frequent & ~crowded

    def _candidates_compiled(self, lib, seqs: Sequence[str], lens: np.ndarray, limit: int, max_occ: int,
                             half: bool, frequent_share: float, votes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """`candidates` by the compiled kernel (`_seeds.c`): the same fragments, in the same order."""
        n = len(seqs)
        codes, starts = _read_codes(seqs, lens)
        out = np.empty((n, limit), dtype=np.int64)
        usable = np.zeros(n, dtype=np.uint8)
        if self._table_args is None:  # the table's arrays never move: their addresses once
            self._table_args = (self.keys.ctypes.data, self.positions.ctypes.data, len(self.keys),
                                self.contig_starts.ctypes.data, len(self.contig_starts) - 1,
                                self.fragment_starts.ctypes.data, self.fragment_ends.ctypes.data,
                                len(self.fragment_starts), self.directory.ctypes.data, self.longest)
        if lib.dnaesa_seeds_candidates(codes.ctypes.data, starts.ctypes.data, lens.ctypes.data, n, self.k,
                                       self.sample - 1, int(half), *self._table_args,
                                       max_occ, frequent_share, SLACK, limit, out.ctypes.data,
                                       None if votes is None else votes.ctypes.data, usable.ctypes.data):
            raise MemoryError("the seed lookup ran out of memory")
        return out, usable.astype(bool)

    def _hits(self, seqs: Sequence[str], lens: np.ndarray, max_occ: int, half: bool,
              frequent_share: float = 0.0) -> tuple[np.ndarray, ...]:
        """Every table entry that a read's seeds match: (the read, where the read would start on the
        reference, the entry's contig, which k-mer matched: the first entry of its run in the table),
        and which reads have more than `frequent_share` of their seeds (0: any) too frequent to look up."""
        codes, read_starts = _read_codes(seqs, lens)
        keys, where = sampled_kmers(codes, self.k, self.sample)
        if half:
            chosen = (keys & np.uint32(2)) == 0
            keys, where = keys[chosen], where[chosen]
        read = np.searchsorted(read_starts, where, side="right") - 1
        offset = where - read_starts[read]
        lo = np.searchsorted(self.keys, keys & np.uint32(0xFFFFFFFE), side="left")
        count = np.searchsorted(self.keys, keys | np.uint32(1), side="right") - lo
        seen = np.bincount(read, minlength=len(seqs))
        frequent = np.bincount(read[count > max_occ], minlength=len(seqs)) > frequent_share * seen
        take = count <= max_occ
        read, offset, lo, count, keys = read[take], offset[take], lo[take], count[take], keys[take]
        seed = np.repeat(np.arange(len(lo)), count)
        entry = ranges(lo, count)
        g = self.positions[entry].astype(np.int64)
        same = (self.keys[entry] & np.uint32(1)) == (keys[seed] & np.uint32(1))  # the read is on the k-mer's strand
        read, q = read[seed], offset[seed]
        contig = np.searchsorted(self.contig_starts, g, side="right") - 1
        return read, np.where(same, g - q, g - (lens[read] - self.k - q)), contig, lo[seed], frequent

    def _votes(self, read: np.ndarray, start: np.ndarray, length: np.ndarray,
               contig: np.ndarray, kmer: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each hit votes for the fragments of its contig that may hold its read (within `SLACK`
        bases): one vote, two for a fragment that holds it as placed; a k-mer of the read (`kmer`:
        one id each) votes once for a fragment, its largest vote, however often it occurs in the
        read and there (a tandem repeat elsewhere does not outvote the read's own locus). Returns
        (read, fragment, votes), each pair once, by read, then most votes, then the lower fragment.
        A read longer than a fragment votes over its first `longest` bases only: two or three
        fragments a hit, whatever its length (a 1 Mb read would otherwise vote for a thousand)."""
        length = np.minimum(length, self.longest)
        first, last = self.contig_starts[contig], self.contig_starts[contig + 1] - 1
        a = np.maximum(self._fragment_of(np.clip(start - SLACK, first, last)), 0)  # -1: before the first
        span = np.maximum(self._fragment_of(np.clip(start + length - 1 + SLACK, first, last)) - a + 1, 0)
        hit = np.repeat(np.arange(len(a)), span)
        frag = ranges(a, span)
        s, end = start[hit], start[hit] + length[hit]
        vote = 1 + ((self.fragment_starts[frag] <= s) & (end <= self.fragment_ends[frag]))
        reads, kmers = read[hit], kmer[hit]
        by = np.lexsort((-vote, frag, kmers, reads))  # each (read, k-mer, fragment): its largest vote first
        r, m, f = reads[by], kmers[by], frag[by]
        first_of = np.ones(len(by), dtype=bool)
        first_of[1:] = (r[1:] != r[:-1]) | (m[1:] != m[:-1]) | (f[1:] != f[:-1])
        by = by[first_of]
        stride = len(self.fragment_starts) + 1
        uniq, inverse = np.unique(reads[by] * stride + frag[by], return_inverse=True)
        votes = np.bincount(inverse, weights=vote[by], minlength=len(uniq))
        rows, frag = np.divmod(uniq, stride)
        order = np.lexsort((frag, -votes, rows))
        return rows[order], frag[order], votes[order]

    def _fragment_of(self, g: np.ndarray) -> np.ndarray:
        """The last fragment starting at or before position `g` (same contig, as `g` is clipped)."""
        return np.searchsorted(self.fragment_starts, g, side="right") - 1


def _read_codes(seqs: Sequence[str], lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reads' base codes laid end to end, each followed by a code that breaks k-mers (uint8),
    and where each read starts there (int64 (n + 1,))."""
    starts = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lens + 1, out=starts[1:])
    text = "\n".join(seqs).encode("ascii", "replace")
    return _CODES[np.frombuffer(text, dtype=np.uint8)], starts
