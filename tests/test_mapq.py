"""MAPQ: bwa mem's single-end estimate (`mem_approx_mapq_se`), figures worked out by hand from it."""
from __future__ import annotations

from dnaesa.align.mapq import assign_mapq
from dnaesa.align.types import Alignment
from dnaesa.options import MapOptions


def _hit(score: int, start: int = 0, length: int = 150, cigar=None) -> Alignment:
    cigar = cigar or [(0, length)]
    span = sum(n for op, n in cigar if op in (0, 2))
    return Alignment("c", 0, start, start + span, False, cigar, 0, str(length), score)


def _mapq(*hits: Alignment) -> int:
    found = list(hits)
    assign_mapq(found, MapOptions())
    return found[0].mapq


def test_second_place_one_mismatch_away_counts_as_bwa_sub_n():
    # 150 bp exact (AS 150), XS 145: 6.02 * 5 * (3 / ln 150)^2 = 10.8 -> 11, minus [4.343 ln 2] = 3
    assert _mapq(_hit(150), _hit(145, 5000)) == 8
    # XS 143 (a one-base gap: 6 + 1) still counts: 15.1 -> 15, minus 3; XS 142 does not: 17.3 -> 17
    assert _mapq(_hit(150), _hit(143, 5000)) == 12
    assert _mapq(_hit(150), _hit(142, 5000)) == 17
    # two such places: minus [4.343 ln 3] = 5
    assert _mapq(_hit(150), _hit(145, 5000), _hit(145, 9000)) == 11 - 5


def test_ties_unique_and_span():
    assert _mapq(_hit(150), _hit(150, 5000)) == 0
    assert _mapq(_hit(150)) == 60
    # l is the longer span: a 40-base deletion makes the reference span 190, which lowers identity
    # and f: AS 104, XS 100: l = 190 gives 5.4 -> 5, minus 3; l = 150 gives 6.7 -> 7, minus 3
    assert _mapq(_hit(104, cigar=[(0, 75), (2, 40), (0, 75)]), _hit(100, 5000)) == 2
    assert _mapq(_hit(104), _hit(100, 5000)) == 4
