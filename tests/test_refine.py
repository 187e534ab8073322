"""The refiner's shortcuts against the plain code they replaced (kept here as the specification):
3-mer code strings, the masked re-search of the best window, and whole `Refiner.align` results on
reads with substitutions, indels, N, tandem and inverted repeats, for both presets."""
from __future__ import annotations

import random
import re

import edlib
import parasail
import pytest

from dnaesa.align import refine
from dnaesa.align.refine import (
    Candidate,
    Refiner,
    _orientation,
    _pieces_absent,
    _query_codes,
    build_alignment,
    clip_ends,
    masked_code,
    triplet_code,
)
from dnaesa.dna import reverse_complement
from dnaesa.options import PRESETS, MapOptions
from dnaesa.reference import Reference

_CIGAR_RE = re.compile(r"(\d+)([=XIDM])")


class SpecRefiner(Refiner):
    """`Refiner` as it was before the shortcuts: every step done the plain way."""

    def align(self, seq, candidates):
        if not candidates:
            return []
        queries = (seq, reverse_complement(seq))
        margin = self.opts.edit_margin
        hits = {}
        tight, loose = max(12, len(seq) // 10), int(0.4 * len(seq)) + 5
        best, best_window = loose, None
        for cand in candidates:
            window = self.reference.fetch(cand.contig_index, cand.start, cand.end)
            limit = min(loose, best + margin)
            for edits, loc_start, loc_end, reverse in _spec_locate(queries, window, cand.reverse, min(tight, limit), limit):
                if edits < best:
                    best, best_window = edits, (cand, window, loc_start, loc_end)
                hit = (edits, cand.contig_index, cand.start + loc_start, cand.start + loc_end + 1, reverse)
                hits.setdefault((hit[1], hit[3], reverse), hit)
        if best_window is not None:
            for hit in _spec_next_best(queries, best_window, best + refine.NEXT_BEST_EDITS):
                hits.setdefault((hit[1], hit[3], hit[4]), hit)
        ranked = sorted((h for h in hits.values() if h[0] <= best + margin), key=lambda h: h[0])
        out = [a for a in (self._spec_affine(queries[rev], ci, st, en, rev, ed) for ed, ci, st, en, rev in ranked)
               if a is not None]
        out.sort(key=lambda a: -a.score)
        return refine._distinct(out)

    def _spec_affine(self, query, ci, st, en, reverse, edits):
        if edits == 0 and en - st == len(query) and "N" not in query:
            return build_alignment(self.reference, ci, st, reverse, query, [(len(query), "=")], self.opts)
        pad = edits + refine.NARROW_PAD
        lo = max(st - pad, 0)
        ref = self.reference.fetch(ci, lo, en + pad)
        o = self.opts
        res = parasail.sg_dx_trace_scan_16(query, ref, o.gap_open + o.gap_extend, o.gap_extend, self.matrix)
        runs = [(int(n), op) for n, op in _CIGAR_RE.findall(res.cigar.decode.decode())]
        ref_pos = lo + res.cigar.beg_ref
        while runs and runs[0][1] == "D":
            ref_pos += runs.pop(0)[0]
        while runs and runs[-1][1] == "D":
            runs.pop()
        runs, ref_pos = clip_ends(runs, ref_pos, o)
        if not runs:
            return None
        return build_alignment(self.reference, ci, ref_pos, reverse, query, runs, o)


def _spec_next_best(queries, best_window, limit):
    cand, window, loc_start, loc_end = best_window
    masked = window[:loc_start] + "N" * (loc_end + 1 - loc_start) + window[loc_end + 1 :]
    return [(edits, cand.contig_index, cand.start + st, cand.start + en + 1, rev)
            for edits, st, en, rev in _spec_locate(queries, masked, cand.reverse, limit, limit)]


def _spec_locate(queries, window, reverse, tight, loose):
    if reverse is None:
        reverse = _orientation(queries, window)
        found = _spec_locate_orient(queries, window, (False, True) if reverse is None else (reverse,), tight, loose)
        if reverse is not None and not any(hit[0] <= tight for hit in found):  # the probes may point the wrong way
            found += _spec_locate_orient(queries, window, (not reverse,), tight, loose)
        return found
    return _spec_locate_orient(queries, window, (reverse,), tight, loose)


def _dna(rng, n, alphabet="ACGT"):
    return "".join(rng.choice(alphabet) for _ in range(n))


def _mutate(rng, seq, subs=0, indels=0, ns=0):
    s = list(seq)
    for _ in range(subs):
        i = rng.randrange(len(s))
        s[i] = rng.choice([b for b in "ACGT" if b != s[i]])
    for _ in range(indels):
        i = rng.randrange(1, len(s) - 1)
        if rng.random() < 0.5:
            del s[i : i + rng.randint(1, 3)]
        else:
            s[i:i] = _dna(rng, rng.randint(1, 3))
    for _ in range(ns):
        s[rng.randrange(len(s))] = "N"
    return "".join(s)


def test_triplet_code_finds_what_substring_search_finds():
    rng = random.Random(1)
    for _ in range(300):
        seq = _dna(rng, rng.randint(0, 60), "ACGTN" if rng.random() < 0.3 else "AC")
        for _ in range(10):
            if rng.random() < 0.5 and len(seq) >= 3:
                a = rng.randrange(len(seq) - 2)
                sub = seq[a : a + rng.randint(3, len(seq) - a)]
            else:
                sub = _dna(rng, rng.randint(3, 8), "ACGTN")
            assert (triplet_code(sub) in triplet_code(seq)) == (sub in seq)
    assert triplet_code("AC") == "" and len(triplet_code("ACGTN")) == 3
    for seq in ("ACGTTGCAN", "NNACG", "TTTTT", _dna(rng, 50, "ACGTN")):
        fwd, rev = _query_codes(seq)
        assert fwd == triplet_code(seq) and rev == triplet_code(reverse_complement(seq))


def test_masked_code_finds_what_search_in_the_masked_sequence_finds():
    rng = random.Random(6)
    for _ in range(2000):
        seq = _dna(rng, rng.randint(3, 40), "AC" if rng.random() < 0.5 else "ACGTN")
        start = rng.randrange(len(seq))
        end = min(len(seq) - 1, start + rng.randint(0, 10))
        masked = seq[:start] + "N" * (end + 1 - start) + seq[end + 1 :]
        code = masked_code(triplet_code(seq), start, end)
        assert len(code) == len(seq) - 2
        for _ in range(5):
            a = rng.randrange(len(seq))
            sub = seq[a : a + rng.randint(3, 12)].replace("N", "A")
            if len(sub) >= 3:
                assert (triplet_code(sub) in code) == (sub in masked), (seq, start, end, sub)


def test_pieces_absent_only_when_edlib_finds_nothing():
    rng = random.Random(2)
    skipped = 0
    for _ in range(400):
        read = _dna(rng, rng.choice([60, 100, 150]))
        window = _dna(rng, 300)
        if rng.random() < 0.7:  # a copy of the read with a few edits inside the window
            copy = _mutate(rng, read, subs=rng.randint(0, 6), indels=rng.randint(0, 2))
            at = rng.randrange(len(window) - len(copy))
            window = window[:at] + copy + window[at + len(copy) :]
        code, qcode = triplet_code(window), triplet_code(read)
        for limit in (1, 3, 5, 8):
            found = edlib.align(read, window, mode="HW", task="distance", k=limit)["editDistance"] >= 0
            absent = _pieces_absent(qcode, len(read), limit, code)
            assert not (found and absent)
            skipped += absent
    assert skipped > 300  # the filter does rule out most windows without a copy


def _reference(rng, n_repeats=4):
    """A random contig with tandem copies (exact and mutated), inverted copies and an N run."""
    seq = _dna(rng, 6000)
    for _ in range(n_repeats):
        a = rng.randrange(0, 5000)
        unit = seq[a : a + rng.randint(150, 400)]
        copy = _mutate(rng, unit, subs=rng.randint(0, 4), indels=rng.randint(0, 1))
        if rng.random() < 0.4:
            copy = reverse_complement(copy)
        at = a + len(unit) + rng.randint(0, 300)
        seq = seq[:at] + copy + seq[at + len(copy) :]
    seq = seq[:4500] + "N" * 30 + seq[4530:]
    return seq[:6000]


@pytest.mark.parametrize("preset", ["sr", "divergent"])
def test_refiner_matches_the_plain_code(preset):
    rng = random.Random(3 if preset == "sr" else 4)
    opts = MapOptions(**PRESETS[preset])
    n_best_seen = 0
    for _ in range(6):
        ref = Reference("test", ["c0", "c1"], [_reference(rng), _reference(rng)])
        fast, spec = Refiner(ref, opts), SpecRefiner(ref, opts)
        for _ in range(120):
            ci = rng.randrange(2)
            length = rng.choice([60, 100, 150, 250])
            at = rng.randrange(0, 6000 - length - 10)
            read = ref.seqs[ci][at : at + length + 5]
            kind = rng.random()
            read = _mutate(rng, read, subs=rng.randint(0, 3 if kind < 0.7 else 25), indels=rng.randint(0, 2),
                           ns=int(rng.random() < 0.1))[:length]
            if rng.random() < 0.5:
                read = reverse_complement(read)
            start = max(0, at - rng.randint(0, 800))
            cands = [Candidate(ci, start, start + 1800, rng.choice([None, None, False, True]))]
            if rng.random() < 0.5:  # a second window: another part of the reference
                other = rng.randrange(0, 4500)
                cands.append(Candidate(rng.randrange(2), other, other + 1500, None))
            got, want = fast.align(read, cands), spec.align(read, cands)
            assert got == want
            n_best_seen += len(want) > 1
    assert n_best_seen > 5  # repeats did give second placements


def test_next_best_matches_the_plain_code_at_any_mask():
    """Masks anywhere, over periodic windows, so that probes and pieces straddle the mask's ends."""
    rng = random.Random(5)
    ref = Reference("test", ["c0"], ["A" * 10])
    fast = Refiner(ref, MapOptions())
    hits = 0
    for _ in range(600):
        unit = _dna(rng, rng.randint(2, 40))
        window = _mutate(rng, (unit * (2000 // len(unit) + 1))[:rng.randint(300, 2000)], subs=rng.randint(0, 40))
        length = rng.choice([60, 100, 150])
        at = rng.randrange(0, len(window) - length)
        read = _mutate(rng, window[at : at + length], subs=rng.randint(0, 3), ns=int(rng.random() < 0.1))
        if rng.random() < 0.3:
            read = reverse_complement(read)
        loc_start = rng.randrange(0, len(window) - 2)
        loc_end = min(len(window) - 1, loc_start + rng.randint(0, 300))
        cand = Candidate(0, 100, 100 + len(window), rng.choice([None, False, True]))
        fast._codes.clear()
        queries = (read, reverse_complement(read))
        best = (cand, window, loc_start, loc_end)
        limit = rng.randint(0, 9)
        want = _spec_next_best(queries, best, limit)
        qcodes = None if "N" in read else _query_codes(read)
        assert fast._next_best(queries, qcodes, best, limit) == want
        hits += bool(want)
    assert hits > 100


@pytest.mark.parametrize("preset", ["sr", "divergent"])
def test_ungapped_shortcut_gives_parasails_alignment(preset):
    """Reads with one or two substitutions (at the ends, side by side, in short tandem repeats,
    where a gap may do as well or better): the shortcut, where it answers, answers as parasail."""
    rng = random.Random(7)
    opts = MapOptions(**PRESETS[preset])
    used = declined = 0
    for _ in range(4000):
        unit = _dna(rng, rng.randint(1, 12))
        kind = rng.random()
        if kind < 0.4:
            contig = _dna(rng, 400)
        else:  # tandem repeats, mutated, inside random sequence
            contig = _dna(rng, 100) + _mutate(rng, (unit * 300)[:200], subs=rng.randint(0, 6)) + _dna(rng, 100)
        ref = Reference("test", ["c0"], [contig])
        fast, slow = Refiner(ref, opts), Refiner(ref, opts)
        slow._ungapped_max = None
        length = rng.choice([48, 60, 100, 150])
        st = rng.randrange(20, 400 - length - 20)
        read = list(contig[st : st + length])
        edits = rng.choice([1, 2])
        where = rng.random()
        if where < 0.3:  # near the ends
            spots = rng.sample(list(range(4)) + list(range(length - 4, length)), edits)
        elif where < 0.5:  # side by side
            j = rng.randrange(length - 1)
            spots = [j, j + 1][:edits]
        else:
            spots = rng.sample(range(length), edits)
        for j in spots:
            read[j] = rng.choice([b for b in "ACGT" if b != read[j]])
        read = "".join(read)
        reverse = rng.random() < 0.5
        got = fast._affine(read, 0, st, st + length, reverse, edits, True)
        want = slow._affine(read, 0, st, st + length, reverse, edits, True)
        assert got == want, (contig, st, read, edits)
        pad = edits + refine.NARROW_PAD
        lo = max(st - pad, 0)
        if fast._ungapped(read, ref.fetch(0, lo, st + length + pad), st - lo, edits) is None:
            declined += 1
        else:
            used += 1
    assert used > 1000 and declined > 200


def test_locate_matches_the_plain_tiers():
    """Reads 0-45% edited, in their window or not: the higher edit limits done in one edlib pass
    find what the plain tier-by-tier search finds."""
    rng = random.Random(8)
    tiers_used = set()
    for _ in range(600):
        window = _dna(rng, rng.randint(200, 1200))
        length = rng.choice([50, 100, 150])
        at = rng.randrange(0, len(window) - length)
        read = _mutate(rng, window[at : at + length], subs=rng.randint(0, int(0.45 * length)), indels=rng.randint(0, 3))
        if rng.random() < 0.3:
            read = _dna(rng, length)
        if rng.random() < 0.5:
            read = reverse_complement(read)
        queries = (read, reverse_complement(read))
        tight, loose = max(12, len(read) // 10), int(0.4 * len(read)) + 5
        if rng.random() < 0.3:
            loose = rng.randint(1, loose)
        tight = min(tight, loose)
        reverse = rng.choice([None, False, True])
        orientations = (False, True) if reverse is None else (reverse,)
        want = _spec_locate_orient(queries, window, orientations, tight, loose)
        assert Refiner._locate(queries, window, orientations, tight, loose) == want
        if want:
            tiers_used.add(min(t for t in (tight, 2 * tight, loose) if t >= want[0][0]))
    assert len(tiers_used) >= 3


def _spec_locate_orient(queries, window, orientations, tight, loose):
    found = []
    for limit in sorted({min(tight, loose), min(2 * tight, loose), loose}):
        for rev in orientations:
            res = edlib.align(queries[rev], window, mode="HW", task="locations", k=limit)
            if res["editDistance"] < 0:
                continue
            last_end = None
            for loc_start, loc_end in res["locations"]:
                if last_end is None or loc_end - last_end > len(queries[0]) // 2:
                    found.append((res["editDistance"], loc_start, loc_end, rev))
                    last_end = loc_end
        if found:
            break
    return found


def test_window_code_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(refine, "CODE_CACHE", 3000)
    rng = random.Random(9)
    ref = Reference("test", ["c0"], [_dna(rng, 20000)])
    fast = Refiner(ref, MapOptions())
    for start in range(0, 18000, 1000):
        cand = Candidate(0, start, start + 1500, None)
        window = ref.fetch(0, start, start + 1500)
        assert fast._window_code(cand, window) == triplet_code(window)
        assert fast._code_chars <= 3000 + 1500 and len(fast._codes) <= 3


@pytest.mark.parametrize("foreign_first, reverse", [(False, False), (True, True)])
def test_read_with_foreign_end_is_placed_clipped(lambda_contigs, foreign_first, reverse):
    """110 bases of genome and 140 foreign (adapter, contamination): bwa gives 110M140S at MAPQ 60,
    and so must we, where no window holds the read end to end (it used to come out unmapped)."""
    from dnaesa.align.candidates import Candidate as Window
    from dnaesa.align.place import place_read

    name, seq = lambda_contigs[0]
    rng = random.Random(9)
    foreign = "".join(rng.choice("ACGT") for _ in range(140))
    genome = seq[20_000:20_110]
    read = foreign + genome if foreign_first else genome + foreign
    if reverse:
        read = reverse_complement(read)
    refiner = Refiner(Reference("lambda", [name], [seq]), MapOptions())
    hits = place_read(refiner, read, [Window(0, 19_000, 21_000, None)])
    assert hits and hits[0].ref_start == 20_000 and hits[0].reverse == reverse and hits[0].mapq >= 20
    clipped = "140S110M" if foreign_first else "110M140S"  # CIGAR in reference orientation
    assert hits[0].cigar_string == clipped and hits[0].nm == 0 and hits[0].score == 110


@pytest.mark.parametrize("deletion, cut", [(45, 76), (60, 143), (80, 120)])
def test_read_across_a_45_to_80_bp_deletion_keeps_its_bases(lambda_contigs, deletion, cut):
    """edlib counts the deletion as more edits than mismatching the read's end, so the DP window
    used to stop short and the end was soft-clipped (15S61M45D174M where bwa gives 76M45D174M)."""
    from dnaesa.align.candidates import Candidate as Window

    name, seq = lambda_contigs[0]
    read = seq[20_000 : 20_000 + cut] + seq[20_000 + cut + deletion : 20_250 + deletion]
    refiner = Refiner(Reference("lambda", [name], [seq]), MapOptions())
    hits = refiner.align(read, [Window(0, 19_500, 21_000, None)])
    assert hits[0].ref_start == 20_000 and hits[0].cigar_string == f"{cut}M{deletion}D{250 - cut}M"
    assert hits[0].score == 250 - (6 + deletion)


def test_read_20_percent_divergent_is_placed_with_divergent_scores(lambda_contigs):
    """BWA-MEM's scores leave such a read below the threshold (or clip most of it); the default now
    aligns it again with the `divergent` preset's scores, whose MAPQ is still calibrated."""
    from dnaesa.align.candidates import Candidate as Window
    from dnaesa.align.place import place_read

    name, seq = lambda_contigs[0]
    rng = random.Random(20)
    reference = Reference("lambda", [name], [seq])
    auto, strict = Refiner(reference, MapOptions()), Refiner(reference, MapOptions(auto_divergent=False))
    placed = {"auto": 0, "strict": 0}
    for i in range(20):
        at = 1_000 + 2_000 * i
        read = "".join(b if rng.random() > 0.2 else "ACGT"[("ACGT".index(b) + rng.randrange(1, 4)) % 4]
                       for b in seq[at : at + 250])
        for key, refiner in (("auto", auto), ("strict", strict)):
            hits = place_read(refiner, read, [Window(0, at - 400, at + 650, None)])
            aligned = sum(n for op, n in hits[0].cigar if op != 4) if hits else 0
            placed[key] += bool(hits) and abs(hits[0].ref_start - at) <= 5 and aligned >= 200
    assert placed["auto"] >= 17 and placed["strict"] <= 5, placed


def test_a_read_is_found_though_its_orientation_probes_point_the_other_way():
    """The read's own copy has a substitution in each of the three 16-mer probes (middle, start,
    end); 300 bases on, a 16%-divergent copy in the other orientation keeps them intact (an
    inverted repeat pair, as Alus often are). The probes see only that copy's orientation, and the
    read is still found where it belongs, with its 3 edits (it went to the far copy)."""
    rng = random.Random(5)
    read = "".join(rng.choice("ACGT") for _ in range(250))

    def substitute(seq, places):
        s = list(seq)
        for i in places:
            s[i] = "ACGT"[("ACGT".index(s[i]) + 1) % 4]
        return "".join(s)

    own = substitute(read, [5, 125, 245])
    far = substitute(read, [i for i in range(20, 240, 5) if not 110 <= i < 140])
    other = substitute(read, list(range(3, 250, 12)))  # a third copy, elsewhere: 21 edits
    flank = lambda n: "".join(rng.choice("ACGT") for _ in range(n))  # noqa: E731
    window = flank(300) + own + flank(300) + reverse_complement(far) + flank(300)
    queries = (read, reverse_complement(read))
    assert _orientation(queries, window) is True  # the probes point the wrong way
    refiner = Refiner(Reference("t", ["w", "x"], [window, flank(300) + other + flank(300)]), MapOptions())
    best = refiner.align(read, [Candidate(0, 0, len(window), None), Candidate(1, 0, 850, None)])[0]
    assert (best.contig, best.ref_start, best.reverse, best.nm) == ("w", 300, False, 3)


def test_a_poor_best_alignment_sends_the_read_to_the_rescue_candidates():
    """The read's candidates hold only a copy with 25 substitutions in its last 90 bases (a poor,
    clipped alignment, above min_score); the rescue candidates hold the read itself. The rescue is tried, and wins (it used
    to be tried only when nothing scored min_score)."""
    from dnaesa.align.candidates import Candidate as Window
    from dnaesa.align.place import place_read

    rng = random.Random(12)
    read = _dna(rng, 150)
    poor = list(read)
    for i in rng.sample(range(60, 150), 25):  # the first 60 bases intact
        poor[i] = rng.choice([b for b in "ACGT" if b != poor[i]])
    contig = _dna(rng, 2000) + "".join(poor) + _dna(rng, 2000) + read + _dna(rng, 2000)
    refiner = Refiner(Reference("t", ["c"], [contig]), MapOptions())
    bad, good = Window(0, 1500, 2650, None), Window(0, 3650, 4800, None)
    first = [a for a in refiner.align(read, [bad]) if a.score >= refiner.opts.min_score]
    assert first and first[0].score < 75  # the case: a poor alignment, above min_score
    hits = place_read(refiner, read, [bad], rescue=lambda: [good])
    assert (hits[0].ref_start, hits[0].nm, hits[0].score) == (4150, 0, 150)
