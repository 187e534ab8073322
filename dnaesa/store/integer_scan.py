"""The integer scan: exact search of a flat store whose vectors are scaled integer vectors.

The count-sketch encoders' vectors are integer vectors divided by their norm (every summand of the
shipped model is a multiple of 0.5). Such a vector is stored here as its smallest integer multiple
(int8, a quarter of float32's bytes) in blocks of 64 vectors, dimension-major, so that a query
reads only the rows of its non-zero coordinates (a 250 bp read's sketch has about 450 of 4,096; a
1,250 bp fragment's about 2,000): the scan does a tenth of the arithmetic of a dense product and
touches a quarter of the bytes.

Its scores are exact: a dot product of integers is a sum of integers, which float32 holds exactly
(under 2^24), so its order of summation does not matter; a vector's score is that sum times the
two inverse norms, and the top k are kept best first, ties to the lower id. So the compiled kernel
(`_scan.c`, built by `pip install` when a C compiler is there; AVX2 where the CPU has it) and the
numpy path that stands in for it without a compiler (float32 matrix products of the same integers)
return the same scores and ids to the bit.

Measured (2-core AMD EPYC, AVX2, 2026-12-03; benchmarks/RESULTS.md, "Tenth session"): 4,096 E. coli
250 bp reads against its 4,640 fragments, one thread: 134-192 us a query, against 441-536 for
FAISS's float32 product.

A store whose vectors are not all scaled integer vectors (a trained encoder's) keeps FAISS.

`rerank` scores chosen vectors only (a read's seed candidates, `seeds.py`) with the same sums, from a
second, row-major copy of the integers (n x dim bytes), where a vector's bytes are contiguous.
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Sequence

import numpy as np

from dnaesa import compiled as kernels
from dnaesa.store.codes import best_candidates, ranges

#: vectors a block: coordinate d of 64 vectors is 64 contiguous bytes
LANES = 64
#: largest multiple of a vector's smallest non-zero coordinate tried when recovering its integers
MAX_MULTIPLE = 8
#: how far from an integer a recovered coordinate may be (float32 rounding leaves ~1e-5)
INTEGER_TOLERANCE = 1e-3
#: integer sums stay exact in float32 below this
EXACT_LIMIT = 1 << 24
#: from the this-many-th search of one query on (`Aligner.map`), the scan keeps a second copy of the
#: vectors, dimension-major whole (n bytes a coordinate), which one query reads in sequential sweeps:
#: the blocks' scattered 64-byte rows leave it waiting on memory (about 0.9 ms a query on E. coli)
COLUMNS_AFTER = 8
#: rows converted at a time (recovering integers; the numpy path's products)
CHUNK = 2048
#: queries scored at a time on the numpy path (256 x 70,000 vectors of float64 scores: 143 MB)
NUMPY_QUERIES = 256

def kernel() -> ctypes.CDLL | None:
    """The compiled scan, or None (`dnaesa.compiled.UNAVAILABLE` says why)."""
    return kernels.load(kernels.SCAN)


def integer_rows(vectors: np.ndarray, compiled: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's smallest integer multiple within int8: (ints int8 (n, dim), 1 / their norms
    float64 (n,), ok bool (n,)). A row without one (not a scaled integer vector, or not finite) is
    left zero with ok False; an all-zero row is its own. The compiled kernel when there is one
    (`compiled`), else numpy: the same float32 operations, so the same integers."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    ints = np.zeros((n, dim), dtype=np.int8)
    inv = np.zeros(n, dtype=np.float64)
    lib = kernel() if compiled else None
    if lib is not None:
        ok = np.zeros(n, dtype=np.uint8)
        lib.dnaesa_integer_rows(x.ctypes.data, n, dim, MAX_MULTIPLE, INTEGER_TOLERANCE, ints.ctypes.data,
                                inv.ctypes.data, ok.ctypes.data)
        return ints, inv, ok.astype(bool)
    flat = np.flatnonzero(x != 0)  # NaN too
    rows = flat // dim
    values = x.reshape(-1)[flat]
    counts = np.bincount(rows, minlength=n)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    has = counts > 0
    smallest = np.full(n, np.inf, dtype=np.float32)
    smallest[has] = np.minimum.reduceat(np.abs(values), starts[has])  # NaN for a row holding NaN
    factor = np.zeros(n, dtype=np.float32)
    todo = has & np.isfinite(smallest)
    for multiple in range(1, MAX_MULTIPLE + 1):
        if not todo.any():
            break
        trial = np.where(todo, np.float32(multiple) / np.where(todo, smallest, np.float32(1)), np.float32(0))
        scaled = values * trial[rows]
        rounded = np.rint(scaled)
        with np.errstate(invalid="ignore"):  # inf - inf in a row holding inf: that row fails
            off = ~(np.abs(scaled - rounded) <= np.float32(INTEGER_TOLERANCE)) | (np.abs(rounded) > 127)
        good = todo & ~(np.bincount(rows[off], minlength=n) > 0)
        factor[good] = trial[good]
        todo &= ~good
    ok = ~has | (factor > 0)
    keep = ok[rows]
    values = np.rint(values[keep] * factor[rows[keep]]).astype(np.int8)
    ints.reshape(-1)[flat[keep]] = values
    sums = np.bincount(rows[keep], weights=values.astype(np.float64) ** 2, minlength=n)
    np.divide(1.0, np.sqrt(sums), out=inv, where=sums > 0)
    return ints, inv, ok


def _sparse(ints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer rows as CSR: (indptr int64, coordinates int32, values float32)."""
    flat = np.flatnonzero(ints)
    indptr = np.zeros(len(ints) + 1, dtype=np.int64)
    np.cumsum(np.bincount(flat // ints.shape[1], minlength=len(ints)), out=indptr[1:])
    return indptr, (flat % ints.shape[1]).astype(np.int32), ints.reshape(-1)[flat].astype(np.float32)


class IntegerScan:
    """A flat store's vectors as int8 blocks; `search` as `VectorStore.search`, exactly."""

    def __init__(self, blocks: np.ndarray, rows: np.ndarray, inv_norms: np.ndarray, n: int, largest: int = 127):
        self.blocks, self.inv_norms, self.n = blocks, inv_norms, n
        #: the same integers row-major (n x dim), for `rerank`: a chosen vector's bytes are
        #: contiguous there (in the blocks they are 64 bytes apart, a cache line each: 7x slower)
        self.rows = rows
        #: the largest magnitude of a stored integer: a query's sums stay exact while
        #: sum(|query|) * largest < 2^24 (every read does: at most 4,096 x a few tens)
        self.largest = max(largest, 1)
        #: the dimension-major copy for single queries (`COLUMNS_AFTER`), and the count toward it
        self.columns: np.ndarray | None = None
        self._single = 0

    @classmethod
    def from_vectors(cls, parts, dim: int, n: int) -> "IntegerScan | None":
        """From float32 row arrays (`parts`, n rows in all), or None when a row is not a scaled
        integer vector."""
        n_blocks = (n + LANES - 1) // LANES
        blocks = np.zeros((n_blocks, dim, LANES), dtype=np.int8)
        rows = np.empty((n, dim), dtype=np.int8)
        inv = np.zeros(n, dtype=np.float64)
        row = largest = 0
        for part in parts:
            for lo in range(0, len(part), CHUNK):
                chunk = part[lo : lo + CHUNK]
                ints, inv[row : row + len(chunk)], ok = integer_rows(chunk)
                if not ok.all():
                    return None
                largest = max(largest, int(np.abs(ints).max(initial=0)))
                rows[row : row + len(ints)] = ints
                ids = np.arange(row, row + len(ints))
                blocks[ids // LANES, :, ids % LANES] = ints  # 3x faster than a transposing copy
                row += len(ints)
        return cls(blocks, rows, inv, n, largest)

    #: the arrays a saved scan keeps, in this order (`save`, `load`)
    SAVED = ("rows", "blocks", "inv_norms")

    def save(self, paths: Sequence[Path]) -> None:
        """Write the row-major integers, the blocks and the inverse norms to `paths` (.npy), in
        `SAVED` order; the next run maps them (`load`) instead of reading and converting the
        float32 shards (at 70 Mb: 2-3 s and 1.2 GB of memory less)."""
        for path, name in zip(paths, self.SAVED):
            np.save(path, getattr(self, name))

    @classmethod
    def load(cls, paths: Sequence[Path], n: int, dim: int, largest: int) -> "IntegerScan":
        """The scan `save` wrote, memory-mapped (worker processes share the pages); ValueError when
        the files do not fit the store (`n` vectors of `dim`)."""
        rows, blocks, inv = (np.load(path, mmap_mode="r") for path in paths)
        n_blocks = (n + LANES - 1) // LANES
        if rows.shape != (n, dim) or rows.dtype != np.int8 or blocks.shape != (n_blocks, dim, LANES) or \
                blocks.dtype != np.int8 or inv.shape != (n,) or inv.dtype != np.float64:
            raise ValueError(f"{paths[0]}: the saved integer scan does not fit the store ({n} vectors of {dim})")
        return cls(blocks, rows, inv, n, largest)

    def search(self, queries: np.ndarray, k: int, compiled: bool = True, simd: bool = True
               ) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-`k` (k <= n) of each query: (scores float32, ids int64), best first, ties to the
        lower id; None when a query is not a scaled integer vector (or too large to sum exactly).
        `compiled=False`: the numpy path (also taken without the compiled kernel); `simd=False`:
        the compiled kernel's generic loop even on an AVX2 CPU (tests compare them)."""
        ints, inv_q = self._integers(queries, compiled)
        if ints is None:
            return None
        lib = kernel() if compiled else None
        if lib is None:
            scores, ids = self._search_numpy(ints, k)
        else:
            indptr, cols, values = _sparse(ints)
            if len(ints) == 1 and self._columns_ready():
                scores, ids = self._search_columns(lib, cols, values, k, simd)
            else:
                scores, ids = self._search_compiled(lib, indptr, cols, values, k, simd)
        return (scores * inv_q[:, None]).astype(np.float32), ids

    def rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int, compiled: bool = True
               ) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-`k` of each query among its `candidates` (int64 ids (n, C), each at most once a row,
        -1 pads), scored as `search` scores them (the same float32 numbers; a seed table's picks,
        `align.candidates`): (scores float32 (n, k), ids int64 (n, k)), best first, ties to the
        lower id, -inf / -1 pads; None as `search`. Only the candidates' bytes are read."""
        ints, inv_q = self._integers(queries, compiled)
        if ints is None:
            return None
        cand = np.sort(candidates, axis=1)  # ids ascending: ties to the lower id
        valid = cand >= 0
        reads, slots = np.nonzero(valid)
        reads = np.ascontiguousarray(reads, dtype=np.int64)  # nonzero's are strided views
        ids = cand[reads, slots]
        indptr, cols, values = _sparse(ints)
        lib = kernel() if compiled else None
        if lib is not None:
            dots = np.empty(len(ids), dtype=np.float64)
            lib.dnaesa_scan_pairs(self.rows.ctypes.data, self.rows.shape[1], self.inv_norms.ctypes.data,
                                  indptr.ctypes.data, cols.ctypes.data, values.ctypes.data, len(ids),
                                  reads.ctypes.data, ids.ctypes.data, dots.ctypes.data)
        else:  # every (pair, query coordinate) product at once: sums of integers, exact in float64
            nnz = np.diff(indptr)[reads]
            pair = np.repeat(np.arange(len(ids)), nnz)
            at = ranges(indptr[reads], nnz)
            products = values[at] * self.rows[ids[pair], cols[at]]
            dots = np.bincount(pair, weights=products, minlength=len(ids)) * self.inv_norms[ids]
        scores = np.full(cand.shape, -np.inf, dtype=np.float32)
        scores[reads, slots] = (dots * inv_q[reads]).astype(np.float32)
        return best_candidates(scores, cand, valid, k)

    def _integers(self, queries: np.ndarray, compiled: bool) -> tuple[np.ndarray | None, np.ndarray]:
        """The queries as integer rows and their inverse norms (`integer_rows`); (None, _) when one
        is not a scaled integer vector, or too large to sum exactly."""
        ints, inv_q, ok = integer_rows(queries, compiled)
        if not ok.all() or (np.abs(ints).sum(axis=1, dtype=np.int64) * self.largest >= EXACT_LIMIT).any():
            return None, inv_q
        return ints, inv_q

    def _search_compiled(self, lib, indptr, cols, val, k: int, simd: bool) -> tuple[np.ndarray, np.ndarray]:
        nq = len(indptr) - 1
        heap_s, heap_i = np.empty((nq, k), np.float64), np.empty((nq, k), np.int64)
        count = np.empty(nq, np.int64)
        out_s, out_i = np.empty((nq, k), np.float64), np.empty((nq, k), np.int64)
        lib.dnaesa_scan_topk(self.blocks.ctypes.data, len(self.blocks), self.blocks.shape[1], self.n,
                             self.inv_norms.ctypes.data, indptr.ctypes.data, cols.ctypes.data, val.ctypes.data, nq, k,
                             heap_s.ctypes.data, heap_i.ctypes.data, count.ctypes.data, out_s.ctypes.data,
                             out_i.ctypes.data, int(simd))
        return out_s, out_i

    def _columns_ready(self) -> bool:
        if self.columns is None:
            self._single += 1
            if self._single >= COLUMNS_AFTER:
                dim = self.blocks.shape[1]
                self.columns = np.ascontiguousarray(self.blocks.transpose(1, 0, 2).reshape(dim, -1)[:, : self.n])
        return self.columns is not None

    def _search_columns(self, lib, cols, val, k: int, simd: bool) -> tuple[np.ndarray, np.ndarray]:
        acc = np.empty(self.n, np.float32)
        heap_s, heap_i = np.empty(k, np.float64), np.empty(k, np.int64)
        out_s, out_i = np.empty((1, k), np.float64), np.empty((1, k), np.int64)
        lib.dnaesa_scan_columns(self.columns.ctypes.data, self.n, self.inv_norms.ctypes.data, cols.ctypes.data,
                                val.ctypes.data, len(val), k, acc.ctypes.data, heap_s.ctypes.data, heap_i.ctypes.data,
                                out_s.ctypes.data, out_i.ctypes.data, int(simd))
        return out_s, out_i

    def _search_numpy(self, ints: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The same scores by float32 matrix products of the integers (exact), the same ties;
        `NUMPY_QUERIES` queries at a time (their scores against every vector are held)."""
        dim, nq = self.blocks.shape[1], len(ints)
        q = ints.astype(np.float32)
        out_s, out_i = np.empty((nq, k), np.float64), np.empty((nq, k), np.int64)
        step = CHUNK // LANES
        for first_q in range(0, nq, NUMPY_QUERIES):
            part = q[first_q : first_q + NUMPY_QUERIES]
            scores = np.empty((len(part), self.n), dtype=np.float64)
            for lo in range(0, len(self.blocks), step):
                vectors = self.blocks[lo : lo + step].transpose(0, 2, 1).reshape(-1, dim).astype(np.float32)
                first, last = lo * LANES, min((lo + step) * LANES, self.n)
                scores[:, first:last] = (part @ vectors[: last - first].T).astype(np.float64) * self.inv_norms[first:last]
            kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
            for r, row in enumerate(scores):
                best = np.flatnonzero(row >= kth[r])  # ascending ids
                best = best[np.argsort(-row[best], kind="stable")[:k]]
                out_s[first_q + r], out_i[first_q + r] = row[best], best
        return out_s, out_i
