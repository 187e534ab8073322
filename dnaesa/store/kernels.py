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


@numba.njit(cache=True, nogil=True)
def _sketch_pass(codes, n, span, salt, shift, weight, fwd_tab, rev_tab, spaced, acc, bitmap, added):
    """acc += weight x the count sketch of the distinct canonical codes of codes[:n]'s windows of
    `span` bases free of non-ACGT (-1): k-mers, or with `spaced` the seeds read through the tables
    (`_sketch_scores`). Each code's coordinate and sign are those of `kmer.sketch_coordinates`."""
    one = np.uint64(1)
    golden = np.uint64(0x9E3779B97F4A7C15)
    wmask = (one << np.uint64(2 * span)) - one
    top = np.uint64(2 * (span - 1))
    fwd = np.uint64(0)
    rev = np.uint64(0)
    run = 0
    n_added = 0
    for i in range(n):
        c = codes[i]
        if c < 0:
            run = 0
            continue
        run += 1
        fwd = ((fwd << np.uint64(2)) | np.uint64(c)) & wmask
        rev = (rev >> np.uint64(2)) | (np.uint64(3 - c) << top)
        if run < span:
            continue
        if spaced:
            fw = np.uint64(0)
            rv = np.uint64(0)
            for t in range(fwd_tab.shape[0]):
                fw |= np.uint64(fwd_tab[t, np.int64((fwd >> np.uint64(10 * t)) & np.uint64(1023))])
                rv |= np.uint64(rev_tab[t, np.int64((rev >> np.uint64(10 * t)) & np.uint64(1023))])
            key = min(fw, rv)
        else:
            key = min(fwd, rev)
        word = np.int64(key >> np.uint64(6))
        bit = one << (key & np.uint64(63))
        if bitmap[word] & bit:
            continue
        bitmap[word] |= bit
        added[n_added] = word
        n_added += 1
        h = (key ^ salt) * golden
        acc[np.int64(h >> shift)] += weight * (np.float32((h >> np.uint64(19)) & np.uint64(2)) - np.float32(1))
    for t in range(n_added):
        bitmap[added[t]] = 0


@numba.njit(cache=True, nogil=True)
def _packed_codes(packed, n_starts, n_ends, starts, ends, bounds, out):
    """out[bounds[f]:bounds[f + 1]] = the base codes (0-3; -1 for N) of bases starts[f]..ends[f]
    (coordinates along all contigs) of a reference packed 4 bases a byte, the first in the lowest
    bits, with its runs of N [n_starts[r], n_ends[r]) (`sequence_file.PackedSequence`): what
    `kmer.BASE_CODE` gives for the decoded text, without decoding it."""
    for f in range(len(starts)):
        lo, hi, o = starts[f], ends[f], bounds[f]
        for i in range(lo, hi):
            out[o + i - lo] = (packed[i >> 2] >> (2 * (i & 3))) & 3
        r = np.searchsorted(n_ends, lo, side="right")
        while r < len(n_starts) and n_starts[r] < hi:
            for i in range(max(n_starts[r], lo), min(n_ends[r], hi)):
                out[o + i - lo] = -1
            r += 1


@numba.njit(cache=True, nogil=True, fastmath=True)
def _sketch_scores(codes, bounds, k, k_salt, shift, spans, salts, scales, fwd_tab, rev_tab, code_bits,
                   pair_frag, pair_query, q, out):
    """out[p] = the cosine of q[pair_query[p]] with the sketch of fragment pair_frag[p], the
    fragments being codes[bounds[f]:bounds[f + 1]] (base codes 0-3, -1 for a base that is not
    ACGT: `kmer.BASE_CODE`, or `_packed_codes`; pairs grouped by fragment): the
    `SketchModelEncoder`'s vector computed from the sequence itself, as it computes it (distinct
    canonical k-mers, each +-1 at its hashed coordinate; distinct canonical spaced seeds of each
    pattern j, each +-scales[j]; windows covering a non-ACGT base skipped), then divided by its
    norm (0 for an empty sketch).

    A spaced seed's two codes are read from its window's rolling 2-bit codes (forward and
    reverse complement) through per-pattern tables of 5 bases at a time (`fwd_tab[j, c, x]`:
    the code's bits from the window code's bits 10c..10c+9 = x). Distinct codes (k and care
    counts <= 12: `code_bits` <= 24) are found with a bitmap over all codes, cleared after each use. Sums of +-1 and
    +-scale are exact in float32 in any order, as in the encoder; the sketch is dense (dim
    floats, in cache), so the norm, the products and the reset are vector loops."""
    dim = q.shape[1]
    longest = 1
    for f in range(len(bounds) - 1):
        longest = max(longest, bounds[f + 1] - bounds[f])
    bitmap = np.zeros(max(1, (1 << code_bits) >> 6), dtype=np.uint64)
    added = np.empty(longest, dtype=np.int64)
    acc = np.zeros(dim, dtype=np.float32)
    p = 0
    n_pairs = len(pair_frag)
    for f in range(len(bounds) - 1):
        if p >= n_pairs or pair_frag[p] != f:
            continue
        lo, n = bounds[f], bounds[f + 1] - bounds[f]
        frag = codes[lo : lo + n]
        _sketch_pass(frag, n, k, k_salt, shift, np.float32(1), fwd_tab[0], rev_tab[0], False, acc, bitmap, added)
        for j in range(len(spans)):
            _sketch_pass(frag, n, spans[j], salts[j], shift, scales[j], fwd_tab[j], rev_tab[j], True, acc, bitmap, added)
        sq = np.float32(0)
        for b in range(dim):
            sq += acc[b] * acc[b]
        inv = np.float32(1) / np.sqrt(sq) if sq > 0 else np.float32(0)
        while p < n_pairs and pair_frag[p] == f:
            qr = q[pair_query[p]]
            s = np.float32(0)
            for b in range(dim):
                s += qr[b] * acc[b]
            out[p] = s * inv
            p += 1
        acc[:] = 0
