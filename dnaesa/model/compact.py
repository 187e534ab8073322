"""Compact encoders: D = 128-512 output dimensions instead of the sketch's 4,096 (issue 10).

A store's memory and exhaustive-search time grow with the dimension, so at genome scale a CPU
store wants a few hundred dimensions. This module holds

* `compact_features(seqs, channels)`: counts of several k-mer channels per sequence (numpy), e.g.
  canonical 4-, 5-, 6-mers by their exact code (short k-mers survive mutation: at 10% divergence a
  5-mer survives with probability 0.9**5 = 0.59, an 8-mer with 0.43), and 8-mers and the spaced
  seed `11011011011` hashed into 4,096 bins. Every channel is canonical (strand-free).
* `CompactSketchEncoder`: the numpy inference path of a saved `DnaCompactModel` (config.json +
  model.safetensors, no torch import):
      embedding = L2norm( sum_c (x_c - n_c * mu_c) @ W_c )
  x_c the count vector of channel c, n_c its total count, mu_c the channel's mean bin frequency on
  training sequence (centering removes the shared base composition, which dominates short k-mers),
  W_c a learned (bins_c, D) matrix. The embedding is linear in the counts, so a fragment's vector is
  the sum of its parts, which is what containment retrieval needs.
* `ProjectedSketchEncoder`: the training-free baselines at the same D (random projection or PCA
  of the 4,096-dim 8-mer count sketch).

The torch model that trains W (and saves the transformers-format directory) is
`dnaesa.model.compact_hf.DnaCompactModel`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from dnaesa.model.base import Encoder
from dnaesa.model.kmer import BASE_CODE, KmerSketchEncoder, sketch_coordinates

COMPACT_MODEL_TYPE = "dnaesa-compact-sketch"

#: the default channel set (measured in MODEL.md, "Compact encoders")
DEFAULT_CHANNELS = (
    {"kind": "kmer", "k": 4},
    {"kind": "kmer", "k": 5},
    {"kind": "kmer", "k": 6},
    {"kind": "kmer", "k": 8, "bins": 4096},
    {"kind": "spaced", "pattern": "11011011011", "bins": 4096},
)


def normalize_channels(channels: Sequence[dict]) -> list[dict]:
    """Fill defaults and check: kmer {k, bins = 4**k (exact codes) or a power of two (hashed),
    distinct}; spaced {pattern (a 0/1 palindrome), bins}."""
    out = []
    for ch in channels:
        ch = dict(ch)
        kind = ch.get("kind")
        if kind == "kmer":
            k = int(ch["k"])
            if not 2 <= k <= 16:
                raise ValueError(f"channel {ch}: k must be in [2, 16]")
            ch["bins"] = int(ch.get("bins", 4 ** k))
            ch["distinct"] = bool(ch.get("distinct", False))
        elif kind == "spaced":
            p = ch["pattern"]
            if set(p) - {"0", "1"} or p[0] != "1" or p != p[::-1]:
                raise ValueError(f"channel {ch}: the pattern must be a 0/1 palindrome starting with 1")
            ch["bins"] = int(ch.get("bins", 4096))
            ch["distinct"] = bool(ch.get("distinct", False))
        else:
            raise ValueError(f"channel {ch}: kind must be kmer or spaced")
        bins = ch["bins"]
        exact = kind == "kmer" and bins == 4 ** ch["k"]
        if not exact and (bins < 16 or bins & (bins - 1)):
            raise ValueError(f"channel {ch}: hashed bins must be a power of two >= 16")
        out.append(ch)
    return out


def _canonical_rank(k: int) -> np.ndarray:
    """code -> index of its canonical form among the canonical k-mers (4**k table, int64)."""
    codes = np.arange(4 ** k, dtype=np.int64)
    rc = np.zeros_like(codes)
    x = codes.copy()
    for _ in range(k):
        rc = (rc << 2) | (3 - (x & 3))
        x >>= 2
    canon = np.minimum(codes, rc)
    uniq, rank = np.unique(canon, return_inverse=True)
    return rank.astype(np.int64)


_RANKS: dict[int, np.ndarray] = {}


def canonical_count(k: int) -> int:
    """Number of canonical k-mers: (4**k + 4**(k/2)) / 2 for even k, 4**k / 2 for odd k."""
    return (4 ** k + (4 ** (k // 2) if k % 2 == 0 else 0)) // 2


def channel_bins(ch: dict) -> int:
    """Feature columns of a channel: the canonical k-mers themselves (exact), or its hashed bins."""
    return canonical_count(ch["k"]) if ch["kind"] == "kmer" and ch["bins"] == 4 ** ch["k"] else ch["bins"]


def channel_offsets(channels: Sequence[dict]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([channel_bins(ch) for ch in channels])]).astype(np.int64)


def _rank(k: int) -> np.ndarray:
    if k not in _RANKS:
        _RANKS[k] = _canonical_rank(k)
    return _RANKS[k]


def compact_features(seqs: Sequence[str], channels: Sequence[dict], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """-> (X (n, F) float32 counts of every channel side by side, totals (n, C) float32 per channel).

    All contiguous k-mer codes come from one pass over the bases (the forward code of a k-mer is the
    top 2k bits of the longest one's, its reverse complement the low 2k bits of the reverse code);
    the spaced seed from the bases at its care positions. A k-mer or seed covering an N (or a sequence end) is skipped.
    A `distinct` channel clips each bin's count at 1."""
    seqs = list(seqs)
    offsets = channel_offsets(channels)
    n, total = len(seqs), int(offsets[-1])
    X = np.zeros((n, total), dtype=np.float32)
    totals = np.zeros((n, len(channels)), dtype=np.float32)
    if n == 0:
        return X, totals
    kmer_ks = [ch["k"] for ch in channels if ch["kind"] == "kmer"]
    spans = [len(ch["pattern"]) for ch in channels if ch["kind"] == "spaced"]
    kmax = max(kmer_ks + [1])
    pad = max([kmax] + spans)
    raw = BASE_CODE[np.frombuffer("N".join(seqs).encode("ascii", "replace"), dtype=np.uint8)]
    length = raw.size
    codes = np.concatenate([raw, np.full(pad, -1, np.int8)])
    bad = np.concatenate([[0], np.cumsum(codes < 0, dtype=np.int32)])
    base = np.maximum(codes, 0).astype(np.uint32)
    seq_of = np.repeat(np.arange(n, dtype=np.int64), np.fromiter((len(s) + 1 for s in seqs), np.int64, n))[:length]
    fwd = rev = None
    if kmer_ks:
        fwd, rev = np.zeros(length, np.uint32), np.zeros(length, np.uint32)
        for j in range(kmax):
            b = base[j : j + length]
            fwd <<= np.uint32(2)
            fwd |= b
            rev |= (np.uint32(3) - b) << np.uint32(2 * j)
    for j, ch in enumerate(channels):
        if ch["kind"] == "kmer":
            k = ch["k"]
            valid = np.flatnonzero(bad[k : k + length] == bad[:length])
            f = fwd[valid] >> np.uint32(2 * (kmax - k))
            r = rev[valid] & np.uint32((1 << (2 * k)) - 1)
            code = np.minimum(f, r)
        else:
            pattern = ch["pattern"]
            span = len(pattern)
            care = [i for i, c in enumerate(pattern) if c == "1"]
            valid = np.flatnonzero(bad[span : span + length] == bad[:length])
            f = np.zeros(valid.size, np.uint32)
            r = np.zeros(valid.size, np.uint32)
            for t, off in enumerate(care):
                b = base[valid + off]
                f = (f << np.uint32(2)) | b
                r |= (np.uint32(3) - b) << np.uint32(2 * t)
            code = np.minimum(f, r)
        sidx = seq_of[valid]
        exact = ch["kind"] == "kmer" and ch["bins"] == 4 ** ch["k"]
        if exact:
            coord = _rank(ch["k"])[code]
        else:
            coord, _ = sketch_coordinates(code.astype(np.uint64), ch["bins"], seed + 1 + j)
        bins = channel_bins(ch)
        counts = np.bincount(sidx * bins + coord, minlength=n * bins).reshape(n, bins)
        if ch["distinct"]:
            counts = np.minimum(counts, 1)
        X[:, offsets[j] : offsets[j + 1]] = counts
        totals[:, j] = counts.sum(1)
    return X, totals


def channel_means(X: np.ndarray, totals: np.ndarray, channels: Sequence[dict]) -> np.ndarray:
    """Mean bin frequency of each channel over the rows of X (each channel's slice sums to 1)."""
    offsets = channel_offsets(channels)
    mu = np.zeros(X.shape[1], dtype=np.float64)
    for j in range(len(channels)):
        lo, hi = offsets[j], offsets[j + 1]
        mu[lo:hi] = X[:, lo:hi].sum(0) / max(float(totals[:, j].sum()), 1.0)
    return mu.astype(np.float32)


def _l2_rows(y: np.ndarray) -> np.ndarray:
    return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)


