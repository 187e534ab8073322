"""Compiled kernels of the per-read path (numba, nopython, cached on disk), each with the same
results as the pure path it replaces. Off unless asked for (`DNAESA_NUMBA=1`): measured on 20,000
E. coli reads they save less CPU than importing numba and loading the kernels costs (about 0.5 s a
run, which would also double the time to the first record of a small run); see benchmarks/RESULTS.md,
"Speed (issue 12)". Asked for without a working numba, the pure path runs after one warning line.

`infix_hits`: what `edlib.align(query, window, mode="HW", task="locations", k=limit)` gives (the
fewest edits of the query against any part of the window when at most `limit`, every end place with
that many, and for each the start edlib reports), by Myers' bit-parallel edit distance with
Ukkonen's band, as edlib computes it, run only where an exact piece of the read puts an end (the
pigeonhole filter of `_end_regions`). Each end's start is edlib's: the longest alignment ending
there with that many edits, found by the same DP run backwards from the end. About 20 us a call of
a 250 bp read against a 1.8 kb window against edlib's 25-30 us (with its Python wrapper).
"""
from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger("dnaesa")

_DROP_ACGT = str.maketrans("", "", "ACGT")
#: the environment variable that turns the compiled kernels on ("1")
SWITCH = "DNAESA_NUMBA"
#: why the compiled kernels are not used though asked for (None: no failure)
UNAVAILABLE: str | None = None
#: whether the per-read path calls the compiled kernels: set by `warm_up`
COMPILED = False
_ready = False


def requested() -> bool:
    return os.environ.get(SWITCH, "") not in ("", "0")


def _compile() -> None:
    """Import numba and make the kernels (cached on disk when a cache folder is writable: numba
    refuses `cache=True` at decoration time when it finds none); UNAVAILABLE says why not."""
    global UNAVAILABLE, _myers_scan, _alphabet, _peq, _end_regions, _infix_hits
    try:
        import numba
    except Exception as err:  # noqa: BLE001 - an ImportError, or a numba that fails to load
        UNAVAILABLE = f"numba could not be imported ({type(err).__name__}: {err})"
        return

    def jit(function):
        try:
            return numba.njit(cache=True, nogil=True)(function)
        except Exception:  # noqa: BLE001 - numba's "no locator available" RuntimeError
            return numba.njit(nogil=True)(function)

    try:  # callees first: a kernel binds the ones it calls when it is compiled
        _myers_scan, _alphabet, _peq = jit(_myers_scan), jit(_alphabet), jit(_peq)
        _end_regions = jit(_end_regions)
        _infix_hits = jit(_infix_hits)
    except Exception as err:  # noqa: BLE001
        UNAVAILABLE = f"numba could not compile the kernels ({type(err).__name__}: {err})"


#: 2-bit codes of A, C, G, T (upper case); 4 for any other byte
_BASE2 = np.full(256, 4, np.uint8)
for _i, _c in enumerate(b"ACGT"):
    _BASE2[_c] = _i


