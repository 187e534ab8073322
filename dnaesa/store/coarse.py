"""The coarse tier of a `tiered` store: compact vectors that pick candidates for the exact tier.

A `tiered` index holds two vectors per fragment: the default encoder's 4,096-dim sketch as `int4`
codes (the exact tier, `VectorStore`) and a compact encoder's D-dim vector (`compact256`, D = 256)
as int8 codes on one scale shared by every vector (this tier). A read is searched exhaustively in
the coarse tier for its top C fragments (`MapOptions.coarse_candidates`), and only those are scored
by the exact tier (`VectorStore.rerank`), so the exhaustive pass costs D instead of 4,096
operations a fragment.

Why one shared scale: every stored vector has unit norm, so `round(v * COARSE_SCALE)` keeps the
integer products proportional to the cosines and the top C is taken on the int32 products as they
are, with no per-vector norm and no conversion to float (at D = 256 that conversion and the top-k
cost more than the product itself).

Search (`CoarseTier.search`): the codes are multiplied in blocks of `BLOCK` fragments that stay in
cache (`torch._int_mm`, int8 x int8 -> int32, on CPUs with int8 dot-product instructions; float32
products of the same integers elsewhere, exact at these sizes: see `codes.py`), and each block's
scores are absorbed into a running
top C per read by a compiled kernel (`kernels._absorb`, numba): it keeps the scores above the read's
current threshold (the C-th best so far) in a buffer and compacts the buffer when it fills. On an
AVX512-VNNI core that is about 1.6 ns a fragment for the product and 0.4 for the selection, against
6 for the product plus `torch.topk` over whole shards; on an AVX2-only core (float32 products,
2026-12-02, loaded machine) about 11 and 3.5 ns. Without numba (or on CUDA, where the codes
are float32 products: exact below 2**24) each shard's top C is taken by a stable sort and merged.
Both are exact: the same ids, ties to the lower id.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from dnaesa.errors import IndexDirError
from dnaesa.store.codes import _dots_by_shard, float32_products

log = logging.getLogger("dnaesa")

#: unit vectors are stored as round(v * COARSE_SCALE) in int8 (compact256: |v| <= 0.29 seen, so
#: nothing is clipped below 0.4; the step, 1 / 320, is 5% of a typical coordinate)
COARSE_SCALE = 320.0
#: fragments multiplied at a time: a block of scores (queries x BLOCK int32) stays in cache
BLOCK = 2048
#: queries searched at a time
QUERY_CHUNK = 512
SHARD_PREFIX = "coarse"

#: the compiled kernels (`kernels.py`) are imported on first use: importing numba costs 0.5 s
HAVE_NUMBA = importlib.util.find_spec("numba") is not None


def quantize_coarse(vectors: np.ndarray) -> tuple[np.ndarray, int]:
    """float32 unit rows -> (int8 codes, number of coordinates clipped to [-127, 127])."""
    v = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(v).all():
        raise ValueError("the coarse encoder returned NaN or infinite vectors: they cannot be stored")
    q = np.rint(v * COARSE_SCALE)
    clipped = int((np.abs(q) > 127).sum())
    return np.clip(q, -127, 127).astype(np.int8), clipped


class CoarseTier:
    """int8 codes of D-dim unit vectors, ids 0..n-1 in insertion order, in shard files of
    `shard_size` vectors (`coarse000.npy`, ...), memory-mapped read-only once loaded."""

    def __init__(self, dim: int, shard_size: int):
        self.dim, self.shard_size = dim, shard_size
        self.shards: list[np.ndarray] = []
        self.clipped = 0
        self.use_numba = HAVE_NUMBA
        self.device = "cpu"
        self._tensors: list | None = None
        #: a FAISS index of the same vectors that narrows the search (`sieve.py`), or None
        self.sieve = None
        self._typed = None  # the shards as a numba typed list, made on first use

    @property
    def ntotal(self) -> int:
        return sum(len(s) for s in self.shards)

    def add(self, vectors: np.ndarray) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected coarse vectors of shape (n, {self.dim}), got {vectors.shape}")
        codes, clipped = quantize_coarse(vectors)
        self.clipped += clipped
        done = 0
        while done < len(codes):
            if not self.shards or len(self.shards[-1]) >= self.shard_size:
                self.shards.append(np.zeros((0, self.dim), dtype=np.int8))
            room = self.shard_size - len(self.shards[-1])
            self.shards[-1] = np.concatenate([self.shards[-1], codes[done : done + room]])
            done += room
        self._tensors = self._typed = None

    def spill(self, directory: str | Path, first: int, keep_last: bool = True) -> list[str]:
        """Write the full shards (all, without `keep_last`) as coarse{first:03d}.npy, ...; drop them
        from memory; returns the names."""
        ready = self.shards[:-1] if keep_last else self.shards
        names = []
        for n, shard in enumerate(ready, start=first):
            name = f"{SHARD_PREFIX}{n:03d}.npy"
            np.save(Path(directory) / name, shard)
            names.append(name)
        self.shards = self.shards[len(ready):]
        self._tensors = self._typed = None
        return names

    @classmethod
    def load(cls, directory: str | Path, names: list[str], dim: int, shard_size: int, ntotal: int) -> "CoarseTier":
        """The tier saved in `directory` as the files `names` (absolute paths are taken as they are;
        files already checked against the manifest by the caller)."""
        tier = cls(dim, shard_size)
        for name in names:
            path = Path(directory) / name
            try:
                shard = np.load(path, mmap_mode="c")
            except (OSError, ValueError) as err:
                raise IndexDirError(f"{path}: not a readable coarse shard ({err}); rebuild the index with "
                                    "--rebuild-index") from err
            if shard.dtype != np.int8 or shard.ndim != 2 or shard.shape[1] != dim:
                raise IndexDirError(f"{path}: holds {shard.dtype} {shard.shape}, not int8 (n, {dim}); rebuild the index")
            tier.shards.append(shard)
        if tier.ntotal != ntotal:
            raise IndexDirError(f"{directory}: the coarse shards hold {tier.ntotal} vectors, the manifest says {ntotal}; "
                                "rebuild the index with --rebuild-index")
        return tier

    def to(self, device: str) -> "CoarseTier":
        self.device, self._tensors = device, None
        return self

    def _prepared(self) -> list:
        import torch

        if self._tensors is None:
            if self.device == "cpu":
                self._tensors = [torch.from_numpy(np.asarray(s)) for s in self.shards]
            else:
                self._tensors = [torch.from_numpy(np.asarray(s)).to(self.device, torch.float32) for s in self.shards]
        return self._tensors

    def search(self, queries: np.ndarray, c: int, sieve: int = 0) -> np.ndarray:
        """The ids (int64 (n, c), best first, ties to the lower id; -1 pads when the tier holds
        fewer) of each query's top-c integer products. With `sieve` = K > 0 and a sieve loaded
        (CPU only), among the sieve's K picks (`sieve.py`) instead of among all vectors."""
        n_q = len(queries)
        ids = np.full((n_q, c), -1, dtype=np.int64)
        keep = min(c, self.ntotal)
        if keep == 0 or n_q == 0:
            return ids
        codes, _ = quantize_coarse(queries)
        picks = max(sieve, keep)
        if sieve and self.sieve is not None and self.device == "cpu" and picks < self.ntotal:
            for lo in range(0, n_q, QUERY_CHUNK):  # a chunk's picks and scores: 512 x K x 24 bytes
                ids[lo : lo + QUERY_CHUNK, :keep] = self._search_sieved(queries[lo : lo + QUERY_CHUNK],
                                                                       codes[lo : lo + QUERY_CHUNK], keep, picks)
            return ids
        import torch  # not before: importing it costs 1.5 s, and the sieved search needs none

        f32 = self.device == "cpu" and float32_products(127, 127, self.dim)
        for lo in range(0, n_q, QUERY_CHUNK):
            q = torch.from_numpy(codes[lo : lo + QUERY_CHUNK])
            q = q.float() if f32 else q
            if self.device == "cpu" and self.use_numba:
                ids[lo : lo + len(q), :keep] = self._search_numba(q, keep)
            else:
                ids[lo : lo + len(q), :keep] = self._search_torch(q, keep)
        return ids

    def _search_sieved(self, queries: np.ndarray, codes: np.ndarray, keep: int, k: int) -> np.ndarray:
        """The exact top `keep` (int8 products, ties to the lower id) among the sieve's `k` picks."""
        _, picked = self.sieve.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        if self.use_numba and self.ntotal < 1 << 32 and self.dim * 127 * 127 < 1 << 24:  # one compiled pass
            from dnaesa.store import kernels

            out = np.full((len(picked), keep), -1, dtype=np.int64)
            kernels._sieve_top(codes, self._typed_shards(), self.shard_size, picked, keep, out)
            return out
        picked = np.sort(picked, axis=1)  # ids ascending (-1 pads first): a stable sort keeps ties to the lower id
        dots, _ = _dots_by_shard(codes, self.shards, "int8", self.dim, self.shard_size, picked)
        pad = -(1 << 40)  # below any product (|score| <= 127 * 127 * D)
        scores = np.where(picked >= 0, dots.reshape(picked.shape), pad)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :keep]
        return np.where(np.take_along_axis(scores, order, 1) > pad, np.take_along_axis(picked, order, 1), -1)

    def _typed_shards(self):
        """The shards as a numba typed list (made once; the kernels take it)."""
        from numba.typed import List

        if self._typed is None:
            typed = List()
            for shard in self.shards:
                typed.append(np.asarray(shard))
            self._typed = typed
        return self._typed

    def _search_numba(self, q, keep: int) -> np.ndarray:
        import torch

        from dnaesa.store import kernels

        n_q = len(q)
        cap = keep + 2 * BLOCK
        buf_s = np.empty((n_q, cap), dtype=np.int32)
        buf_i = np.empty((n_q, cap), dtype=np.int64)
        cnt = np.zeros(n_q, dtype=np.int64)
        thr = np.full(n_q, np.iinfo(np.int32).min, dtype=np.int32)
        block = torch.empty((n_q, BLOCK), dtype=torch.int32)
        base = 0
        for shard in self._prepared():
            for lo in range(0, len(shard), BLOCK):
                part = shard[lo : lo + BLOCK]
                out = _int_mm(q, part, block if len(part) == BLOCK else None)
                kernels._absorb(out.numpy(), base + lo, keep, cap - BLOCK, thr, buf_s, buf_i, cnt)
            base += len(shard)
        out_i = np.full((n_q, keep), -1, dtype=np.int64)
        kernels._finish(buf_s, buf_i, cnt, keep, out_i)
        return out_i

    def _search_torch(self, q, keep: int) -> np.ndarray:
        """Each shard's top `keep` by torch.topk, merged; exact, ties to the lower id."""
        import torch

        device = self.device
        q = q.to(device, torch.float32) if device != "cpu" else q
        best_s = best_i = None
        base = 0
        for shard in self._prepared():
            n = len(shard)
            if n == 0:
                continue
            scores = (q @ shard.T).float() if device != "cpu" else _int_mm(q, shard).to(torch.int64)
            ids = torch.arange(base, base + n, device=scores.device).expand(len(q), n)
            if best_s is not None:
                scores, ids = torch.cat([best_s, scores], 1), torch.cat([best_i, ids], 1)
            # ids ascend along each row, so a stable sort by score keeps ties to the lower id
            order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :keep]
            best_s, best_i = torch.gather(scores, 1, order), torch.gather(ids, 1, order)
            base += n
        return best_i.cpu().numpy()


def _int_mm(q, part, out=None):
    """int8 (n, D) x int8 (m, D)^T -> int32 (into `out` when given). Older torch releases refuse
    some small shapes on CPU; those are computed in int32 instead (the same integers). A float32
    `q` (the codes as floats, on CPUs without int8 dot-product instructions) is multiplied in
    float32, exact for these codes (|sum| <= 127 * 127 * D < 2**24 up to D = 1,040)."""
    import torch

    if q.dtype == torch.float32:
        scores = q @ part.T.float()
        return out.copy_(scores) if out is not None else scores.to(torch.int32)
    try:
        return torch._int_mm(q, part.T, out=out) if out is not None else torch._int_mm(q, part.T)
    except RuntimeError:
        return q.to(torch.int32) @ part.to(torch.int32).T
