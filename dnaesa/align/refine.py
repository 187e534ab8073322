"""Place a read exactly inside its candidate windows, by dynamic programming.

Two libraries, each where it is fastest (measured on a 250 bp read against a 1,750 bp window, one
core): edlib's bit-parallel infix edit distance finds where the read lies in the whole window and how
many edits it needs (~20 us); parasail's affine semi-global alignment (read end to end, reference
ends free; `sg_dx_trace_scan_16`) then runs only on a window narrowed around that place (~25 us
instead of ~150 us over the whole window, and ~2 ms with the striped traceback). Soft clips follow
BWA-MEM's rule: an end of the read is clipped when the alignment of that end scores below
`-clip_penalty`, so reads hanging off a contig end or carrying junk ends are clipped, not forced.
Scores are BWA-MEM's: match +1, mismatch -4, a gap of n bases -(6 + n), N -1.
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import re

import edlib
import numpy as np
import parasail

from dnaesa.align import fast
from dnaesa.align.candidates import Candidate
from dnaesa.align.types import Alignment
from dnaesa.dna import reverse_complement
from dnaesa.options import PRESETS, MapOptions
from dnaesa.reference import Reference

#: parasail's C library (its ctypes bindings), for `_sg_trace_runs`
_PARASAIL = parasail.bindings_v2._lib
_OP_CODE = {"M": 0, "I": 1, "D": 2, "S": 4}
#: BAM op codes of parasail's CIGAR that the alignment uses (others never come)
_PARASAIL_OPS = {0: "M", 1: "I", 2: "D", 7: "=", 8: "X"}
#: reads longer than this are aligned by edit distance (edlib), not parasail's 16-bit affine DP,
#: whose scores overflow from about 32 kb (a NULL CIGAR, then a crash) and whose traceback table
#: grows as read length x window
LONG_READ = 16_000
#: an alignment clipping this many bases is tried again in a window wider by half a read
WIDEN_CLIP = 1
#: windows tried by the local alignment of a read that no window holds end to end
LOCAL_CANDIDATES = 2
#: ...only where they share an exact seed this long with the read (bwa's minimum seed is 19)
LOCAL_SEED = 20
#: how far around edlib's hit the affine alignment may look, on top of the edits edlib counted
NARROW_PAD = 8
#: a second copy in the best hit's window matters to MAPQ only within this many edits of the best
#: (3 more mismatches already give MAPQ 60)
NEXT_BEST_EDITS = 3
#: 3-mer code strings (`triplet_code`) of windows kept, per process: at most this many characters
CODE_CACHE = 16_000_000
#: pieces shorter than this make the exact-piece filter of the masked re-search cost more than it saves
MIN_PIECE = 8
_BASE_TABLE = bytes(b"ACGT".find(bytes([c])) % 5 for c in range(256))  # ACGT -> 0-3, else 4
#: the 3-mer code of the reverse complement of each 3-mer (bases 0-3 ACGT, 4 N; code 25a + 5b + c)
_COMP_CODE = (3, 2, 1, 0, 4)
_RC_CODE = {25 * a + 5 * b + c: chr(25 * _COMP_CODE[c] + 5 * _COMP_CODE[b] + _COMP_CODE[a])
            for a in range(5) for b in range(5) for c in range(5)}
_DROP_ACGT = str.maketrans("", "", "ACGT")
#: stands for masked positions in a code string: no 3-mer has this code
_MASK_CODE = "\xff"


def score_matrix(opts: MapOptions):
    matrix = parasail.matrix_create("ACGTN", opts.match, -opts.mismatch)
    for i in range(5):
        matrix.set_value(i, 4, -1)
        matrix.set_value(4, i, -1)
    return matrix


class Refiner:
    """Aligns reads in candidate windows of one reference with one set of scores."""

    def __init__(self, reference: Reference, opts: MapOptions):
        self.reference, self.opts = reference, opts
        fast.warm_up()  # compiled kernels, when asked for, loaded once before workers fork
        self.matrix = score_matrix(opts)
        self._codes: dict[tuple[int, int, int], str] = {}  # window -> triplet_code(window)
        self._code_chars = 0
        # `_ungapped`'s proof needs a gap to cost more than a mismatch (both against a match)
        mismatch, gap = opts.match + opts.mismatch, opts.gap_open + opts.gap_extend
        #: the longest deletion and insertion that cost no more than two mismatches (None: no fast path)
        self._ungapped_max = None
        if gap > mismatch and opts.gap_extend >= 1 and opts.match >= 1:
            self._ungapped_max = ((2 * mismatch - opts.gap_open) // opts.gap_extend,
                                  (2 * mismatch - opts.gap_open) // (opts.gap_extend + opts.match))
        #: the same reference with the `divergent` preset's scores, for reads these scores leave
        #: unplaced (None when they are no stricter, or `auto_divergent` is off)
        self.divergent: Refiner | None = None
        relaxed = dataclasses.replace(opts, **PRESETS["divergent"])
        if opts.auto_divergent and (opts.mismatch, opts.gap_open) > (relaxed.mismatch, relaxed.gap_open):
            self.divergent = Refiner(reference, dataclasses.replace(relaxed, auto_divergent=False))

    def align(self, seq: str, candidates: list[Candidate]) -> list[Alignment]:
        """All distinct placements found, best score first (ties keep candidate order)."""
        if not candidates:
            return []
        queries = (seq, reverse_complement(seq))
        # the read's 3-mer codes, for the exact probes and pieces (not for a read with N: an N
        # matches N in the reference, or the mask)
        qcodes = None if seq.translate(_DROP_ACGT) else _query_codes(seq)
        margin = self.opts.edit_margin
        hits: dict[tuple, tuple] = {}  # (contig, end, reverse) -> (edits, contig, start, end, reverse)
        tight, loose = max(12, len(seq) // 10), int(0.4 * len(seq)) + 5
        best, best_window = loose, None
        for cand in candidates:
            window = self.reference.fetch(cand.contig_index, cand.start, cand.end)
            # a hit more than edit_margin edits worse than the best so far would be dropped anyway
            limit = min(loose, best + margin)
            reverse = cand.reverse
            if reverse is None:
                if qcodes is None:
                    reverse = _orientation(queries, window)
                else:
                    reverse = _code_orientation(qcodes, self._window_code(cand, window), len(seq))
            orientations = (False, True) if reverse is None else (reverse,)
            first = min(tight, limit)
            found = self._locate(queries, window, orientations, first, limit)
            if cand.reverse is None and reverse is not None and not any(hit[0] <= first for hit in found):
                # the probes can point the wrong way: errors in the read's own copy hide them, and
                # another copy in the window (an inverted Alu pair) shows them the other way round
                found += self._locate(queries, window, (not reverse,), first, limit)
            for edits, loc_start, loc_end, reverse in found:
                if edits < best:
                    best, best_window = edits, (cand, window, loc_start, loc_end)
                hit = (edits, cand.contig_index, cand.start + loc_start, cand.start + loc_end + 1, reverse)
                hits.setdefault((hit[1], hit[3], reverse), hit)
        if best_window is not None:
            for hit in self._next_best(queries, qcodes, best_window, best + NEXT_BEST_EDITS):
                hits.setdefault((hit[1], hit[3], hit[4]), hit)
        ranked = sorted((h for h in hits.values() if h[0] <= best + margin), key=lambda h: h[0])
        acgt = qcodes is not None
        out = [a for a in (self._affine(queries[rev], ci, st, en, rev, ed, acgt) for ed, ci, st, en, rev in ranked)
               if a is not None]
        out.sort(key=lambda a: -a.score)
        return _distinct(out)

    def _next_best(self, queries: tuple[str, str], qcodes: tuple[str, str] | None, best_window: tuple,
                   limit: int) -> list[tuple]:
        """Hits in the best hit's own window once the best hit is masked: a tandem copy a few hundred
        bases away shares the window, so without this it would never count against MAPQ.

        Same result as `_locate` on the masked window, cheaper: the orientation probes and an exact
        piece filter (`_pieces_absent`) look up 3-mer code strings (`triplet_code`) of the window,
        which Python's substring search skips through several times faster than DNA."""
        cand, window, loc_start, loc_end = best_window
        masked = window[:loc_start] + "N" * (loc_end + 1 - loc_start) + window[loc_end + 1 :]
        if qcodes is None:  # the plain way
            reverse = _orientation(queries, masked) if cand.reverse is None else cand.reverse
            found = Refiner._locate(queries, masked, (False, True) if reverse is None else (reverse,), limit, limit)
        else:
            code = masked_code(self._window_code(cand, window), loc_start, loc_end)
            reverse = cand.reverse
            if reverse is None:
                reverse = _code_orientation(qcodes, code, len(queries[0]))
            orientations = (False, True) if reverse is None else (reverse,)
            found = []
            for rev in orientations:
                if _pieces_absent(qcodes[rev], len(queries[0]), limit, code):
                    continue  # edlib finds nothing within the limit
                found.extend(_edlib_hits(queries[rev], masked, limit, rev))
        return [(edits, cand.contig_index, cand.start + st, cand.start + en + 1, rev)
                for edits, st, en, rev in found]

    def _window_code(self, cand: Candidate, window: str) -> str:
        key = (cand.contig_index, cand.start, cand.end)
        code = self._codes.get(key)
        if code is None:
            if self._code_chars >= CODE_CACHE:
                self._codes.clear()
                self._code_chars = 0
            code = self._codes[key] = triplet_code(window)
            self._code_chars += len(code)
        return code

    @staticmethod
    def _locate(queries: tuple[str, str], window: str, orientations: tuple[bool, ...], tight: int,
                loose: int) -> list[tuple[int, int, int, bool]]:
        """(edits, start, end inclusive, reverse) of the read's best infix matches in `window`, in
        the given orientations (False: the read, True: its reverse complement).

        Tries the `tight` edit limit first (fast, and it rejects the wrong orientation at once), then
        twice that, and the `loose` one only when no orientation fits a tighter one: edlib's cost
        grows with the limit. Equally good matches at distinct places (tandem repeats) all count."""
        limits = sorted({min(tight, loose), min(2 * tight, loose), loose})
        found = []
        for rev in orientations:
            found.extend(_edlib_hits(queries[rev], window, limits[0], rev))
        if found or len(limits) == 1:
            return found
        # the higher limits in one pass: within a limit, edlib finds what it finds within the
        # highest one at no more edits (the same edits and places), and nothing else
        top = [_edlib_hits(queries[rev], window, limits[-1], rev) for rev in orientations]
        for limit in limits[1:]:
            found = [hit for hits in top for hit in hits if hit[0] <= limit]
            if found:
                break
        return found

    def _ungapped(self, query: str, ref: str, u: int, edits: int) -> list[tuple[int, str]] | None:
        """The runs of parasail's alignment of `query` (ACGT only) in `ref` (the narrowed window)
        when it is the gap-free one at `u` with `edits` (1 or 2) mismatches; None when that is not
        certain (then parasail must run).

        Costs against an all-match score: a mismatch c = match + mismatch, a gap open + n extend
        (+ n match for an insertion), and gap > c. The gap-free alignment U (cost c * edits) is the
        only optimum, so parasail's traceback returns it, when every other alignment G costs more.
        Where G leaves U's diagonal it does so on stretches J of the read; G's cost less U's is
        the sum over them of (G's gaps and mismatches in J) - (U's mismatches in J), so G can only
        compete through one J where that is <= 0:
        - J inside the read needs two gaps: 2 gap - c * edits > 0.
        - J at an end holding one mismatch of U, or with a mismatch of its own, or two gaps:
          > 0 likewise. Left: J at an end with both mismatches (edits = 2), one gap (a deletion
          of <= max_del or an insertion of <= max_ins bases) and no mismatch: checked exactly.
        - J the whole read (G never on U's diagonal): G has at most 2 'touches' (mismatches,
          gaps; a short insertion may touch two thirds of the read), so one third of the read
          aligns exactly at another place: checked by looking each third up in the window."""
        length = len(query)
        max_del, max_ins = self._ungapped_max
        if length < 48 or length > 10000 or length // 3 <= max_ins + 2 or ref.translate(_DROP_ACGT):
            return None
        x = int.from_bytes(query.encode(), "big") ^ int.from_bytes(ref[u : u + length].encode(), "big")
        mism = []
        while x:  # the differing bytes, first position first
            i = (x.bit_length() - 1) >> 3
            mism.append(length - 1 - i)
            if len(mism) > edits:
                return None
            x &= (1 << (i << 3)) - 1
        if len(mism) != edits:
            return None
        for a, b in ((0, length // 3), (length // 3, 2 * length // 3), (2 * length // 3, length)):
            piece = query[a:b]
            at = ref.find(piece)
            while at >= 0:
                if at != u + a:
                    return None
                at = ref.find(piece, at + 1)
        if edits == 2:
            j1, j2 = mism
            for g in range(1, max_del + 1):  # a deletion, then the rest of the read elsewhere
                if query[j1:] == ref[u + j1 + g : u + length + g]:
                    return None
                if u - g >= 0 and query[: j2 + 1] == ref[u - g : u + j2 + 1 - g]:
                    return None
            for g in range(1, max_ins + 1):  # an insertion, likewise
                if j2 + 1 - g <= 0 or query[j1 + g :] == ref[u + j1 : u + length - g]:
                    return None
                if query[: j2 + 1 - g] == ref[u + g : u + j2 + 1]:
                    return None
        runs: list[tuple[int, str]] = []
        done = 0
        for j in mism:
            if j > done:
                runs.append((j - done, "="))
            if runs and runs[-1][1] == "X":
                runs[-1] = (runs[-1][0] + 1, "X")
            else:
                runs.append((1, "X"))
            done = j + 1
        if done < length:
            runs.append((length - done, "="))
        return runs

    def _affine(self, query: str, ci: int, st: int, en: int, reverse: bool, edits: int,
                acgt: bool = False) -> Alignment | None:
        """The affine alignment of the read (`query`, only ACGT when `acgt`) found by edlib at
        st..en with `edits` edits: parasail's in a window narrowed around it, clipped."""
        if edits == 0 and en - st == len(query) and "N" not in query:  # an exact match needs no DP
            return build_alignment(self.reference, ci, st, reverse, query, [(len(query), "=")], self.opts)
        pad = edits + NARROW_PAD
        lo = max(st - pad, 0)
        ref = self.reference.fetch(ci, lo, en + pad)
        o = self.opts
        if acgt and edits <= 2 and en - st == len(query) and self._ungapped_max:
            runs = self._ungapped(query, ref, st - lo, edits)
            if runs is not None:  # parasail's alignment, without running it
                runs, ref_pos = clip_ends(runs, st, o)
                if not runs:
                    return None
                return build_alignment(self.reference, ci, ref_pos, reverse, query, runs, o)
        if len(query) > LONG_READ:
            runs, ref_pos = _edit_alignment(query, ref, lo)
        else:
            runs, ref_pos = self._parasail_runs(query, ref, lo)
        runs, ref_pos = clip_ends(runs, ref_pos, o)
        if not runs:
            return None
        found = build_alignment(self.reference, ci, ref_pos, reverse, query, runs, o)
        found_clip = _clipped(runs)
        if len(query) <= LONG_READ and found_clip >= WIDEN_CLIP and found.score >= o.min_score:
            # edlib counts a long deletion as more edits than mismatching the read's end, so its
            # place can stop short of the true end; the window widened by half a read finds the gap
            wide = len(query) // 2 + pad
            lo = max(st - wide, 0)
            runs, ref_pos = self._parasail_runs(query, self.reference.fetch(ci, lo, en + wide), lo)
            runs, ref_pos = clip_ends(runs, ref_pos, o)
            if runs:
                wider = build_alignment(self.reference, ci, ref_pos, reverse, query, runs, o)
                # as bwa: an end is clipped only when that gains more than the clip penalty
                less_clipped = _clipped(runs) < found_clip
                if wider.score > found.score or (less_clipped and wider.score + o.clip_penalty >= found.score):
                    return wider
        return found

    def align_local(self, seq: str, candidates: list[Candidate]) -> list[Alignment]:
        """Local alignments (either end of the read may be clipped) in the first `LOCAL_CANDIDATES`
        windows, best first: for a read that no window holds end to end, such as 110 bases of
        genome and 140 of adapter or contamination, or a read running off a contig's end. Costs a
        Smith-Waterman alignment per window and orientation (~1 ms), so it is the last resort."""
        o = self.opts
        queries = (seq, reverse_complement(seq))
        out = []
        for cand in candidates[:LOCAL_CANDIDATES]:
            window = self.reference.fetch(cand.contig_index, cand.start, cand.end)
            for rev in (False, True) if cand.reverse is None else (cand.reverse,):
                query = queries[rev]
                if len(query) > LONG_READ or not _shares_seed(query, window):
                    continue
                res = parasail.sw_trace_scan_16(query, window, o.gap_open + o.gap_extend, o.gap_extend, self.matrix)
                if res.score < o.min_score:
                    continue
                runs, beg_query, beg_ref = _packed_runs(res)
                while runs and runs[0][1] != "=":  # a local alignment starts and ends with matches
                    n, op = runs.pop(0)
                    beg_query += n if op in "=XMI" else 0
                    beg_ref += n if op in "=XMD" else 0
                while runs and runs[-1][1] != "=":
                    runs.pop()
                aligned = sum(n for n, op in runs if op in "=XMI")
                if not runs:
                    continue
                runs = ([(beg_query, "S")] if beg_query else []) + runs
                if len(query) - beg_query - aligned:
                    runs.append((len(query) - beg_query - aligned, "S"))
                out.append(build_alignment(self.reference, cand.contig_index, cand.start + beg_ref, rev, query, runs, o))
        out.sort(key=lambda a: -a.score)
        return _distinct(out)

    def _parasail_runs(self, query: str, ref: str, lo: int) -> tuple[list[tuple[int, str]], int]:
        """parasail's affine alignment of `query` in `ref` (which starts at `lo`): runs, start."""
        o = self.opts
        runs, beg_ref = _sg_trace_runs(query, ref, o.gap_open + o.gap_extend, o.gap_extend, self.matrix)
        ref_pos = lo + beg_ref
        while runs and runs[0][1] == "D":
            ref_pos += runs.pop(0)[0]
        while runs and runs[-1][1] == "D":
            runs.pop()
        return runs, ref_pos


def _shares_seed(query: str, window: str) -> bool:
    """Whether some `LOCAL_SEED`-mer of `query`, at every `LOCAL_SEED // 2`-th base, occurs in
    `window`: a local alignment scoring the threshold holds such a seed, and a read of foreign
    sequence, which has none, costs no Smith-Waterman."""
    step = LOCAL_SEED // 2
    return any(query[i : i + LOCAL_SEED] in window for i in range(0, len(query) - LOCAL_SEED + 1, step))


def _clipped(runs: list[tuple[int, str]]) -> int:
    return sum(n for n, op in runs if op == "S")


def _packed_runs(res) -> tuple[list[tuple[int, str]], int, int]:
    """(runs, first query base, first reference base) of a parasail traceback result, read from its
    packed CIGAR (length << 4 | BAM op code), as its decoded text would give it."""
    raw = res.cigar.pointer[0]
    ops = (ctypes.c_uint32 * raw.len).from_address(ctypes.addressof(raw.seq.contents))
    return [(n >> 4, _PARASAIL_OPS[n & 15]) for n in ops if (n & 15) in _PARASAIL_OPS], raw.beg_query, raw.beg_ref


def _sg_trace_runs(query: str, ref: str, gap_open: int, gap_extend: int, matrix) -> tuple[list[tuple[int, str]], int]:
    """(runs, first reference base) of `parasail.sg_dx_trace_scan_16(query, ref, ...)`, as
    `_packed_runs` reads them, by parasail's C functions directly: the same alignment and CIGAR,
    without the Python `Result` and `Cigar` objects (about 5-10 us a call)."""
    qb, rb = query.encode(), ref.encode()
    res = _PARASAIL.parasail_sg_dx_trace_scan_16(qb, len(qb), rb, len(rb), gap_open, gap_extend, matrix)
    if not res:  # a NULL pointer: parasail could not allocate its tables
        raise MemoryError(f"parasail could not align a read of {len(qb)} bases in {len(rb)}")
    try:
        cigar = _PARASAIL.parasail_result_get_cigar_extra(res, qb, len(qb), rb, len(rb), matrix, 0, None)
        if not cigar:
            raise MemoryError(f"parasail gave no CIGAR for a read of {len(qb)} bases in {len(rb)}")
        try:
            raw = cigar[0]
            ops = (ctypes.c_uint32 * raw.len).from_address(ctypes.addressof(raw.seq.contents))
            return [(n >> 4, _PARASAIL_OPS[n & 15]) for n in ops if (n & 15) in _PARASAIL_OPS], raw.beg_ref
        finally:
            _PARASAIL.parasail_cigar_free(cigar)
    finally:
        _PARASAIL.parasail_result_free(res)


def _edit_alignment(query: str, ref: str, lo: int) -> tuple[list[tuple[int, str]], int]:
    """edlib's fewest-edits alignment of the whole `query` inside `ref` (which starts at `lo`):
    runs and start. For reads too long for parasail's 16-bit scores (their score would overflow,
    and its traceback table grows as read x window); edlib's traceback needs linear memory."""
    res = edlib.align(query, ref, mode="HW", task="path")
    start = res["locations"][0][0]
    runs = [(int(n), op) for n, op in re.findall(r"(\d+)([=XID])", res["cigar"])]
    return runs, lo + start


def _edlib_hits(query: str, window: str, limit: int, rev: bool) -> list[tuple[int, int, int, bool]]:
    """(edits, start, end inclusive, rev) of edlib's best infix matches within `limit` edits, one per
    place (ends more than half a read apart). The compiled kernel (`fast.infix_hits`) when it is
    on: the same hits, found only where an exact piece of the read puts an end."""
    if fast.COMPILED and limit < len(query):
        return fast.infix_hits(query, window, limit, rev)
    return _edlib_hits_pure(query, window, limit, rev)


def _edlib_hits_pure(query: str, window: str, limit: int, rev: bool) -> list[tuple[int, int, int, bool]]:
    """`_edlib_hits` by edlib."""
    res = edlib.align(query, window, mode="HW", task="locations", k=limit)
    if res["editDistance"] < 0:
        return []
    found = []
    half = len(query) // 2
    last_end = None
    for loc_start, loc_end in res["locations"]:  # sorted by end
        if last_end is None or loc_end - last_end > half:
            found.append((res["editDistance"], loc_start, loc_end, rev))
            last_end = loc_end
    return found


def _orientation(queries: tuple[str, str], window: str, probe: int = 16) -> bool | None:
    """The read's orientation in `window` when exact probes (16-mers at its middle, then its start
    and end) find only one of them; None when neither or both: saves edlib a wrong-strand pass."""
    return _probe_orientation(queries, window, len(queries[0]), probe, probe)


def _code_orientation(qcodes: tuple[str, str], code: str, length: int, probe: int = 16) -> bool | None:
    """`_orientation` by 3-mer codes: `qcodes` those of the read (no N) and of its reverse
    complement, `code` that of the window (a probe of `probe` bases is `probe - 2` codes)."""
    return _probe_orientation(qcodes, code, length, probe, probe - 2)


def _probe_orientation(queries: tuple[str, str], hay: str, length: int, probe: int, span: int) -> bool | None:
    """The probes of `_orientation`: `span` characters of each query at the read offsets of its
    middle, start and end `probe`-mers, looked up in `hay`."""
    if length < 3 * probe:
        return None
    fwd, rev = queries
    mid = length // 2 - probe // 2
    f, r = fwd[mid : mid + span] in hay, rev[mid : mid + span] in hay
    if f != r:
        return r
    for o in (0, length - probe):
        f, r = f or fwd[o : o + span] in hay, r or rev[o : o + span] in hay
    return None if f == r else r


def triplet_code(seq: str) -> str:
    """One character per 3-mer of `seq` (position i: the 3-mer starting at i; ACGT and N distinct).

    A string of length >= 3 occurs at position i of `seq` exactly when its code occurs at position i
    of the code of `seq`; over 125 symbols instead of 4, Python's substring search skips ahead."""
    if len(seq) < 3:
        return ""
    a = np.frombuffer(seq.encode("ascii", "replace").translate(_BASE_TABLE), dtype=np.uint8)
    code = a[:-2] * 25
    code += a[1:-1] * 5
    code += a[2:]
    return code.tobytes().decode("latin-1")


def masked_code(code: str, start: int, end: int) -> str:
    """`code` (a `triplet_code`) with the 3-mers that overlap positions start..end (inclusive) of its
    sequence masked: a string without N occurs in the masked code exactly when it occurs in the
    sequence with start..end replaced by N."""
    right = code[end + 1 :]
    keep = max(start - 2, 0)
    return code[:keep] + _MASK_CODE * (len(code) - keep - len(right)) + right


def _query_codes(seq: str) -> tuple[str, str]:
    """`triplet_code` of a read and of its reverse complement."""
    code = triplet_code(seq)
    return code, code.translate(_RC_CODE)[::-1]


def _pieces_absent(qcode: str, length: int, limit: int, code: str) -> bool:
    """True when no alignment of the read (of `length`, `qcode` its triplet code, no N) to a part of
    the window (`code`) has `limit` edits or fewer: split into limit + 1 pieces, such an alignment
    leaves one of them unedited, so it would occur exactly. False when that cannot be ruled out."""
    pieces = _piece_bounds(length, limit + 1)
    if not pieces:
        return False
    for a, b in pieces:
        if qcode[a:b] in code:
            return False
    return True


@functools.lru_cache(maxsize=1024)
def _piece_bounds(length: int, pieces: int) -> tuple[tuple[int, int], ...]:
    """The code slices (start, end) of `pieces` near-equal pieces of a read; none when the pieces
    would be shorter than MIN_PIECE."""
    if length // pieces < MIN_PIECE:
        return ()
    bounds = [i * length // pieces for i in range(pieces + 1)]
    return tuple((a, b - 2) for a, b in zip(bounds[:-1], bounds[1:]))


def _run_score(n: int, op: str, o: MapOptions) -> int:
    if op == "=":
        return n * o.match
    if op == "X":
        return -n * o.mismatch
    if op in "ID":
        return -(o.gap_open + n * o.gap_extend)
    return 0


def clip_ends(runs: list[tuple[int, str]], ref_pos: int, o: MapOptions) -> tuple[list[tuple[int, str]], int]:
    """Soft-clip (op 'S') each end whose alignment scores below -clip_penalty; returns runs, new ref start."""
    runs, ref_pos = _clip_left(runs, ref_pos, o)
    back, _ = _clip_left([(n, op) for n, op in reversed(runs)], 0, o)
    return list(reversed(back)), ref_pos


def _clip_left(runs: list[tuple[int, str]], ref_pos: int, o: MapOptions) -> tuple[list[tuple[int, str]], int]:
    if runs and runs[0][1] == "S":
        return runs, ref_pos
    total, worst, cut = 0, -o.clip_penalty, 0
    for i, (n, op) in enumerate(runs):
        total += _run_score(n, op, o)
        if total < worst:
            worst, cut = total, i + 1
    while cut < len(runs) and runs[cut][1] in "ID":  # never start on a gap
        cut += 1
    if cut == 0:
        return runs, ref_pos
    clipped = sum(n for n, op in runs[:cut] if op != "D")
    ref_pos += sum(n for n, op in runs[:cut] if op != "I")
    rest = runs[cut:]
    return ([(clipped, "S")] + rest) if rest else [], ref_pos


def build_alignment(reference: Reference, ci: int, ref_pos: int, reverse: bool, query: str,
                    runs: list[tuple[int, str]], o: MapOptions) -> Alignment:
    """Score, SAM CIGAR (=/X merged into M), NM and MD of an alignment given as runs.

    Works run by run; only mismatch runs, and match runs of a read with an N (where parasail calls
    N against N a match, which SAM counts as a mismatch), go base by base."""
    span = sum(n for n, op in runs if op in "=XD")
    ref = reference.fetch(ci, ref_pos, ref_pos + span)  # ref[i] is the base at ref_pos + i
    has_n = "N" in query
    cigar: list[tuple[int, int]] = []
    md: list[str] = []
    matched = nm = score = 0
    r, q = ref_pos, 0
    for n, op in runs:
        code = 0 if op in "=X" else _OP_CODE[op]
        if cigar and cigar[-1][0] == code:
            cigar[-1] = (code, cigar[-1][1] + n)
        else:
            cigar.append((code, n))
        if op == "=" and not (has_n and "N" in query[q : q + n]):
            matched += n
            score += n * o.match
            r, q = r + n, q + n
        elif op in "=X":
            for j in range(n):
                rb, qb = ref[r - ref_pos + j], query[q + j]
                if rb == qb and rb != "N":
                    matched += 1
                    score += o.match
                else:
                    md.append(f"{matched}{rb}")
                    matched = 0
                    nm += 1
                    score -= 1 if "N" in (rb, qb) else o.mismatch
            r, q = r + n, q + n
        elif op == "D":
            md.append(f"{matched}^{ref[r - ref_pos : r - ref_pos + n]}")
            matched, nm, r = 0, nm + n, r + n
            score -= o.gap_open + n * o.gap_extend
        else:
            q += n
            if op == "I":
                nm += n
                score -= o.gap_open + n * o.gap_extend
    md.append(str(matched))
    return Alignment(contig=reference.names[ci], contig_index=ci, ref_start=ref_pos, ref_end=r, reverse=reverse,
                     cigar=cigar, nm=nm, md="".join(md), score=score)


def _distinct(alignments: list[Alignment]) -> list[Alignment]:
    """Drop alignments that overlap a better one on the same contig and strand."""
    kept: list[Alignment] = []
    for a in alignments:
        if not any(k.contig_index == a.contig_index and k.reverse == a.reverse
                   and a.ref_start < k.ref_end and k.ref_start < a.ref_end for k in kept):
            kept.append(a)
    return kept
