"""Training and evaluation data: reference regions, read mutation, and (fragment, read) pair sampling.

A *region spec* names sequence for training or evaluation: `PATH` (every contig of a FASTA, plain or
gzipped) or `PATH:START-END` (the same 0-based half-open slice of every contig; `END` may be empty
for "to the end"). It is how held-out sequence is kept out of training: train on
`human.fa.gz:0-60000000`, evaluate on `human.fa.gz:60000000-62000000`.

A training pair is a fragment of `fragment_len` bases and a read of 100-500 bases drawn from inside
it. The read gets sequencing errors (substitutions and 1-5 bp indels at Illumina-like rates) and a
divergence augmentation (the same kinds of edits at up to ~15%, for reads from a related strain).
Strand: the store holds forward fragments only and the pipeline queries a read and its reverse
complement, so a pair is either (fragment, read) or (RC(fragment), RC(read)) with equal chance;
both orientations of every query then meet a forward fragment in the same geometry as in training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnaesa.io.fastx import read_reference
from dnaesa.reference import reverse_complement

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclass
class Region:
    """Named sequences cut from one FASTA by a region spec."""

    spec: str
    names: list[str]
    seqs: list[str]

    @classmethod
    def load(cls, spec: str) -> "Region":
        path, start, end = parse_region_spec(spec)
        names, seqs = [], []
        for name, seq in read_reference(str(path)):
            piece = seq[start:end]
            if len(piece) > 0:
                names.append(f"{name}:{start}-{start + len(piece)}" if (start or end) else name)
                seqs.append(piece)
        if not seqs:
            raise ValueError(f"{spec}: no sequence in this region; check the path and START-END")
        return cls(spec, names, seqs)

    @property
    def total_len(self) -> int:
        return sum(len(s) for s in self.seqs)


def parse_region_spec(spec: str) -> tuple[str, int, int | None]:
    """`PATH` or `PATH:START-END` -> (path, start, end or None)."""
    path, start, end = spec, 0, None
    head, sep, tail = spec.rpartition(":")
    if sep and "-" in tail and tail.replace("-", "").isdigit():
        lo, _, hi = tail.partition("-")
        path, start, end = head, int(lo), (int(hi) if hi else None)
    if not Path(path).exists():
        raise ValueError(f"{spec}: no such FASTA file {path!r}")
    return path, start, end


@dataclass(frozen=True)
class MutationProfile:
    """Edit rates per base: substitutions, and indel events of 1..max_indel bases (geometric lengths)."""

    substitution: float
    indel: float
    max_indel: int = 5

    @classmethod
    def divergence(cls, rate: float, indel_share: float = 0.1) -> "MutationProfile":
        """`rate` edits per base, `indel_share` of them indel events (the rest substitutions)."""
        return cls(rate * (1 - indel_share), rate * indel_share)


def mutate(seq: str, profile: MutationProfile, rng: np.random.Generator) -> str:
    """Apply substitutions, then insertions/deletions of 1..max_indel bases, at the profile's rates."""
    arr = np.frombuffer(seq.encode("ascii"), dtype=np.uint8).copy()
    n = arr.size
    subs = np.flatnonzero(rng.random(n) < profile.substitution)
    if subs.size:
        codes = np.searchsorted(_BASES, arr[subs]) % 4
        arr[subs] = _BASES[(codes + rng.integers(1, 4, subs.size)) % 4]
    events = np.flatnonzero(rng.random(n) < profile.indel)
    if events.size == 0:
        return arr.tobytes().decode("ascii")
    pieces, last = [], 0
    for pos in events:
        if pos < last:
            continue
        length = int(min(rng.geometric(0.5), profile.max_indel))
        pieces.append(arr[last:pos])
        if rng.random() < 0.5:  # insertion before pos
            pieces.append(_BASES[rng.integers(0, 4, length)])
            last = pos
        else:  # deletion of [pos, pos+length)
            last = pos + length
    pieces.append(arr[last:])
    return np.concatenate(pieces).tobytes().decode("ascii")


def containment_mask(spans: np.ndarray, locs: np.ndarray, fragment_len: int) -> np.ndarray:
    """(R, F) bool: True where fragment j (`locs[j]` = contig, start; contig -1 = unlocated) wholly
    contains read i's span (`spans[i]` = contig, start, end)."""
    spans, locs = np.asarray(spans).reshape(-1, 3), np.asarray(locs).reshape(-1, 2)
    return ((locs[None, :, 0] == spans[:, None, 0]) & (locs[None, :, 1] <= spans[:, None, 1])
            & (locs[None, :, 1] + fragment_len >= spans[:, None, 2]))


