"""The exact tier of a `lean` index, computed from the reference's sequence instead of stored.

A `tiered` index keeps every fragment's 4,096-dim sketch as int4 codes (2,048 bytes a fragment,
6.4 GB at 3.1 Gb) only to score the few hundred candidates a read's coarse search picks. Those
vectors are a function of the fragment's sequence, which the aligner holds anyway (the dynamic
programming needs it), so a `lean` index stores none of them: `SequenceTier.rerank` computes each
candidate's sketch from its sequence (`kernels._sketch_scores`, compiled: the distinct canonical
k-mers and spaced seeds of the fragment, hashed as `kmer.sketch_coordinates` does) and scores it
against the read's vector. The result is the encoder's own cosine, not that of clipped int4 codes.

A candidate costs about 20 CPU µs (its bases read as codes straight from the index's packed bases at
scale, `_codes`; 43-50 when each was decoded to text first), against well under 1 for an int4 row,
so only the candidates that the stored prefix
(`vector_store.PrefixStore`) ranks near the read's best are scored here
(`MapOptions.prefilter_ratio`: about 70 a read at 300 Mb and at 3.1 Gb, with no loss of recall
on the stand-ins; benchmarks/RESULTS.md, "A lean store"). End to end at 3.1 Gb this matches the
tiered store's speed with a quarter of its bytes and half its memory.

It serves count-sketch encoders (`KmerSketchEncoder`, `SketchModelEncoder`: the default); other
encoders need a stored exact tier (`supports`). Without numba the candidates are embedded by the
encoder itself (the same numbers up to the last bit of the norm, far slower).
"""
from __future__ import annotations

import importlib.util

import numpy as np

from dnaesa.model.kmer import BASE_CODE, KmerSketchEncoder, SketchModelEncoder, sketch_salt
from dnaesa.store.codes import best_candidates
from dnaesa.store.sequence_file import PackedSequence

HAVE_NUMBA = importlib.util.find_spec("numba") is not None


#: the longest k-mer, and most care positions of a spaced seed, served (a bitmap of 4**12 bits)
MAX_CODE_BASES = 12
#: a spaced seed's codes are read from its window's code this many bits at a time
CHUNK_BITS = 10
#: fragments whose sequence is gathered at a time (20 MB at 1,250 bp)
CHUNK = 16_384