class CompactSketchEncoder(Encoder):
    """Numpy inference of a saved `DnaCompactModel` directory (no torch, no transformers)."""

    name = "compact"
    strand_symmetric = True

    def __init__(self, path, device: str = "cpu"):
        from safetensors.numpy import load_file

        self.path = Path(path)
        self.config = json.loads((self.path / "config.json").read_text())
        if self.config.get("model_type") != COMPACT_MODEL_TYPE:
            raise ValueError(f"{path}: not a compact model (model_type {self.config.get('model_type')!r})")
        tensors = load_file(str(self.path / "model.safetensors"))
        self.channels = normalize_channels(self.config["channels"])
        self.seed = int(self.config.get("sketch_seed", 0))
        self.weight = np.ascontiguousarray(tensors["weight"], dtype=np.float32)
        self.mu = np.ascontiguousarray(tensors["mu"], dtype=np.float32)
        self.dim = int(self.weight.shape[1])
        offsets = channel_offsets(self.channels)
        if self.weight.shape[0] != offsets[-1] or self.mu.shape[0] != offsets[-1]:
            raise ValueError(f"{path}: weight rows {self.weight.shape[0]} != feature count {offsets[-1]}")
        # centering folded into one (C, D) matrix: sum_c n_c * (mu_c @ W_c)
        self.center = np.stack([self.mu[lo:hi] @ self.weight[lo:hi] for lo, hi in zip(offsets[:-1], offsets[1:])])
        self.device = device
        self._identity: str | None = None

    def identity(self) -> str:
        if self._identity is None:
            h = hashlib.sha1(json.dumps({"channels": self.channels, "seed": self.seed}, sort_keys=True).encode())
            h.update(self.weight.tobytes())
            h.update(self.mu.tobytes())
            self._identity = f"compact:dim={self.dim}:{h.hexdigest()[:16]}"
        return self._identity

    def encode(self, seqs: Sequence[str], batch_size: int = 1024) -> np.ndarray:
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        for lo in range(0, len(seqs), batch_size):
            X, totals = compact_features(seqs[lo : lo + batch_size], self.channels, self.seed)
            out[lo : lo + len(X)] = _l2_rows(X @ self.weight - totals @ self.center)
        return out


