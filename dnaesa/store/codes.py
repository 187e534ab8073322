"""Compact integer codes of unit vectors (store kinds `int8` and `int4`) and exact search over them.

A vector is stored as small signed integers `q` with `v ~ q / |q|`: no scale is stored, since every
stored vector has unit norm, so a 4,096-dim vector takes 4,096 bytes (`int8`) or 2,048 (`int4`,
two codes a byte). Each vector's quantisation step is its own:

- on a grid: when every coordinate is a whole multiple of the vector's smallest non-zero
  magnitude, or of a half, third or quarter of it (count sketches are: the default encoder's
  coordinates are sums of +-1 and +-1.5, so multiples of 0.5 before normalising), the step is that
  grid's and the codes are the exact
  integers, clipped to the code range in the few coordinates that exceed it (`int4`: [-8, 7]);
- otherwise (a trained encoder's floats): the step is `max |v| / 7` (`int4`) or `/ 127` (`int8`),
  rounded to nearest.

`int4` packs coordinate j in the low nibble of byte j and coordinate j + h in the high nibble
(h = ceil(dim / 2)), both two's complement, so unpacking is two shifts and no interleave.

Search (`search_code_shards`) takes one shard at a time and merges each shard's top k into a
running top k, so a shard may be a read-only numpy memmap and only one shard's unpacked copy is in
memory. On CPU the queries are coded to int8 the same way (a sketch read is on its grid: exact) and
scores are exact integer matrix products, then `/ (|q_read| |q_fragment|)`: `torch._int_mm` (int32
sums) on CPUs with int8 dot-product instructions (AVX512-VNNI, AVX-VNNI, AMX: 420 GOPS a core on
an AVX512-VNNI EPYC, 2.3x its bfloat16 rate), else float32 products of the codes unpacked
`F32_BLOCK` rows at a time (on an AVX2-only EPYC `_int_mm` ran at 3.6 GOPS, float32 at 49), which
are the same numbers: every partial sum is an integer below 2**24 (`exact_in_float32` checks the
bound, else `_int_mm` is used). On CUDA the codes are unpacked to float16 (exact for these integers)
and multiplied by the float queries.
"""
from __future__ import annotations

import importlib.util

import numpy as np

#: store kind -> (largest code magnitude used by scaled rounding, smallest and largest code)
CODE_KINDS = {"int8": (127, -127, 127), "int4": (7, -8, 7)}
#: a vector is on a grid when its coordinates are whole multiples of its smallest magnitude / one of these
GRID_DIVISORS = (1, 2, 3, 4)
#: queries searched at a time: the score block is this x shard size
QUERY_CHUNK = 4096
#: a re-rank's prefilter scores the coordinates in the first 1 / PREFIX_PART of each row's bytes
#: (int4 at 4,096 dims: 256 bytes, 512 coordinates)
PREFIX_PART = 8
#: float32 products of integers are exact while every partial sum stays below this
F32_EXACT = 2**24
#: shard rows unpacked to float32 at a time (64 MB at 4,096 dims) when products are float32
F32_BLOCK = 4096


def code_width(kind: str, dim: int) -> int:
    """Bytes per vector."""
    return dim if kind == "int8" else (dim + 1) // 2


