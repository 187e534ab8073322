"""Recall evaluator: does a read's vector find the fragment that contains it, genome-wide, on both strands?

The region is cut into forward fragments of `fragment_len` at `stride` (the last one ending at the
contig end, as the store does). Reads of `read_len` are drawn at random places, mutated by a
`MutationProfile`, and reverse-complemented half of the time. Each read is searched as given and as
its reverse complement against all fragments (FAISS `IndexFlatIP`, exact); hits of the two
orientations are merged by score (a `strand_symmetric` encoder gives both the same vector, so only
the read as given is searched: same ranking, half the work). recall@K = share of reads with a fragment that wholly contains the
read's true span among the top K. The primary metric is recall at the largest K.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dnaesa.model.base import Encoder
from dnaesa.reference import fragment_windows, reverse_complement
from dnaesa.train.data import MutationProfile, Region, mutate


@dataclass
class RecallEvaluator:
    """Fixed, seeded reads and fragments of one region; `__call__(encoder)` -> metrics dict."""

    region: Region
    profile: MutationProfile
    n_reads: int = 1000
    read_len: int = 250
    fragment_len: int = 1250
    stride: int = 1000
    ks: tuple[int, ...] = (1, 8, 16)
    seed: int = 1
    name: str = ""
    decoys: Sequence[str] = ()
    reads: list[str] = field(init=False, repr=False)

    def __post_init__(self):
        rng = np.random.Generator(np.random.PCG64(self.seed))
        self.windows = fragment_windows([len(s) for s in self.region.seqs], self.fragment_len, self.stride)
        self.fragments = [self.region.seqs[c][s:e] for c, s, e in self.windows]
        keep = np.array([f.count("N") < 0.5 * len(f) for f in self.fragments])
        self.windows = self.windows[keep]
        self.fragments = [f for f, k in zip(self.fragments, keep) if k]
        self.reads, self.truth = [], []
        seqs = self.region.seqs
        weights = np.array([max(len(s) - self.read_len + 1, 0) for s in seqs], dtype=np.float64)
        while len(self.reads) < self.n_reads:
            ci = int(rng.choice(len(seqs), p=weights / weights.sum()))
            start = int(rng.integers(0, len(seqs[ci]) - self.read_len + 1))
            read = seqs[ci][start : start + self.read_len]
            if read.count("N") > 0.05 * self.read_len:
                continue
            read = mutate(read, self.profile, rng)
            if rng.random() < 0.5:
                read = reverse_complement(read)
            self.reads.append(read)
            self.truth.append((ci, start, start + self.read_len))

    def _is_true(self, read_idx: int, frag_idx: np.ndarray) -> np.ndarray:
        ci, start, end = self.truth[read_idx]
        w = self.windows[frag_idx]
        return (w[:, 0] == ci) & (w[:, 1] <= start) & (w[:, 2] >= end)

    def __call__(self, encoder: Encoder, batch_size: int = 256, cache: dict | None = None) -> dict[str, float]:
        import faiss

        key = (encoder.identity(), self.region.spec, self.fragment_len, self.stride, len(self.decoys))
        if cache is not None and key in cache:
            frag_vecs = cache[key]
        else:
            frag_vecs = encoder.encode(list(self.fragments) + list(self.decoys), batch_size=batch_size)
            if cache is not None:
                cache[key] = frag_vecs
        index = faiss.IndexFlatIP(frag_vecs.shape[1])
        index.add(np.ascontiguousarray(frag_vecs, dtype=np.float32))
        kmax = max(self.ks)
        symmetric = getattr(encoder, "strand_symmetric", False)
        queries = self.reads if symmetric else self.reads + [reverse_complement(r) for r in self.reads]
        qv = encoder.encode(queries, batch_size=batch_size)
        scores, ids = index.search(np.ascontiguousarray(qv, dtype=np.float32), kmax)
        n = len(self.reads)
        if symmetric:
            scores, ids = np.concatenate([scores, scores]), np.concatenate([ids, ids])
        hits = {k: 0 for k in self.ks}
        for i in range(n):
            merged_ids = np.concatenate([ids[i], ids[n + i]])
            merged_scores = np.concatenate([scores[i], scores[n + i]])
            order = np.argsort(-merged_scores, kind="stable")
            ranked = list(dict.fromkeys(int(j) for j in merged_ids[order] if j >= 0))
            ranked = np.array(ranked, dtype=np.int64)
            ranked[ranked >= len(self.fragments)] = -1  # a decoy: never true
            true = self._is_true(i, ranked) & (ranked >= 0) if ranked.size else np.zeros(0, bool)
            first = int(np.argmax(true)) if true.any() else None
            for k in self.ks:
                hits[k] += first is not None and first < k
        prefix = f"{self.name}/" if self.name else ""
        return {f"{prefix}recall@{k}": hits[k] / n for k in self.ks}
