"""Placing a read, or a pair of reads: refine in the candidate windows, keep what is reportable,
set MAPQ; for pairs, rescue mates in the window the insert size allows and choose jointly.

These are the per-read stage that engines run in parallel; they hold no state of their own.
"""
from __future__ import annotations

from typing import Callable, Sequence

from dnaesa.align.candidates import Candidate
from dnaesa.align.mapq import assign_mapq
from dnaesa.align.pairing import InsertSize, PairChoice, choose_pair, proper_partner, rescue_window
from dnaesa.align.refine import Refiner
from dnaesa.align.types import Alignment


def place_read(refiner: Refiner, seq: str, candidates: list[Candidate],
               rescue: Callable[[], list[Candidate]] | None = None) -> list[Alignment]:
    """Reportable placements of one read, primary first, with MAPQ set. When no candidate places
    the read and `rescue` is given, its candidates (a deeper, unpruned search) are tried; when
    still none does, local alignments (clipped at either end) in the best candidate windows."""
    alignments = [a for a in refiner.align(seq, candidates) if a.score >= refiner.opts.min_score]
    if not alignments and rescue is not None:
        alignments = [a for a in refiner.align(seq, rescue()) if a.score >= refiner.opts.min_score]
    if not alignments and candidates:  # no window holds the whole read: part of it, clipped
        alignments = [a for a in refiner.align_local(seq, candidates) if a.score >= refiner.opts.min_score]
    assign_mapq(alignments, refiner.opts)
    return alignments


def place_pair(refiner: Refiner, seqs: tuple[str, str], tiers: Sequence[tuple], insert: InsertSize | None,
               contig_lengths: Sequence[int]) -> PairChoice:
    """The placements of a pair's mates, chosen jointly. `tiers[i]` is mate i's (candidates,
    rescue tier or None). With an insert size, a mate whose partner's primary placement has no
    proper partner among its own placements is searched for beside it (mate rescue)."""
    placed = [place_read(refiner, seq, cands, rescue) for seq, (cands, rescue) in zip(seqs, tiers)]
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