def spaced_tables(patterns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """For each spaced-seed pattern j and each 10-bit chunk c of its window's 2-bit code: the bits
    of the seed's codes that chunk value x gives (uint32 (P, chunks, 1024); one table of zeros when
    there is no pattern), forward (window code:
    the first base most significant, as `kmer.canonical_spaced_kmers` codes a seed's care bases)
    and reverse complement (the complement of the window's first base least significant)."""
    chunks = max([-(-2 * len(p) // CHUNK_BITS) for p in patterns], default=1)
    x = np.arange(1 << CHUNK_BITS, dtype=np.uint64)
    fwd = np.zeros((max(len(patterns), 1), chunks, len(x)), dtype=np.uint64)
    rev = np.zeros_like(fwd)
    for j, pattern in enumerate(patterns):
        care = [i for i, c in enumerate(pattern) if c == "1"]
        span, k = len(pattern), len(care)
        for c in range(chunks):
            part = x << np.uint64(CHUNK_BITS * c)
            for t, pos in enumerate(care):
                fwd[j, c] |= ((part >> np.uint64(2 * (span - 1 - pos))) & np.uint64(3)) << np.uint64(2 * (k - 1 - t))
                rev[j, c] |= ((part >> np.uint64(2 * pos)) & np.uint64(3)) << np.uint64(2 * t)
    return fwd.astype(np.uint32), rev.astype(np.uint32)  # codes of <= 24 bits: half the cache


class SequenceTier:
    """Scores fragments (rows of `fragments`: contig index, start, end) of `reference` for
    `encoder`'s query vectors, from their sequence."""

    def __init__(self, encoder, reference, fragments: np.ndarray):
        if not self.supports(encoder):
            raise ValueError(f"a lean index needs a count-sketch encoder, not {encoder.identity()}")
        self.encoder, self.reference, self.fragments = encoder, reference, fragments
        self.k = encoder.k
        self.k_salt = np.uint64(sketch_salt(encoder.seed))
        self.shift = np.uint64(64 - encoder.dim.bit_length() + 1)
        patterns = list(getattr(encoder, "patterns", []))
        self.spans = np.array([len(p) for p in patterns], dtype=np.int64)
        self.salts = np.array([sketch_salt(encoder.seed + 1 + j) for j in range(len(patterns))], dtype=np.uint64)
        self.scales = np.array(getattr(encoder, "scales", []), dtype=np.float32)
        self.fwd_tab, self.rev_tab = spaced_tables(patterns)
        self.code_bits = max([2 * self.k] + [2 * p.count("1") for p in patterns])

    @staticmethod
    def supports(encoder) -> bool:
        """Whether `encoder`'s vectors can be computed here: a count sketch of k-mers (k <= 12)
        and of spaced seeds with at most 12 care positions in a span of at most 31."""
        if type(encoder) is KmerSketchEncoder:
            return encoder.k <= MAX_CODE_BASES
        if type(encoder) is SketchModelEncoder:
            return encoder.k <= MAX_CODE_BASES and all(p.count("1") <= MAX_CODE_BASES and len(p) <= 31
                                                       for p in encoder.patterns)
        return False

    def scores(self, queries: np.ndarray, reads: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """float32 cosine of queries[reads[p]] with fragment ids[p], for each pair p. Each distinct
        fragment is sketched once, `CHUNK` fragments' sequence at a time (bounded memory)."""
        out = np.zeros(len(ids), dtype=np.float32)
        if len(ids) == 0:
            return out
        queries = np.ascontiguousarray(queries, np.float32)
        reads = np.asarray(reads, np.int64)
        unique, which = np.unique(ids, return_inverse=True)
        order = np.argsort(which, kind="stable")  # pairs grouped by fragment, as the kernel takes them
        which, reads = which[order].astype(np.int64), reads[order]
        got = np.empty(len(ids), dtype=np.float32)
        for lo in range(0, len(unique), CHUNK):
            a, b = np.searchsorted(which, [lo, lo + CHUNK])
            got[a:b] = self._chunk_scores(self.fragments[unique[lo : lo + CHUNK]], queries, which[a:b] - lo, reads[a:b])
        out[order] = got
        return out

    def _chunk_scores(self, rows: np.ndarray, queries: np.ndarray, frag: np.ndarray, reads: np.ndarray) -> np.ndarray:
        """Scores of the pairs (fragment `rows[frag[p]]`, query `reads[p]`)."""
        if not HAVE_NUMBA:
            vectors = self.encoder.encode([self.reference.fetch(int(c), int(s), int(e)) for c, s, e in rows])
            return np.einsum("pd,pd->p", queries[reads], vectors[frag]).astype(np.float32)
        from dnaesa.store import kernels

        codes, bounds = self._codes(rows)
        got = np.empty(len(frag), dtype=np.float32)
        kernels._sketch_scores(codes, bounds, self.k, self.k_salt, self.shift, self.spans, self.salts, self.scales,
                               self.fwd_tab, self.rev_tab, self.code_bits, frag, reads, queries, got)
        return got

    def _codes(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The base codes (int8: 0-3, -1 for N) of the fragments `rows` (contig index, start, end;
        clipped to the contig as `Reference.fetch` clips), one after the other, and their bounds.
        Packed bases (`sequence_file.PackedSequence`) are read in a compiled pass: about 20 µs a
        fragment less than decoding each window to text at 3.1 Gb."""
        packed = self.reference.seqs
        if isinstance(packed, PackedSequence):
            from dnaesa.store import kernels

            lengths = np.asarray(packed.lengths, dtype=np.int64)[rows[:, 0]]
            starts = np.clip(rows[:, 1], 0, lengths)
            ends = np.maximum(np.minimum(rows[:, 2], lengths), starts)
            bounds = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(ends - starts, out=bounds[1:])
            base = packed.offsets[rows[:, 0]]
            codes = np.empty(bounds[-1], dtype=np.int8)
            kernels._packed_codes(packed.packed, packed.n_starts, packed.n_ends, base + starts, base + ends, bounds, codes)
            return codes, bounds
        seqs = [self.reference.fetch(int(c), int(s), int(e)) for c, s, e in rows]
        bounds = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in seqs], out=bounds[1:])
        return BASE_CODE[np.frombuffer("".join(seqs).encode("ascii", "replace"), dtype=np.uint8)], bounds

    def rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` of each query among its `candidates` (int64 ids (n, C), -1 pads), by the
        encoder's cosine; ties to the lower id. Returns (scores float32 (n, k), ids int64 (n, k)),
        -inf / -1 pads."""
        n_q, n_c = candidates.shape
        out_s = np.full((n_q, k), -np.inf, dtype=np.float32)
        out_i = np.full((n_q, k), -1, dtype=np.int64)
        if n_q == 0 or n_c == 0:
            return out_s, out_i
        cand = np.sort(candidates, axis=1)  # ids ascending: the stable sort below sends ties to the lower id
        valid = cand >= 0
        reads, cols = np.nonzero(valid)
        scores = np.full((n_q, n_c), -np.inf, dtype=np.float32)
        scores[reads, cols] = self.scores(queries, reads, cand[reads, cols])
        return best_candidates(scores, cand, valid, k)