def prefix_columns(dim: int) -> np.ndarray:
    """The coordinates held in the first 1 / `PREFIX_PART` of an int4 row's bytes (the low and high
    nibbles of its first bytes), in the order an int4 row of `len` of them packs them: a `lean`
    index's stored tier (`vector_store.PrefixStore`) is exactly those bytes."""
    h = code_width("int4", dim)
    w = max(1, h // PREFIX_PART)
    return np.r_[0:w, h : min(h + w, dim)]


def quantize(vectors: np.ndarray, kind: str) -> tuple[np.ndarray, int]:
    """float32 (n, dim) -> (uint8 codes (n, code_width), number of clipped coordinates).

    Raises ValueError when a vector holds NaN or infinity."""
    v = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(v).all():
        bad = int(np.flatnonzero(~np.isfinite(v).all(axis=1))[0])
        raise ValueError(f"vector {bad} holds NaN or infinity: the encoder output cannot be stored")
    scaled_max, lo, hi = CODE_KINDS[kind]
    mag = np.abs(v)
    smallest = np.where(mag > 0, mag, np.inf).min(axis=1, initial=np.inf)
    smallest = np.where(np.isfinite(smallest), smallest, 1.0)[:, None]
    step = np.maximum(mag.max(axis=1, keepdims=True), 1e-30) / scaled_max  # off the grid
    todo = np.arange(len(v))
    for divisor in GRID_DIVISORS:  # the grid step may be a fraction of the smallest magnitude (1 and 1.5 -> 0.5)
        ratio = v[todo] * (divisor / smallest[todo])
        on_grid = (np.abs(ratio - np.round(ratio)) <= 1e-3).all(axis=1)
        step[todo[on_grid]] = smallest[todo[on_grid]] / divisor
        todo = todo[~on_grid]
    q = np.round(v / step)
    clipped = int(((q < lo) | (q > hi)).sum())
    q = np.clip(q, lo, hi).astype(np.int8)
    if kind == "int8":
        return q.view(np.uint8), clipped
    h = (v.shape[1] + 1) // 2
    if v.shape[1] % 2:
        q = np.pad(q, ((0, 0), (0, 1)))
    packed = (q[:, :h].view(np.uint8) & 0x0F) | (q[:, h:].view(np.uint8) << 4)
    return packed.astype(np.uint8), clipped


def unpack(codes, kind: str, dim: int, out):
    """uint8 codes (torch, (n, width)) -> `out[:n, :dim]` (torch float tensor) = the integers."""
    import torch

    signed = codes.view(torch.int8)
    n = codes.shape[0]
    if kind == "int8":
        out[:n] = signed
        return out[:n]
    h = codes.shape[1]
    out[:n, :h] = torch.bitwise_right_shift(torch.bitwise_left_shift(signed, 4), 4)
    out[:n, h : dim] = torch.bitwise_right_shift(signed, 4)[:, : dim - h]
    return out[:n, :dim]


def code_norms(codes: np.ndarray, kind: str, dim: int, chunk: int = 8192) -> np.ndarray:
    """|q| of each stored vector (float32), 0 for an all-zero one."""
    out = np.empty(len(codes), dtype=np.float32)
    for lo in range(0, len(codes), chunk):
        c = unpack_rows(codes[lo : lo + chunk], kind, dim)
        out[lo : lo + len(c)] = np.sqrt(np.square(c, dtype=np.int32).sum(axis=1, dtype=np.int64))
    return out


def float32_products(q_max: int, code_max: int, dim: int) -> bool:
    """Whether CPU search should take float32 products of integer codes rather than
    `torch._int_mm`: on a CPU without int8 dot-product instructions (`runtime.cpu_has_fast_int8`),
    when they are exact: every partial sum of |query code| <= q_max times |stored code| <= code_max
    over `dim` coordinates stays below 2**24."""
    from dnaesa.runtime import cpu_has_fast_int8

    return not cpu_has_fast_int8() and q_max * code_max * dim < F32_EXACT


def _largest_code(q_codes: np.ndarray) -> int:
    return int(np.abs(q_codes.view(np.int8).astype(np.int16)).max(initial=0))


def exact_in_float32(queries: np.ndarray, kind: str, dim: int) -> bool:
    """`float32_products` for these float queries, coded to int8, against a store of `kind`."""
    return len(queries) > 0 and float32_products(_largest_code(quantize(queries, "int8")[0]), -CODE_KINDS[kind][1], dim)


def search_code_shards(queries: np.ndarray, shards: list, inv_norms: list, kind: str, dim: int, k: int,
                       device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Top-k of `queries` (float32 (n, dim)) over code shards searched one at a time.

    `shards[i]` is a torch uint8 tensor (n_i, width) on `device` (on CPU it may wrap a memmap),
    `inv_norms[i]` float32 torch (n_i,) on `device`. Returns (scores float32 (n, k), ids int64);
    ids count across shards in order; ties keep the lower id."""
    import torch

    n_q = len(queries)
    best_s = torch.full((n_q, k), -torch.inf, dtype=torch.float32, device=device)
    best_i = torch.full((n_q, k), -1, dtype=torch.int64, device=device)
    codes = quantize(queries, "int8")[0] if device == "cpu" else None
    f32 = codes is not None and float32_products(_largest_code(codes), -CODE_KINDS[kind][1], dim)
    block = F32_BLOCK if f32 else max((len(s) for s in shards), default=0)
    if device == "cpu":
        q_codes = torch.from_numpy(codes.view(np.int8))
        q_codes = q_codes.float() if f32 else q_codes
        q_scale = torch.from_numpy(1.0 / np.maximum(code_norms(codes, "int8", dim), 1e-30))[:, None]
        buffer = torch.empty((block, dim), dtype=torch.float32 if f32 else torch.int8) if block else None
    else:
        q_codes = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(device, torch.float16)
        q_scale = torch.ones((n_q, 1), device=device)
        buffer = torch.empty((block, dim), dtype=torch.float16, device=device) if block else None
    offset = 0
    for shard, shard_inv in zip(shards, inv_norms):
        for first in range(0, len(shard), block or 1):  # a float32 copy is made F32_BLOCK rows at a time
            codes, inv = shard[first : first + block], shard_inv[first : first + block]
            n = len(codes)
            matrix = unpack(codes, kind, dim, buffer)
            for lo in range(0, n_q, QUERY_CHUNK):
                part = q_codes[lo : lo + QUERY_CHUNK]
                scores = (torch._int_mm(part, matrix.T) if matrix.dtype == torch.int8 else part @ matrix.T).float()
                scores *= inv
                scores *= q_scale[lo : lo + QUERY_CHUNK]
                s, i = torch.topk(scores, min(k, n), dim=1, sorted=True)
                merged_s = torch.cat([best_s[lo : lo + QUERY_CHUNK], s], dim=1)
                merged_i = torch.cat([best_i[lo : lo + QUERY_CHUNK], i + offset], dim=1)
                # stable sort by score: earlier shards (lower ids) first among equals
                order = torch.sort(merged_s, dim=1, descending=True, stable=True).indices[:, :k]
                best_s[lo : lo + QUERY_CHUNK] = torch.gather(merged_s, 1, order)
                best_i[lo : lo + QUERY_CHUNK] = torch.gather(merged_i, 1, order)
            offset += n
    return best_s.cpu().numpy(), best_i.cpu().numpy()


def unpack_rows(codes: np.ndarray, kind: str, dim: int) -> np.ndarray:
    """uint8 codes (n, width) -> int8 integers (n, dim), in numpy."""
    c = np.asarray(codes).view(np.int8)
    if kind == "int8":
        return c
    return np.concatenate([(c << 4) >> 4, c >> 4], axis=1)[:, :dim]


#: the compiled kernel (`kernels.py`) is imported on first use: importing numba costs 0.5 s
HAVE_NUMBA = importlib.util.find_spec("numba") is not None


def _shard_dots(q_int: np.ndarray, shard, kind: str, dim: int, rows: np.ndarray, reads: np.ndarray, slots: np.ndarray,
                dots: np.ndarray, norms: np.ndarray, width: int | None = None) -> None:
    """dots[slots] = q_int[reads] . shard[rows] and norms[slots] = |shard[rows]|^2 (int64), over
    the coordinates held in each row's first `width` bytes (all by default)."""
    h = shard.shape[1]
    width = h if width is None else min(width, h)
    if kind == "int4" and HAVE_NUMBA:
        q = q_int if dim == 2 * h else np.pad(q_int, ((0, 0), (0, 2 * h - dim)))
        from dnaesa.store import kernels

        kernels._dots_int4(q, np.asarray(shard), rows, reads, slots, dots, norms, width)
        return
    if kind == "int8" and HAVE_NUMBA and width == h:
        from dnaesa.store import kernels

        kernels._dots_int8(q_int, np.asarray(shard).view(np.int8), rows, reads, slots, dots, norms)
        return
    cols = np.arange(width) if kind == "int8" else np.r_[0:width, h : min(h + width, dim)]
    for lo in range(0, len(rows), 4096):
        part = unpack_rows(shard[rows[lo : lo + 4096]][:, :width], kind, 2 * width)[:, : len(cols)].astype(np.int32)
        dots[slots[lo : lo + 4096]] = np.einsum("cd,cd->c", part, q_int[reads[lo : lo + 4096]][:, cols].astype(np.int32))
        norms[slots[lo : lo + 4096]] = np.square(part).sum(axis=1, dtype=np.int64)


def _dots_by_shard(q_int: np.ndarray, shards: list, kind: str, dim: int, shard_size: int, cand: np.ndarray,
                   width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(dots, |row|^2) of each query with each of its candidates (int64 ids (n, C) ascending along
    rows, -1 pads: 0), flat (n * C,); the rows are read grouped by shard and in id order, so rows
    shared by reads are read once, in sequence, and a memory-mapped shard pages in just those."""
    n_q, n_c = cand.shape
    slots = np.flatnonzero((cand >= 0).ravel())
    ids = cand.ravel()[slots]
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(len(shards) + 1) * shard_size)
    dots = np.zeros(n_q * n_c, dtype=np.int64)
    sq = np.zeros(n_q * n_c, dtype=np.int64)
    for s in np.flatnonzero(np.diff(bounds)):
        sel = order[bounds[s] : bounds[s + 1]]
        _shard_dots(q_int, shards[s], kind, dim, ids[sel] - s * shard_size, slots[sel] // n_c, slots[sel], dots, sq, width)
    return dots, sq


def rerank_code_rows(queries: np.ndarray, shards: list, kind: str, dim: int, shard_size: int, candidates: np.ndarray,
                     k: int, prefilter: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each query among its `candidates` (int64 ids (n, C), -1 pads), scored as
    `search_code_shards` scores them (the same float32 numbers), ties to the lower id.

    `shards[s]` holds ids s * shard_size ...; only the candidates' rows are read. With `prefilter`
    = P below C, each query's candidates are first scored on the coordinates in the first
    1 / `PREFIX_PART` of each row's bytes (a count sketch's coordinates are hash buckets, so those
    are a smaller sketch of the same k-mers), and only the P best of them are scored in full.
    Returns (scores float32 (n, k), ids int64 (n, k)), -1 / -inf pads."""
    n_q, n_c = candidates.shape
    out_s = np.full((n_q, k), -np.inf, dtype=np.float32)
    out_i = np.full((n_q, k), -1, dtype=np.int64)
    if n_q == 0 or n_c == 0:
        return out_s, out_i
    q_codes, _ = quantize(queries, "int8")
    q_scale = (1.0 / np.maximum(code_norms(q_codes, "int8", dim), 1e-30)).astype(np.float32)
    q_int = q_codes.view(np.int8)
    cand = np.sort(candidates, axis=1)  # ids ascending: ties below go to the lower id
    if 0 < prefilter < n_c:
        width = max(1, code_width(kind, dim) // PREFIX_PART)
        dots, sq = _dots_by_shard(q_int, shards, kind, dim, shard_size, cand, width)
        partial = np.where(cand.ravel() >= 0, dots / np.sqrt(np.maximum(sq, 1)), -np.inf).reshape(n_q, n_c)
        best = np.sort(np.argsort(-partial, axis=1, kind="stable")[:, :prefilter], axis=1)
        cand = np.take_along_axis(cand, best, 1)
        n_c = prefilter
    valid = cand >= 0
    dots, sq = _dots_by_shard(q_int, shards, kind, dim, shard_size, cand)
    norms = np.sqrt(sq).astype(np.float32)
    inv = np.divide(np.float32(1), norms, out=np.zeros_like(norms), where=norms > 0)
    scores = (dots.astype(np.float32) * inv).reshape(n_q, n_c)
    scores *= q_scale[:, None]
    scores = np.where(valid, scores, -np.inf).astype(np.float32)
    return best_candidates(scores, cand, valid, k)


def best_candidates(scores: np.ndarray, cand: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top `k` of each row of scored candidates (`cand` ids ascending in each row, so that the
    stable sort sends ties to the lower id; `valid` False for pads, scored -inf): (scores float32
    (n, k), ids int64 (n, k)), best first, -inf / -1 pads."""
    out_s = np.full((len(cand), k), -np.inf, dtype=np.float32)
    out_i = np.full((len(cand), k), -1, dtype=np.int64)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    got = order.shape[1]
    rows = np.arange(len(cand))[:, None]  # (fancy indexing: take_along_axis costs more on small arrays)
    out_s[:, :got] = scores[rows, order]
    out_i[:, :got] = np.where(valid[rows, order], cand[rows, order], -1)
    return out_s, out_i


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """starts[i], starts[i] + 1, ..., starts[i] + counts[i] - 1 for each i, one after the other."""
    return np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