@dataclass
class PairSampler:
    """Random (fragment, read) pairs from the training regions, weighted by sequence length.

    Each read gets a divergence drawn uniformly from [0, max_divergence] with probability
    `divergent_share` (else none), then sequencing errors at `error_rate` (10% of them indels).
    """

    regions: list[Region]
    fragment_len: int = 1250
    read_len_min: int = 100
    read_len_max: int = 500
    error_rate: float = 0.01
    max_divergence: float = 0.15
    divergent_share: float = 0.5
    max_n_fraction: float = 0.05

    def __post_init__(self):
        self._seqs = [s for r in self.regions for s in r.seqs if len(s) >= self.fragment_len]
        if not self._seqs:
            raise ValueError(f"no training contig is at least fragment_len={self.fragment_len} bases long")
        lengths = np.array([len(s) - self.fragment_len + 1 for s in self._seqs], dtype=np.float64)
        self._weights = lengths / lengths.sum()

    def sample_fragment(self, rng: np.random.Generator) -> str:
        return self.sample_located_fragment(rng)[0]

    def sample_located_fragment(self, rng: np.random.Generator) -> tuple[str, int, int]:
        """(fragment, contig index, start)."""
        for _ in range(100):
            ci = int(rng.choice(len(self._seqs), p=self._weights))
            seq = self._seqs[ci]
            start = int(rng.integers(0, len(seq) - self.fragment_len + 1))
            frag = seq[start : start + self.fragment_len]
            if frag.count("N") <= self.max_n_fraction * self.fragment_len:
                return frag, ci, start
        raise ValueError("could not find a fragment without Ns in 100 tries; the training regions are mostly N")

    def neighbour_fragment(self, ci: int, read_start: int, read_end: int, rng: np.random.Generator,
                           located: bool = False):
        """A hard negative: a fragment of the same contig that overlaps the read's span but does not
        wholly contain it (the store's overlapping neighbour windows), or None where none fits;
        with `located`, (fragment, start)."""
        seq, f = self._seqs[ci], self.fragment_len
        lo_left, hi_left = max(0, read_start - f + 1), read_end - f - 1  # ends inside the read
        lo_right, hi_right = read_start + 1, min(read_end - 1, len(seq) - f)  # starts inside the read
        choices = [(lo, hi) for lo, hi in ((lo_left, hi_left), (lo_right, hi_right)) if lo <= hi]
        if not choices:
            return (None, -1) if located else None
        lo, hi = choices[int(rng.integers(0, len(choices)))]
        start = int(rng.integers(lo, hi + 1))
        return (seq[start : start + f], start) if located else seq[start : start + f]

    def sample_read(self, fragment: str, rng: np.random.Generator) -> str:
        return self.sample_located_read(fragment, rng)[0]

    def sample_located_read(self, fragment: str, rng: np.random.Generator) -> tuple[str, int, int]:
        """(mutated read, start, end of its span in the fragment)."""
        length = int(rng.integers(self.read_len_min, min(self.read_len_max, len(fragment)) + 1))
        start = int(rng.integers(0, len(fragment) - length + 1))
        read = fragment[start : start + length]
        if rng.random() < self.divergent_share:
            read = mutate(read, MutationProfile.divergence(rng.uniform(0, self.max_divergence)), rng)
        return mutate(read, MutationProfile.divergence(rng.uniform(0, self.error_rate)), rng), start, start + length

    @property
    def contigs(self) -> list[str]:
        """The training contigs (at least `fragment_len` long); span contig indices refer to this list."""
        return self._seqs

    def located_batch(self, size: int, extra: int, rng: np.random.Generator, neighbours: bool = False,
                      with_spans: bool = False):
        """`size` pairs, then hard negatives (with `neighbours`), then `extra` random fragments.

        -> (fragments, reads, mask): mask (size, n_fragments) bool is True where fragment j != i
        wholly contains read i's span (a second true fragment, not a negative; on a 5 Mb genome a
        thousand random fragments contain a given read about a quarter of the time). With
        `with_spans`, also the (size, 3) int64 array of each read's (contig, start, end)."""
        frags, reads, spans, hard, hard_spans = [], [], [], [], []
        for _ in range(size):
            frag, ci, fstart = self.sample_located_fragment(rng)
            read, rs, re_ = self.sample_located_read(frag, rng)
            flip = rng.random() < 0.5
            spans.append((ci, fstart + rs, fstart + re_))
            if neighbours:
                nb, nb_start = self.neighbour_fragment(ci, fstart + rs, fstart + re_, rng, located=True)
                if nb is not None and nb.count("N") <= self.max_n_fraction * self.fragment_len:
                    hard.append(reverse_complement(nb) if flip else nb)
                    hard_spans.append((ci, nb_start))
            if flip:
                frag, read = reverse_complement(frag), reverse_complement(read)
            frags.append(frag)
            reads.append(read)
        frag_locs = [None] * size + hard_spans
        frags += hard
        for _ in range(extra):
            frag, ci, fstart = self.sample_located_fragment(rng)
            frags.append(frag)
            frag_locs.append((ci, fstart))
        loc = np.array([(-1, 0) if x is None else x for x in frag_locs], dtype=np.int64).reshape(-1, 2)
        spans_arr = np.asarray(spans, dtype=np.int64).reshape(-1, 3)
        mask = containment_mask(spans_arr, loc, self.fragment_len)
        return (frags, reads, mask, spans_arr) if with_spans else (frags, reads, mask)

    def batch(self, size: int, rng: np.random.Generator, neighbours: bool = False):
        """`size` pairs -> (fragments, reads); pair i is forward or both reverse-complemented.

        With `neighbours`, also a list of hard negatives: for each pair (where one fits) a fragment
        overlapping the read's span without containing it, on the pair's strand."""
        frags, reads, hard = [], [], []
        for _ in range(size):
            frag, ci, fstart = self.sample_located_fragment(rng)
            read, rs, re_ = self.sample_located_read(frag, rng)
            flip = rng.random() < 0.5
            if neighbours:
                nb = self.neighbour_fragment(ci, fstart + rs, fstart + re_, rng)
                if nb is not None and nb.count("N") <= self.max_n_fraction * self.fragment_len:
                    hard.append(reverse_complement(nb) if flip else nb)
            if flip:
                frag, read = reverse_complement(frag), reverse_complement(read)
            frags.append(frag)
            reads.append(read)
        return (frags, reads, hard) if neighbours else (frags, reads)
