"""Mapping quality: how sure we are that the primary placement is the true one.

    MAPQ = 0                                   when a second placement scores as well (XS >= AS)
    MAPQ = min(60, round(20 * (AS - max(XS, T)) / (a + b)) - 10 log10(1 + n_near))   otherwise

AS and XS are the best and second-best alignment scores, a + b the score a mismatch costs against
a match (5 with BWA-MEM's scores), T the reporting threshold (`min_score`, so an unseen second place
counts as a barely reportable one) and n_near the number of other placements within one mismatch of
the best. One mismatch of difference is worth phred 20: the chance that a sequencing error, not the
genome, made the difference. Never 255.
"""
from __future__ import annotations

import math

from dnaesa.align.types import Alignment
from dnaesa.options import MapOptions

MAPQ_MAX = 60
PHRED_PER_MISMATCH = 20.0


def assign_mapq(alignments: list[Alignment], opts: MapOptions) -> None:
    """Set `mapq`, `sub_score` and `n_equal` of the primary (alignments[0]); secondaries get 0."""
    if not alignments:
        return
    best = alignments[0]
    others = [a.score for a in alignments[1:]]
    best.sub_score = max(others) if others else None
    best.n_equal = sum(1 for s in others if s >= best.score)
    near = sum(1 for s in others if s > best.score - (opts.match + opts.mismatch))
    best.mapq = mapq(best.score, best.sub_score, near, opts.min_score, opts.match + opts.mismatch)
    for a in alignments[1:]:
        a.mapq = 0
        a.sub_score = best.score


def mapq(score: int, sub_score: int | None, n_near: int, min_score: int, mismatch_cost: int = 5) -> int:
    if sub_score is not None and sub_score >= score:
        return 0
    floor = max(sub_score if sub_score is not None else min_score, min_score)
    q = PHRED_PER_MISMATCH * (score - floor) / mismatch_cost - 10.0 * math.log10(1 + n_near)
    return int(max(0, min(MAPQ_MAX, round(q))))