def _myers_scan(peq, row, m, target, first, step, n, k, hw, out):  # pragma: no cover - compiled
    """Edit distances D[m][j] of the query (its `peq` bit masks, `m` bases, 64 a block; `row`: a
    target byte's row of `peq`) against target[first + step * j] for columns j = 0..n-1, into
    out[j] when <= k (else k + 1).

    hw: infix mode (the query may start anywhere: the top row is 0); else prefix mode (the top
    row counts the target bases passed: the query starts at the first column). Blocks of 64 rows
    are computed only while they may hold a value <= k (Ukkonen's band, kept as edlib keeps it:
    the band grows by at most one block a column, and drops blocks whose every cell exceeds k)."""
    one = np.uint64(1)
    ones = ~np.uint64(0)
    high = one << np.uint64(63)
    blocks = peq.shape[1]
    pv = np.empty(blocks, np.uint64)
    mv = np.empty(blocks, np.uint64)
    score = np.empty(blocks, np.int64)
    for b in range(blocks):
        pv[b] = ones
        mv[b] = np.uint64(0)
        score[b] = (b + 1) * 64
    last = min((k + 1 + 63) // 64, blocks) - 1
    tail = (m - 1) % 64  # the query's last row in the last block
    above = np.uint64(0) if tail == 63 else ones << np.uint64(tail + 1)
    top_in = 0 if hw else 1
    for j in range(n):
        c = row[target[first + step * j]]
        hin = top_in
        for b in range(last + 1):
            eq = peq[c, b]
            p = pv[b]
            mm = mv[b]
            xv = eq | mm
            if hin < 0:
                eq |= one
            xh = (((eq & p) + p) ^ p) | eq
            ph = mm | ~(xh | p)
            mh = p & xh
            hout = 0
            if ph & high:
                hout = 1
            elif mh & high:
                hout = -1
            ph <<= one
            mh <<= one
            if hin < 0:
                mh |= one
            elif hin > 0:
                ph |= one
            pv[b] = mh | ~(xv | ph)
            mv[b] = ph & xv
            score[b] += hout
            hin = hout
        if last < blocks - 1 and score[last] - hin <= k and ((peq[c, last + 1] & one) != 0 or hin < 0):
            b = last + 1  # the block below may hold values <= k now: into the band
            eq = peq[c, b]
            p = ones
            mm = np.uint64(0)
            xv = eq | mm
            if hin < 0:
                eq |= one
            xh = (((eq & p) + p) ^ p) | eq
            ph = mm | ~(xh | p)
            mh = p & xh
            hout = 0
            if ph & high:
                hout = 1
            elif mh & high:
                hout = -1
            ph <<= one
            mh <<= one
            if hin < 0:
                mh |= one
            elif hin > 0:
                ph |= one
            pv[b] = mh | ~(xv | ph)
            mv[b] = ph & xv
            score[b] = score[last] - hin + 64 + hout
            last = b
        else:
            while last > 0 and score[last] >= k + 64:
                last -= 1
        value = k + 1
        if last == blocks - 1:
            value = score[last]
            extra = pv[last] & above
            minus = mv[last] & above
            while extra:
                value -= 1
                extra &= extra - one
            while minus:
                value += 1
                minus &= minus - one
            if value > k:
                value = k + 1
        out[j] = value


def _alphabet(query):  # pragma: no cover - compiled
    """Rows of Myers' match masks: 1, 2, ... for the distinct bytes of the query, 0 for any other."""
    row = np.zeros(256, np.uint8)
    rows = 1
    for i in range(len(query)):
        if row[query[i]] == 0:
            row[query[i]] = rows
            rows += 1
    return row, rows


def _peq(query, row, rows, blocks, reverse):  # pragma: no cover - compiled
    """Myers' match masks of the query (read backwards with `reverse`): bit i of [row[c], i // 64]
    set where base i is c; rows past the query's end (in the last block) match everything, as
    edlib pads it."""
    one = np.uint64(1)
    m = len(query)
    peq = np.zeros((rows, blocks), np.uint64)
    rem = m % 64
    if rem:
        pad = ~((one << np.uint64(rem)) - one)
        for c in range(rows):
            peq[c, blocks - 1] = pad
    for i in range(m):
        base = query[m - 1 - i] if reverse else query[i]
        peq[row[base], i // 64] |= one << np.uint64(i % 64)
    return peq


def _end_regions(query, window, limit, min_piece):  # pragma: no cover - compiled
    """Where an alignment of the query (ACGT only) with at most `limit` edits can end in the window:
    (lo, hi) column ranges, sorted and disjoint (the whole window when pieces would be shorter
    than `min_piece`).

    Split into limit + 1 pieces, such an alignment leaves one piece unedited (pigeonhole), so that
    piece occurs exactly in the window, and the alignment ends within `limit` columns of where the
    piece's occurrence puts the read's end. Each piece is looked up by its first `min(piece, 31)`
    bases, 2 bits a base; a window stretch with another letter (N) holds no occurrence."""
    m = len(query)
    n = len(window)
    pieces = limit + 1
    span = m // pieces
    if span < min_piece:
        regions = np.empty((1, 2), np.int64)
        regions[0, 0] = 0
        regions[0, 1] = n - 1
        return regions
    span = min(span, 31)
    mask = (1 << (2 * span)) - 1
    codes = np.empty(pieces, np.int64)
    offsets = np.empty(pieces, np.int64)
    seen = np.zeros(4096, np.uint8)  # by the last 6 bases of a piece: a quick rejection
    for i in range(pieces):
        a = i * m // pieces
        code = 0
        for t in range(a, a + span):
            code = (code << 2) | _BASE2[query[t]]
        codes[i] = code
        offsets[i] = a
        seen[code & 4095] = 1
    cover = np.zeros(n + 1, np.int64)
    code = 0
    valid = 0  # ACGT bases ending at the current column
    found = 0
    for p in range(n):
        b = _BASE2[window[p]]
        if b > 3:
            valid = 0
            continue
        code = ((code << 2) | b) & mask
        valid += 1
        if valid < span or seen[code & 4095] == 0:
            continue
        for at in range(pieces):
            if codes[at] == code:
                end = p - span + 1 + m - offsets[at] - 1  # where the read's end falls with no gap
                lo = max(end - limit, 0)
                hi = min(end + limit, n - 1)
                if lo <= hi:
                    cover[lo] += 1
                    cover[hi + 1] -= 1
                    found += 1
    if found == 0:
        return np.empty((0, 2), np.int64)
    regions = np.empty((found, 2), np.int64)
    count = 0
    depth = 0
    lo = -1
    for j in range(n + 1):
        depth += cover[j]
        if depth > 0 and lo < 0:
            lo = j
        elif depth == 0 and lo >= 0:
            regions[count, 0] = lo
            regions[count, 1] = j - 1
            count += 1
            lo = -1
    return regions[:count]


def _infix_hits(query, window, limit, half, acgt):  # pragma: no cover - compiled
    """(edits, starts, ends) as `infix_hits`, the ends thinned as `_edlib_hits` thins them (an end
    more than `half` past the last kept one); edits -1 when none is within `limit`. With `acgt`
    (the query is ACGT only) the DP runs only where `_end_regions` allows an end."""
    m = len(query)
    n = len(window)
    k = min(limit, m)
    blocks = (m + 63) // 64
    row, rows = _alphabet(query)
    peq = _peq(query, row, rows, blocks, False)
    if acgt:
        regions = _end_regions(query, window, k, 8)
    else:
        regions = np.empty((1, 2), np.int64)
        regions[0, 0] = 0
        regions[0, 1] = n - 1
    best = k + 1
    ends = []
    i = 0
    while i < len(regions):
        lo = regions[i, 0]
        hi = regions[i, 1]
        # regions closer than a read's span are scanned in one pass (each column once)
        while i + 1 < len(regions) and regions[i + 1, 0] - m - k <= hi:
            i += 1
            hi = regions[i, 1]
        first = max(lo - m - k, 0)  # an alignment with <= k edits spans at most m + k columns
        scratch = np.empty(hi - first + 1, np.int64)
        _myers_scan(peq, row, m, window, first, 1, hi - first + 1, k, True, scratch)
        for j in range(lo, hi + 1):
            value = scratch[j - first]
            if value < best:
                best = value
                ends.clear()
            if value == best and value <= k:
                ends.append(j)
        i += 1
    if best > k:
        return -1, np.empty(0, np.int64), np.empty(0, np.int64)
    kept = []
    last_end = -1
    for j in ends:
        if last_end < 0 or j - last_end > half:
            kept.append(j)
            last_end = j
    starts = np.empty(len(kept), np.int64)
    found = np.empty(len(kept), np.int64)
    if best == 0:  # an exact match: the alignment is the read's length
        for i in range(len(kept)):
            starts[i] = kept[i] - m + 1
            found[i] = kept[i]
        return best, starts, found
    rpeq = _peq(query, row, rows, blocks, True)
    back = np.empty(min(n, m + best + 1), np.int64)
    for i in range(len(kept)):
        end = kept[i]
        cols = min(end + 1, m + best + 1)  # a longer stretch needs more than `best` edits
        _myers_scan(rpeq, row, m, window, end, -1, cols, best, False, back)
        longest = 0
        for j in range(cols):
            if back[j] == best:
                longest = j
        starts[i] = end - longest
        found[i] = end
    return best, starts, found


def infix_hits(query: str, window: str, limit: int, rev: bool) -> list[tuple[int, int, int, bool]]:
    """`refine._edlib_hits` compiled: (edits, start, end inclusive, rev) of the best infix matches of
    `query` in `window` within `limit` edits, one per place (ends more than half a read apart).
    Sequences are compared byte by byte, as edlib compares characters (N matches N). `limit` must be
    below the query's length (edlib, given more, may also report the empty alignment before the
    window, with an end of -1: `refine._edlib_hits` leaves such calls to edlib)."""
    acgt = not query.translate(_DROP_ACGT)
    edits, starts, ends = _infix_hits(np.frombuffer(query.encode("latin-1"), np.uint8),
                                      np.frombuffer(window.encode("latin-1"), np.uint8), limit, len(query) // 2, acgt)
    if edits < 0:
        return []
    return [(int(edits), s, e, rev) for s, e in zip(starts.tolist(), ends.tolist())]


def warm_up(force: bool = False) -> bool:
    """When asked for (`DNAESA_NUMBA=1`, or `force`): compile the kernels, or load them from
    numba's cache, once in this process (worker processes forked afterwards inherit them), and set
    `COMPILED`. Asked for and not available: one warning line, and the pure path."""
    global UNAVAILABLE, COMPILED, _ready
    if _ready or not (force or requested()):
        return COMPILED
    _ready = True
    _compile()
    if UNAVAILABLE is None:
        try:
            infix_hits("ACGTACGTACGTTGCA" * 4, "TTACGTACGTACTT" * 8, 2, False)
            infix_hits("ACGTACGTNC", "TTACGTACGTACTT", 2, False)
            COMPILED = True
        except Exception as err:  # noqa: BLE001 - a broken numba install: the pure path
            UNAVAILABLE = f"numba failed ({type(err).__name__}: {err})"
    if UNAVAILABLE is not None:
        log.warning("[dnaesa] %s: the per-read path runs in pure Python (same output)", UNAVAILABLE)
    return COMPILED
