"""The training-free baseline encoder: a count sketch of a sequence's canonical k-mers.

Each distinct canonical k-mer (the smaller of the k-mer and its reverse complement) of a sequence
is hashed to one of `dim` coordinates and a sign; a sequence's embedding is the sum of its k-mers'
signed unit vectors, L2-normalised. The inner product of a read and a fragment then estimates the
number of k-mers they share, normalised by their sizes, which is what containment retrieval needs.
Canonical k-mers make the embedding strand-symmetric (a read and its reverse complement get the
same vector), so one search serves both strands and the aligner tries both orientations.

A count sketch (one signed coordinate per k-mer) has the same inner-product variance as a dense
random +-1 projection, ||x||^2 ||y||^2 / dim, at a thousandth of the cost: embedding is a
scatter-add, not a gather of dim-wide rows. Its weakness is divergence: one mismatch breaks k
k-mers, so at 10% divergence a 10-mer survives with probability 0.9**10 = 0.35.

Width and k chosen by measurement (recall of the true fragment among the top 16, exact search,
2,000 simulated reads with 1% errors; 2026-11-27): projection noise falls as 1/sqrt(dim), and a
100 bp read shares few k-mers with its 1,250 bp fragment, so width matters most: on E. coli, 100 bp
reads went from recall@16 85.9% (dim 256, k 12) to 100% (dim 1024, k 10); 250 bp reads at 10%
divergence from 22.4% to 84.4% (k 9: 92.3%), at no loss on a human chrX slice.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from dnaesa import compiled
from dnaesa.model.base import Encoder

#: base -> 2-bit code; anything else (N, IUPAC) -> -1, which breaks every k-mer covering it
BASE_CODE = np.full(256, -1, dtype=np.int8)
for _i, _b in enumerate(b"ACGT"):
    BASE_CODE[_b] = _i
    BASE_CODE[ord(chr(_b).lower())] = _i

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def canonical_kmer_occurrences(seqs: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every canonical k-mer occurrence (k-mers covering an N are skipped), in sequence order.

    Returns (seq_index int64, position int64 = start of the k-mer in its sequence, kmer uint64)."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    codes = BASE_CODE[np.frombuffer("N".join(seqs).encode("ascii", "replace"), dtype=np.uint8)]
    n = codes.size
    if n < k:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint64)
    bad = np.concatenate([[0], np.cumsum(codes < 0, dtype=np.int64)])
    pos = np.flatnonzero(bad[k:] == bad[:-k])  # window [i, i+k) has no N (the separators are N)
    # k-mer codes at every position from contiguous slices (no gathers), in 32 bits when they fit
    dtype = np.uint32 if 2 * k <= 32 else np.uint64
    m = n - k + 1
    base = np.maximum(codes, 0).astype(dtype)
    fwd, rev, tmp = np.zeros(m, dtype), np.zeros(m, dtype), np.empty(m, dtype)
    for j in range(k):
        b = base[j : j + m]
        np.left_shift(fwd, dtype(2), out=fwd)
        np.bitwise_or(fwd, b, out=fwd)
        np.subtract(dtype(3), b, out=tmp)
        np.left_shift(tmp, dtype(2 * j), out=tmp)
        np.bitwise_or(rev, tmp, out=rev)
    kmer = np.minimum(fwd, rev)[pos].astype(np.uint64)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    seq_index = np.searchsorted(starts, pos, side="right") - 1
    return seq_index, pos - starts[seq_index], kmer


def canonical_kmers(seqs: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct canonical k-mers of each sequence (k-mers covering an N are skipped).

    Returns (seq_index int64, kmer uint64), sorted by sequence then k-mer."""
    seq_index, _, kmer = canonical_kmer_occurrences(seqs, k)
    if kmer.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    keys = (seq_index.astype(np.uint64) << np.uint64(2 * k)) | kmer
    keys.sort()
    keys = keys[np.concatenate([keys[:1] == keys[:1], keys[1:] != keys[:-1]])]
    mask = np.uint64((1 << (2 * k)) - 1)
    return (keys >> np.uint64(2 * k)).astype(np.int64), keys & mask


