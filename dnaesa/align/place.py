"""Placing a read, or a pair of reads: refine in the candidate windows, keep what is reportable,
set MAPQ; for pairs, rescue mates in the window the insert size allows and choose jointly.

These are the per-read stage that engines run in parallel; they hold no state of their own.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from dnaesa.align.candidates import Candidate
from dnaesa.align.mapq import assign_mapq
from dnaesa.align.pairing import InsertSize, PairChoice, choose_pair, proper_partner, rescue_window
from dnaesa.align.refine import Refiner
from dnaesa.align.types import Alignment

SOFT_CLIP = 4
#: a primary alignment leaving at least this many bases clipped gets them placed (supplementary)
MIN_SPLIT = 30
#: a read whose best alignment leaves more than this share unaligned (or that none places) is
#: aligned again with the divergent scores, which win when they align more of it
DIVERGENT_BELOW = 0.8
#: the parts of a split read may overlap by this many bases of the read
SPLIT_OVERLAP = 10
#: a read whose best alignment in its candidates scores below this share of a whole-read match is
#: aligned in the rescue candidates too (a clipped hit in a repeat elsewhere must not hide its copies)
RESCUE_BELOW = 0.5


def place_read(refiner: Refiner, seq: str, candidates: list[Candidate],
               rescue: Callable[[], list[Candidate]] | None = None, split: bool = True,
               search: Callable[[list[str]], Any] | None = None) -> list[Alignment]:
    """Reportable placements of one read, primary first, with MAPQ set. When no candidate places
    the read, or none scores `RESCUE_BELOW` of a whole-read match, and `rescue` is given, its
    candidates (a deeper, unpruned search) are tried with them, and kept when they do better; when
    still none does, local alignments (clipped at either end) in the best candidate windows. With
    `split`, a read whose primary leaves a long part clipped gets that part's placement as a
    supplementary alignment, in `alignments[0].extra["supplementary"]`; `search` (reads ->
    `CandidateBatch`), when given, finds windows for that part when the read's own do not hold it."""
    alignments = [a for a in refiner.align(seq, candidates) if a.score >= refiner.opts.min_score]
    if rescue is not None and (not alignments or alignments[0].score < RESCUE_BELOW * refiner.opts.match * len(seq)):
        windows = list(rescue())
        seen = {(c.contig_index, c.start, c.end, c.reverse) for c in windows}
        windows += [c for c in candidates if (c.contig_index, c.start, c.end, c.reverse) not in seen]
        more = [a for a in refiner.align(seq, windows) if a.score >= refiner.opts.min_score]
        if more and (not alignments or more[0].score > alignments[0].score):
            alignments = more
    scoring = refiner
    if refiner.divergent is not None and candidates and \
            (not alignments or _aligned(alignments[0]) < DIVERGENT_BELOW * len(seq)):  # far from the reference?
        relaxed = [a for a in refiner.divergent.align(seq, candidates[: refiner.opts.divergent_candidates])
                   if a.score >= refiner.divergent.opts.min_score]
        if relaxed and (not alignments or _aligned(relaxed[0]) >= _aligned(alignments[0]) + len(seq) // 5):
            alignments, scoring = relaxed, refiner.divergent
    if not alignments and candidates:  # no window holds the whole read: part of it, clipped
        alignments = [a for a in refiner.align_local(seq, candidates) if a.score >= refiner.opts.min_score]
    parts = _split_parts(scoring, seq, alignments, candidates, search) if split and alignments else []
    assign_mapq(alignments, scoring.opts)
    if parts:
        for part in parts:
            if part.extra.pop("taken", False):  # it was found with the primary, in its windows
                part.mapq, part.sub_score = alignments[0].mapq, None
        alignments[0].extra["supplementary"] = parts
    return alignments


def _aligned(aln: Alignment) -> int:
    """Read bases that `aln` aligns (not clipped)."""
    return sum(n for op, n in aln.cigar if op != SOFT_CLIP)


def query_span(aln: Alignment) -> tuple[int, int]:
    """[start, end) of the read that `aln` aligns, in the read's own orientation (clips excluded)."""
    length = aln.query_length
    left = aln.cigar[0][1] if aln.cigar and aln.cigar[0][0] == SOFT_CLIP else 0
    right = aln.cigar[-1][1] if aln.cigar and aln.cigar[-1][0] == SOFT_CLIP else 0
    return (right, length - left) if aln.reverse else (left, length - right)


def _split_parts(refiner: Refiner, seq: str, alignments: list[Alignment], candidates: list[Candidate],
                 search: Callable[[list[str]], Any] | None = None) -> list[Alignment]:
    """The supplementary part of a chimeric or split read (a deletion longer than the DP allows, a
    contig end or circular origin, a structural variant): when the primary leaves at least
    `MIN_SPLIT` bases clipped, the best placement of that clipped part, as an alignment of the
    whole read (the rest soft-clipped). A placement among `alignments` that aligns that part is
    taken out of them (it is not a rival of the primary, so it does not lower its MAPQ); else the
    part is aligned in the read's candidate windows."""
    primary = alignments[0]
    start, end = query_span(primary)
    gaps = [(0, start), (end, len(seq))]
    lo, hi = max(gaps, key=lambda g: g[1] - g[0])
    if hi - lo < MIN_SPLIT:
        return []
    for other in alignments[1:]:
        o_start, o_end = query_span(other)
        if o_end - o_start >= MIN_SPLIT and min(o_end, end) - max(o_start, start) <= SPLIT_OVERLAP and \
                min(o_end, hi) - max(o_start, lo) >= 0.8 * (hi - lo):
            alignments.remove(other)
            if other.score == primary.score and o_start < start:  # as bwa: of equal parts, the read's first
                alignments[0] = other
                other, primary = primary, other
            other.extra["taken"] = True
            return [other]
    piece = seq[lo:hi]
    found = [a for a in refiner.align(piece, candidates) if a.score >= refiner.opts.min_score]
    found = [a for a in found if not _overlaps(a, primary)]
    if not found and search is not None:  # the part's own search: the read's hits are the other part's
        own = search([piece]).lists()[0]
        found = [a for a in refiner.align(piece, own) if a.score >= refiner.opts.min_score and not _overlaps(a, primary)]
    if not found:
        found = [a for a in refiner.align_local(piece, candidates) if a.score >= refiner.opts.min_score]
        found = [a for a in found if not _overlaps(a, primary)]
    if not found:
        return []
    assign_mapq(found, refiner.opts)
    part = found[0]
    # the piece's alignment as one of the whole read: the bases outside the piece soft-clipped
    before, after = (len(seq) - hi, lo) if part.reverse else (lo, len(seq) - hi)
    cigar = list(part.cigar)
    if before:
        cigar = _merge_clip([(SOFT_CLIP, before)], cigar)
    if after:
        cigar = _merge_clip(cigar, [(SOFT_CLIP, after)])
    part.cigar = cigar
    return [part]


def _merge_clip(left: list[tuple[int, int]], right: list[tuple[int, int]]) -> list[tuple[int, int]]:
    if left and right and left[-1][0] == SOFT_CLIP and right[0][0] == SOFT_CLIP:
        return left[:-1] + [(SOFT_CLIP, left[-1][1] + right[0][1])] + right[1:]
    return left + right


def _overlaps(a: Alignment, b: Alignment) -> bool:
    return a.contig_index == b.contig_index and a.ref_start < b.ref_end and b.ref_start < a.ref_end


def place_pair(refiner: Refiner, seqs: tuple[str, str], tiers: Sequence[tuple], insert: InsertSize | None,
               contig_lengths: Sequence[int], search: Callable[[list[str]], Any] | None = None) -> PairChoice:
    """The placements of a pair's mates, chosen jointly. `tiers[i]` is mate i's (candidates,
    rescue tier or None). With an insert size, a mate whose partner's primary placement has no
    proper partner among its own placements is searched for beside it (mate rescue). A split mate's
    other parts stay with its primary placement (`place_read`), and are reported when it is chosen."""
    placed = [place_read(refiner, seq, cands, rescue, search=search) for seq, (cands, rescue) in zip(seqs, tiers)]
    if insert is not None:
        for i in (0, 1):
            anchors, other = placed[i], placed[1 - i]
            if not anchors or proper_partner(anchors[0], other, insert):
                continue
            window = rescue_window(anchors[0], len(seqs[1 - i]), insert, contig_lengths[anchors[0].contig_index])
            if window is None:
                continue
            found = [a for a in refiner.align(seqs[1 - i], [window]) if a.score >= refiner.opts.min_score]
            known = {(a.contig_index, a.ref_start, a.reverse) for a in other}
            new = [a for a in found if (a.contig_index, a.ref_start, a.reverse) not in known]
            if new:
                merged = sorted(other + new, key=lambda a: -a.score)  # stable: ties keep search order
                assign_mapq(merged, refiner.opts)
                placed[1 - i] = merged
    return choose_pair(placed[0], placed[1], insert)
