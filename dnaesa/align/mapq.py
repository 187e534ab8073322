"""Mapping quality: how sure we are that the primary placement is the true one.

BWA-MEM's single-end estimate (`mem_approx_mapq_se`, whose calibration users know), on our scores:

    MAPQ = 0                                    when a second placement scores as well (XS >= AS)
    MAPQ = [6.02 * (AS - S) / a * f^2] - [4.343 ln(1 + n_near)],  clamped to [0, 60], otherwise
    f    = (3 / ln l if l >= 50 else 1) * identity^2
    identity = 1 - (l * a - AS) / (a + b) / l

AS and XS are the best and second-best alignment scores, S = max(XS, T) with T the reporting
threshold (`min_score`, so an unseen second place counts as a barely reportable one), a the match
score and a + b what a mismatch costs against a match, l the longer of the alignment's spans on the
read (clips excluded) and on the reference, n_near the number of other placements scoring within
the larger of a mismatch and a one-base gap of the best (bwa's `sub_n`: within 7 with its scores,
so a second place one mismatch away counts), and [x] x rounded to the nearest integer, each term on
its own as bwa rounds them. The identity term lowers the MAPQ of poor alignments, which is where a
placement found by embedding search is most likely to have missed the true, better one. Never 255.
"""
from __future__ import annotations

import math

from dnaesa.align.types import Alignment
from dnaesa.options import MapOptions

MAPQ_MAX = 60


def assign_mapq(alignments: list[Alignment], opts: MapOptions) -> None:
    """Set `mapq`, `sub_score` and `n_equal` of the primary (alignments[0]); secondaries get 0."""
    if not alignments:
        return
    best = alignments[0]
    others = [a.score for a in alignments[1:]]
    best.sub_score = max(others) if others else None
    best.n_equal = sum(1 for s in others if s >= best.score)
    # bwa's sub_n: placements within a mismatch or a one-base gap of the best (7 with its scores)
    near_gap = max(opts.match + opts.mismatch, opts.gap_open + opts.gap_extend)
    near = sum(1 for s in others if s >= best.score - near_gap)
    aligned = max(sum(n for op, n in best.cigar if op in (0, 1)), best.ref_end - best.ref_start)
    best.mapq = mapq(best.score, best.sub_score, near, aligned, opts)
    for a in alignments[1:]:
        a.mapq = 0
        a.sub_score = best.score


def mapq(score: int, sub_score: int | None, n_near: int, aligned: int, opts: MapOptions) -> int:
    if score <= 0 or (sub_score is not None and sub_score >= score):
        return 0
    floor = max(sub_score if sub_score is not None else opts.min_score, opts.min_score)
    a, b = opts.match, opts.mismatch
    identity = 1.0 - (aligned * a - score) / (a + b) / max(aligned, 1)
    f = (3.0 / math.log(aligned) if aligned >= 50 else 1.0) * identity * identity
    q = int(6.02 * (score - floor) / a * f * f + 0.499)
    if n_near:
        q -= int(4.343 * math.log(1 + n_near) + 0.499)
    return max(0, min(MAPQ_MAX, q))