def canonical_spaced_kmers(seqs: Sequence[str], pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """Distinct canonical spaced seeds of each sequence: the bases at the 1s of `pattern` in every
    window of its span, 2-bit coded, min with the reverse complement's (a palindromic pattern makes
    this strand-free); windows covering an N are skipped. -> (seq_index int64, code uint64), sorted."""
    care = [i for i, c in enumerate(pattern) if c == "1"]
    span, k = len(pattern), len(care)
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    codes = BASE_CODE[np.frombuffer("N".join(seqs).encode("ascii", "replace"), dtype=np.uint8)]
    if codes.size < span:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    bad = np.concatenate([[0], np.cumsum(codes < 0)])
    pos = np.flatnonzero(bad[span:] == bad[:-span])
    # 32-bit codes (k <= 10: 20 bits) are faster to build and sort than kmer.py's 64-bit ones
    wide = len(seqs) >= 1 << (32 - 2 * k)
    dtype = np.uint64 if wide else np.uint32
    base = np.maximum(codes, 0).astype(dtype)
    comp = dtype(3) - base
    # codes of every window (valid or not) from contiguous slices, one run of adjacent 1s at a time;
    # then the N-free windows are gathered once (slices are views: no per-base gather)
    m = codes.size - span + 1
    runs, j = [], 0
    while j < k:
        start, length = care[j], 1
        while j + length < k and care[j + length] == start + length:
            length += 1
        runs.append((start, length, j))
        j += length
    fwd_all = np.zeros(m, dtype=dtype)
    rev_all = np.zeros(m, dtype=dtype)
    for start, length, first in runs:
        f = base[start : start + m].copy()
        r = comp[start : start + m].copy()
        for t in range(1, length):
            f <<= dtype(2)
            f |= base[start + t : start + t + m]
            r |= comp[start + t : start + t + m] << dtype(2 * t)
        fwd_all <<= dtype(2 * length)
        fwd_all |= f
        rev_all |= r << dtype(2 * first)
    fwd, rev = fwd_all[pos], rev_all[pos]
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    seq_index = np.searchsorted(starts, pos, side="right") - 1
    keys = (seq_index.astype(dtype) << dtype(2 * k)) | np.minimum(fwd, rev)
    keys.sort()  # sort + neighbour mask: np.unique's hash path is 4x slower here
    keys = keys[np.concatenate([keys[:1] == keys[:1], keys[1:] != keys[:-1]])]
    return (keys >> dtype(2 * k)).astype(np.int64), (keys & dtype((1 << (2 * k)) - 1)).astype(np.uint64)


#: the most care offsets (bases of a window that count) the compiled embedding takes
MAX_CARE = 32


def sketch_kernel():
    """The compiled embedding (`_sketch.c`), or None (`dnaesa.compiled.UNAVAILABLE` says why)."""
    return compiled.load(compiled.SKETCH)


def compiled_sketch(seqs: Sequence[str], out: np.ndarray, channels: list[tuple[list[int], int, int, float]]) -> bool:
    """Write the embeddings of `seqs` into `out` (C-contiguous float32 rows) by the compiled
    kernel, numpy's to the bit; False (`out` not to be trusted) where it cannot promise that (not
    built, a weight not a multiple of 0.5, a very large sum of squares). `channels`: (care
    offsets in the window, window span, sketch seed, weight), the contiguous k-mer first (offsets
    0..k-1, weight 1), then the spaced seeds."""
    if any(not care or len(care) > MAX_CARE or max(care) >= span or float(w) * 2 != round(float(w) * 2)
           for care, span, _, w in channels):
        return False
    lib = sketch_kernel()
    if lib is None or not seqs or not out.flags.c_contiguous or out.dtype != np.float32:
        return False
    data = np.frombuffer("".join(seqs).encode("ascii", "replace"), dtype=np.uint8)
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    starts = np.zeros(len(seqs), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    pointers = _channel_pointers(channels)
    flagged = np.zeros(len(seqs), dtype=np.uint8)
    failed = lib.dnaesa_sketch(data.ctypes.data, starts.ctypes.data, lengths.ctypes.data, len(seqs), out.shape[1],
                               len(channels), *pointers, out.ctypes.data, flagged.ctypes.data)
    return not failed and not flagged.any()


#: per channel set: the kernel's channel arrays (kept here, so that their addresses stay valid) and those addresses
_CHANNEL_ARRAYS: dict[tuple, tuple[tuple[np.ndarray, ...], tuple[int, ...]]] = {}


def _channel_pointers(channels: list[tuple[list[int], int, int, float]]) -> tuple[int, ...]:
    """The addresses of the kernel's channel arguments (care offsets, their counts, spans, salts,
    weights), made once per channel set: an encoder's channels never change, and one read's
    embedding (`Aligner.map`) would otherwise spend more on making them than on the sketch."""
    key = tuple((tuple(care), span, seed, float(w)) for care, span, seed, w in channels)
    made = _CHANNEL_ARRAYS.get(key)
    if made is None:
        care = np.zeros((len(channels), MAX_CARE), dtype=np.int64)
        for c, (offsets, _, _, _) in enumerate(channels):
            care[c, : len(offsets)] = offsets
        arrays = (care, np.array([len(c[0]) for c in channels], dtype=np.int64),
                  np.array([c[1] for c in channels], dtype=np.int64),
                  np.array([sketch_salt(c[2]) for c in channels], dtype=np.uint64),
                  np.array([c[3] for c in channels], dtype=np.float32))
        made = _CHANNEL_ARRAYS[key] = (arrays, tuple(a.ctypes.data for a in arrays))
    return made[1]


def sketch_salt(seed: int) -> int:
    """The value a k-mer code is xor-ed with before hashing, for the sketch of `seed`."""
    return (seed * 0x632BE59BD9B4E019 + 1) % (1 << 64)


def sketch_coordinates(kmers: np.ndarray, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Count-sketch coordinate (int64 in [0, dim)) and sign (float32 +-1) of each uint64 k-mer code."""
    salt = np.uint64(sketch_salt(seed))
    h = (kmers.astype(np.uint64) ^ salt) * _GOLDEN
    coord = (h >> np.uint64(64 - dim.bit_length() + 1)).astype(np.int64)
    sign = ((h >> np.uint64(20)) & np.uint64(1)).astype(np.float32) * 2 - 1
    return coord, sign


class KmerSketchEncoder(Encoder):
    """Count sketch of canonical k-mers (`--encoder kmer`); strand-symmetric."""

    name = "kmer"
    strand_symmetric = True

    def __init__(self, k: int = 8, dim: int = 4096, seed: int = 0, device: str = "cpu"):
        if not 4 <= k <= 28:
            raise ValueError(f"k must be in [4, 28], got {k}")
        if dim < 16 or dim & (dim - 1):
            raise ValueError(f"dim must be a power of two >= 16, got {dim}")
        self.k, self.dim, self.seed, self.device = k, dim, seed, device

    def identity(self) -> str:
        params = f"kmer-countsketch:k={self.k}:dim={self.dim}:seed={self.seed}:canonical:v2"
        return params + ":" + hashlib.sha1(params.encode()).hexdigest()[:8]

    def encode(self, seqs: Sequence[str], batch_size: int = 2048) -> np.ndarray:
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        channels = [(list(range(self.k)), self.k, self.seed, 1.0)]
        for lo in range(0, len(seqs), batch_size):
            chunk = list(seqs[lo : lo + batch_size])
            if compiled_sketch(chunk, out[lo : lo + len(chunk)], channels):
                continue
            seq_index, kmers = canonical_kmers(chunk, self.k)
            coord, sign = sketch_coordinates(kmers, self.dim, self.seed)
            emb = np.zeros(len(chunk) * self.dim, dtype=np.float32)
            np.add.at(emb, seq_index * self.dim + coord, sign)  # fast path of ufunc.at in numpy >= 1.25
            emb = emb.reshape(len(chunk), self.dim)
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            out[lo : lo + len(chunk)] = emb / np.maximum(norms, 1e-12)
        return out


class SketchModelEncoder(Encoder):
    """A saved `DnaKmerWeightModel` whose output is sketch channels only (no weight table, no
    context network): the 8-mer count sketch plus spaced-seed channels, each with its saved scale.

    It reads the same model directory (`config.json`, `model.safetensors`) and computes the same
    sum as `TransformerEncoder.from_pretrained`, in numpy, without importing torch or transformers
    (2-3 s of start-up per run). The sums are the same numbers (for the shipped model every summand
    is a multiple of 0.5, exact in float32 in any order); the final division by the norm can differ
    in the last bit, because torch's vectorised sqrt is not always correctly rounded (tests allow
    1e-6). So the identity differs from the transformer's (`sketch-model:` prefix) and an index is
    never shared between the two paths. With all scales 0 it is bit-identical to
    `KmerSketchEncoder`. `load_encoder` picks this class for sketch-only models and
    `TransformerEncoder` for the rest.
    """

    name = "sketch-model"
    strand_symmetric = True

    #: config values this fast path reproduces; any other model needs `TransformerEncoder`
    REQUIRES = {"use_table": False, "context_layers": -1, "model_type": "dnaesa-weighted-kmer-sketch"}
    #: config fields that change the embeddings, hashed by the identity (also `transformer._IDENTITY_KEYS`)
    IDENTITY_KEYS = ("model_type", "k", "dim", "sketch_seed", "use_table", "context_layers", "d_model", "n_heads",
                     "ff_dim", "stem_kernel", "stride", "attention_window", "spaced_seeds")

    def __init__(self, path, device: str = "cpu"):
        from safetensors.numpy import load_file

        self.path = Path(path)
        self.config = json.loads((self.path / "config.json").read_text())
        if not self.supports(self.config):
            raise ValueError(f"{path}: not a sketch-only model (needs {self.REQUIRES}); use TransformerEncoder")
        self.tensors = load_file(str(self.path / "model.safetensors"))
        self.k, self.dim, self.seed = int(self.config["k"]), int(self.config["dim"]), int(self.config["sketch_seed"])
        self.patterns = list(self.config.get("spaced_seeds") or [])
        scales = self.tensors.get("spaced_scale", np.zeros(0, np.float32))
        if len(scales) != len(self.patterns):
            raise ValueError(f"{path}: {len(self.patterns)} spaced seeds but {len(scales)} saved scales")
        self.scales = [np.float32(x) for x in scales]
        self.device = device
        self._identity: str | None = None

    @classmethod
    def supports(cls, config: dict) -> bool:
        return all(config.get(key, value) == value for key, value in cls.REQUIRES.items())

    def identity(self) -> str:
        if self._identity is None:
            h = hashlib.sha1(json.dumps({k: self.config.get(k) for k in self.IDENTITY_KEYS}, sort_keys=True).encode())
            for key, array in sorted(self.tensors.items()):
                h.update(key.encode())
                h.update(np.ascontiguousarray(array).tobytes())
            self._identity = f"sketch-model:k={self.k}:dim={self.dim}:{h.hexdigest()[:16]}"
        return self._identity

    def encode(self, seqs: Sequence[str], batch_size: int = 2048) -> np.ndarray:
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        channels = [(list(range(self.k)), self.k, self.seed, 1.0)] + [
            ([i for i, c in enumerate(pattern) if c == "1"], len(pattern), self.seed + 1 + j, scale)
            for j, (pattern, scale) in enumerate(zip(self.patterns, self.scales))]
        for lo in range(0, len(seqs), batch_size):
            chunk = list(seqs[lo : lo + batch_size])
            if compiled_sketch(chunk, out[lo : lo + len(chunk)], channels):
                continue
            emb = np.zeros(len(chunk) * self.dim, dtype=np.float32)
            seq_index, kmers = canonical_kmers(chunk, self.k)
            coord, sign = sketch_coordinates(kmers, self.dim, self.seed)
            np.add.at(emb, seq_index * self.dim + coord, sign)
            for j, (pattern, scale) in enumerate(zip(self.patterns, self.scales)):
                seq_index, codes = canonical_spaced_kmers(chunk, pattern)
                coord, sign = sketch_coordinates(codes, self.dim, self.seed + 1 + j)
                np.add.at(emb, seq_index * self.dim + coord, scale * sign)
            emb = emb.reshape(len(chunk), self.dim)
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            out[lo : lo + len(chunk)] = emb / np.maximum(norms, 1e-12)
        return out