class ProjectedSketchEncoder(Encoder):
    """Training-free baseline: the 8-mer count sketch (k, 4,096) times a fixed (4096, D) matrix,
    after subtracting `mean` (PCA) or not (random projection); rows L2-normalised."""

    name = "projected-sketch"
    strand_symmetric = True

    def __init__(self, matrix: np.ndarray, mean: np.ndarray | None = None, label: str = "proj", k: int = 8):
        self.sketch = KmerSketchEncoder(k=k, dim=matrix.shape[0])
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.dim = matrix.shape[1]
        self.label = label

    @classmethod
    def random(cls, dim: int, seed: int = 0, sketch_dim: int = 4096) -> "ProjectedSketchEncoder":
        rng = np.random.default_rng(seed)
        return cls(rng.standard_normal((sketch_dim, dim)).astype(np.float32) / np.sqrt(dim), label=f"rp{dim}")

    @classmethod
    def pca(cls, fragments: Sequence[str], dim: int, sketch_dim: int = 4096) -> "ProjectedSketchEncoder":
        """Top-`dim` principal axes of the sketch vectors of `fragments` (training sequence)."""
        vecs = KmerSketchEncoder(dim=sketch_dim).encode(list(fragments)).astype(np.float64)
        mean = vecs.mean(0)
        cov = (vecs - mean).T @ (vecs - mean) / len(vecs)
        _, eigvec = np.linalg.eigh(cov)
        return cls(eigvec[:, ::-1][:, :dim].astype(np.float32), mean=mean.astype(np.float32), label=f"pca{dim}")

    def identity(self) -> str:
        return f"{self.label}:" + hashlib.sha1(self.matrix.tobytes()).hexdigest()[:16]

    def encode(self, seqs: Sequence[str], batch_size: int = 2048) -> np.ndarray:
        x = self.sketch.encode(seqs, batch_size)
        if self.mean is not None:
            x = x - self.mean
        return _l2_rows(x @ self.matrix)
