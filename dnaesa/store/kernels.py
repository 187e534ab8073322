"""Compiled kernels of the store (numba, nopython, cached on disk), imported only when first used
(importing numba costs about 0.5 s, more than a small run's whole search).

- `_absorb`, `_compact_row`, `_finish`: the coarse tier's streaming exact top-C (`coarse.py`);
- `_dots_int4`, `_dots_int8`: dot products of queries with int4-packed (or int8) rows, straight from
  the codes (`codes.py`);
- `_sieve_top`: the coarse tier's exact top C among its sieve's picks (`coarse.py`, `sieve.py`).
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _absorb(scores, base, keep, room, thr, buf_s, buf_i, cnt):
    """Add the scores of fragments base..base+B-1 (`scores`, (Q, B) int32) to each query's
    running top `keep`: scores above thr[r] are appended to its buffer (so the buffer holds
    ids in rising order); a buffer that might not take another block (B wide) is compacted
    to its best `keep`, ties to the lower id, and thr[r] raised to the keep-th best. `room`:
    the buffer's width less the widest block."""
    n_q, n_b = scores.shape
    for r in range(n_q):
        t = thr[r]
        c = cnt[r]
        for j in range(n_b):
            s = scores[r, j]
            if s > t:
                buf_s[r, c] = s
                buf_i[r, c] = base + j
                c += 1
        if c > room:
            t = _compact_row(buf_s[r], buf_i[r], c, keep)
            c = keep
        cnt[r] = c
        thr[r] = t

@numba.njit(cache=True, nogil=True)
def _compact_row(row_s, row_i, c, keep):
    """Keep the best `keep` of row_s[:c] in buffer order (ties: the first, i.e. lower ids);
    returns the keep-th best score."""
    kth = np.partition(row_s[:c].copy(), c - keep)[c - keep]
    need = keep
    for j in range(c):
        if row_s[j] > kth:
            need -= 1
    w = 0
    for j in range(c):
        s = row_s[j]
        if s > kth or (s == kth and need > 0):
            if s == kth:
                need -= 1
            row_s[w] = s
            row_i[w] = row_i[j]
            w += 1
    return kth

@numba.njit(cache=True, nogil=True)
def _finish(buf_s, buf_i, cnt, keep, out_i):
    """Each row's best `keep`, best first, ties to the lower id."""
    for r in range(buf_s.shape[0]):
        c = cnt[r]
        if c > keep:
            _compact_row(buf_s[r], buf_i[r], c, keep)
            c = keep
        order = np.argsort(-buf_s[r, :c].astype(np.int64), kind="mergesort")
        for j in range(c):
            out_i[r, j] = buf_i[r, order[j]]



@numba.njit(cache=True, nogil=True)
def _dots_int4(q, shard, rows, reads, slots, dots, norms, width):
    """For each k: dots[slots[k]] = q[reads[k]] . shard[rows[k]] and norms[slots[k]] = its
    |row|^2, the shard's rows int4-packed (uint8 (n, h): low nibble coordinate j, high nibble
    j + h, two's complement); q int8 (m, 2h). Only the first `width` bytes of each row are read
    (coordinates 0..width-1 and h..h+width-1: all of them when width = h)."""
    h = shard.shape[1]
    for k in range(len(rows)):
        row = shard[rows[k]]
        q_lo = q[reads[k], :h]  # views: indexing them with j alone lets the loop vectorise (2x)
        q_hi = q[reads[k], h:]
        acc = np.int32(0)  # int32 sums: |q| <= 127, |code| <= 8, so exact up to 2**21 dimensions
        nrm = np.int32(0)
        for j in range(width):
            v = np.int32(row[j])
            lo = ((v & 15) ^ 8) - 8
            hi = ((v >> 4) ^ 8) - 8
            acc += np.int32(q_lo[j]) * lo + np.int32(q_hi[j]) * hi
            nrm += lo * lo + hi * hi
        dots[slots[k]] = acc
        norms[slots[k]] = nrm


@numba.njit(cache=True, nogil=True)
def _dots_int8(q, shard, rows, reads, slots, dots, norms):
    """For each k: dots[slots[k]] = q[reads[k]] . shard[rows[k]] and norms[slots[k]] = its
    |row|^2; q and the shard's rows int8 (m, D), (n, D)."""
    d = shard.shape[1]
    for k in range(len(rows)):
        row = shard[rows[k]]
        qr = q[reads[k]]
        acc = np.int32(0)  # |q|, |code| <= 127: exact up to 2**17 dimensions
        nrm = np.int32(0)
        for j in range(d):
            v = np.int32(row[j])
            acc += np.int32(qr[j]) * v
            nrm += v * v
        dots[slots[k]] = acc
        norms[slots[k]] = nrm


@numba.njit(cache=True, nogil=True, fastmath=True)
def _sieve_top(q, shards, shard_size, picked, keep, out):
    """For each query r: the exact int8 products of q[r] with the rows picked[r] (ids into the
    list of (shard_size, D) int8 `shards`; -1 skips), and out[r] = the ids of the `keep` best,
    best first, ties to the lower id (-1 pads). The (query, row) pairs are first bucketed by
    shard (a counting sort), so the rows are read one shard at a time, from cache. Each pair is
    ranked by one int64 key, product * 2**32 + (2**32 - 1 - id): the order is total, so
    `np.partition` is exact."""
    n_q, k = picked.shape
    d = q.shape[1]
    n_s = len(shards)
    low = np.int64(-(1 << 62))
    keys = np.full((n_q, k), low, dtype=np.int64)
    counts = np.zeros(n_s + 1, dtype=np.int64)
    for r in range(n_q):
        for j in range(k):
            i = picked[r, j]
            if i >= 0:
                counts[i // shard_size + 1] += 1
    for s in range(n_s):
        counts[s + 1] += counts[s]
    order = np.empty(counts[n_s], dtype=np.int64)  # flat pair numbers r * k + j, grouped by shard
    fill = counts[:n_s].copy()
    for r in range(n_q):
        for j in range(k):
            i = picked[r, j]
            if i >= 0:
                s = i // shard_size
                order[fill[s]] = r * k + j
                fill[s] += 1
    qf = q.astype(np.float32)  # float32 sums of these integer products are exact (|sum| < 2**24) in any order,
    for s in range(n_s):       # so fastmath may reorder them: the loop vectorises
        shard = shards[s]
        base = s * shard_size
        for t in range(counts[s], counts[s + 1]):
            p = order[t]
            r, j = p // k, p % k
            i = picked[r, j]
            row = shard[i - base]
            qr = qf[r]
            acc = np.float32(0)
            for c in range(d):
                acc += qr[c] * np.float32(row[c])
            keys[r, j] = (np.int64(acc) << 32) | (np.int64(0xFFFFFFFF) - i)
    for r in range(n_q):
        valid = 0
        for j in range(k):
            if picked[r, j] >= 0:
                valid += 1
        m = min(keep, valid)
        if m == 0:
            continue
        kr = keys[r]
        kth = np.partition(kr, k - m)[k - m]
        best = np.sort(kr[kr >= kth])[::-1]
        for j in range(m):
            out[r, j] = np.int64(0xFFFFFFFF) - (best[j] & np.int64(0xFFFFFFFF))
