"""The training-free baseline encoder: a hashed k-mer sketch with a seeded random projection.

Each distinct k-mer of a sequence is hashed to one of 2**hash_bits buckets; each bucket owns a
random +-1 vector of `dim` entries drawn from a seeded generator (so the table is rebuilt, not
stored); a sequence's embedding is the sum of its distinct k-mers' vectors, L2-normalised. The inner
product of a read and a fragment then estimates the number of k-mers they share, normalised by their
sizes, which is exactly what containment retrieval needs. Its weakness is divergence: one mismatch
breaks k k-mers, so at 8% divergence a 12-mer survives with probability 0.92**12 = 0.37.

Defaults chosen by measurement (recall of the true fragment among the top 16, both strands, exact
search, 2,000 simulated reads with 1% errors; 2026-11-27): the noise of a random projection falls
as 1/sqrt(dim), and a 100 bp read shares few k-mers with its 1,250 bp fragment, so width matters
most: on E. coli, 100 bp reads went from recall@16 85.9% (dim 256, k 12) to 100% (dim 1024, k 10);
250 bp reads at 10% divergence from 22.4% to 84.4% (k 9: 92.3%, at no loss on a human chrX slice).
2**14 buckets keep the seeded table at 64 MB; hash collisions add about 18 chance matches per read
against a fragment, small beside the projection noise.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import torch

from dnaesa.model.base import Encoder

#: base -> 2-bit code; anything else (N, IUPAC) -> -1, which breaks every k-mer covering it
BASE_CODE = np.full(256, -1, dtype=np.int8)
for _i, _b in enumerate(b"ACGT"):
    BASE_CODE[_b] = _i
    BASE_CODE[ord(chr(_b).lower())] = _i

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def kmer_buckets(seqs: Sequence[str], k: int, hash_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct hashed k-mer buckets of each sequence, concatenated.

    Returns (buckets int64, offsets int64): the buckets of sequence i are buckets[offsets[i]:offsets[i+1]]
    (offsets has len(seqs) + 1 entries). Sequences shorter than k, or all-N, get no buckets.
    """
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    joined = "N".join(seqs).encode("ascii", "replace")
    codes = BASE_CODE[np.frombuffer(joined, dtype=np.uint8)].astype(np.int64)
    n = codes.size
    if n < k:
        return np.zeros(0, np.int64), np.zeros(len(seqs) + 1, np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    bad = np.concatenate([[0], np.cumsum(codes < 0)])
    valid = (bad[k:] - bad[:-k]) == 0  # window [i, i+k) has no N (the separators are N)
    kmers = np.zeros(n - k + 1, dtype=np.uint64)
    clipped = np.maximum(codes, 0).astype(np.uint64)
    for j in range(k):
        kmers = (kmers << np.uint64(2)) | clipped[j : n - k + 1 + j]
    pos = np.flatnonzero(valid)
    seq_id = np.searchsorted(starts, pos, side="right") - 1
    bucket = ((kmers[pos] * _GOLDEN) >> np.uint64(64 - hash_bits)).astype(np.int64)
    keys = np.unique((seq_id.astype(np.int64) << hash_bits) | bucket)
    key_seq = keys >> hash_bits
    offsets = np.searchsorted(key_seq, np.arange(len(seqs) + 1), side="left").astype(np.int64)
    return keys & ((1 << hash_bits) - 1), offsets


class KmerSketchEncoder(Encoder):
    """Hashed k-mer sketch + seeded random +-1 projection (`--encoder kmer`)."""

    name = "kmer"

    def __init__(self, k: int = 10, dim: int = 1024, hash_bits: int = 14, seed: int = 0, device: str = "cpu"):
        if not 4 <= k <= 31:
            raise ValueError(f"k must be in [4, 31], got {k}")
        if not 8 <= hash_bits <= 24:
            raise ValueError(f"hash_bits must be in [8, 24], got {hash_bits}")
        self.k, self.dim, self.hash_bits, self.seed = k, dim, hash_bits, seed
        self.device = device
        rng = np.random.Generator(np.random.PCG64(seed))
        signs = rng.integers(0, 2, size=(1 << hash_bits, dim), dtype=np.int8) * 2 - 1
        self._table = torch.from_numpy(signs.astype(np.float32)).to(device)

    def identity(self) -> str:
        params = f"kmer-sketch:k={self.k}:dim={self.dim}:bits={self.hash_bits}:seed={self.seed}:v1"
        return params + ":" + hashlib.sha1(params.encode()).hexdigest()[:8]

    def encode(self, seqs: Sequence[str], batch_size: int = 4096) -> np.ndarray:
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        for lo in range(0, len(seqs), batch_size):
            chunk = seqs[lo : lo + batch_size]
            buckets, offsets = kmer_buckets(chunk, self.k, self.hash_bits)
            idx = torch.from_numpy(buckets).to(self.device)
            off = torch.from_numpy(offsets[:-1]).to(self.device)
            emb = torch.nn.functional.embedding_bag(idx, self._table, off, mode="sum")
            emb = torch.nn.functional.normalize(emb, dim=1)
            out[lo : lo + len(chunk)] = emb.cpu().numpy()
        return out
