"""Paired-end reads: the insert-size distribution, the joint choice of a pair's placements, mate
rescue and pair-aware MAPQ, as BWA-MEM does them (`mem_pestat`, `mem_pair`, `mem_matesw`).

- `estimate_insert_size`: from pairs whose mates are both placed uniquely (MAPQ >= 20) on one
  contig; the commonest orientation (FR, RF or FF) is the library's; outliers beyond the quartiles
  +- 2 IQR are dropped, then mean and sd (BWA-MEM's rule). Proper pairs are those of that
  orientation whose insert lies within mean +- `PROPER_SDS` sd.
- `choose_pair`: every placement of mate 1 against every placement of mate 2. A proper pair scores
  AS1 + AS2 + 0.721 ln(2 erfc(|z| / sqrt 2)) (BWA-MEM's insert-size log-likelihood, z the insert's
  z-score); two independent placements score AS1 + AS2 - `UNPAIRED_PENALTY`. The best wins.
- Mate rescue: the window that the insert size allows beside each confident placement of one
  mate is searched for the other (the embedding search may miss a repetitive or divergent mate).
- MAPQ: with a proper pair, q_pe = 6.02 (best pair score - max(second pair, unpaired)), and each
  mate gets max(q_se, min(q_pe, q_se + 40)), at most 60: a unique mate vouches for its partner.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dnaesa.align.candidates import Candidate
from dnaesa.align.mapq import MAPQ_MAX
from dnaesa.align.types import Alignment
from dnaesa.errors import OptionsError

#: a proper pair's insert lies within mean +- this many sd
PROPER_SDS = 4.0
#: what two independently placed mates pay against a proper pair (BWA-MEM's -U)
UNPAIRED_PENALTY = 17
#: pairs needed to estimate the insert size (else no pair is proper and no mate is rescued)
MIN_PAIRS = 20
#: only placements scoring within this much of a mate's best enter the pairing
PAIR_SCORE_DROP = 30
#: a mate placed with at least this MAPQ anchors a rescue of the other, and an insert-size sample
CONFIDENT_MAPQ = 20


@dataclass(frozen=True)
class InsertSize:
    """The library's insert-size distribution and mate orientation ("FR", "RF" or "FF")."""

    mean: float
    sd: float
    orientation: str = "FR"
    pairs: int = 0

    @property
    def low(self) -> float:
        return max(0.0, self.mean - PROPER_SDS * self.sd)

    @property
    def high(self) -> float:
        return self.mean + PROPER_SDS * self.sd

    def describe(self) -> str:
        origin = f"from {self.pairs} pairs" if self.pairs else "given"
        return f"insert size {self.mean:.1f} +- {self.sd:.1f} ({self.orientation}, {origin})"


def parse_insert_size(text: str) -> InsertSize:
    """`-I mean,sd` (as bwa's -I): "400,40"; OptionsError otherwise."""
    parts = text.split(",")
    try:
        mean, sd = float(parts[0]), float(parts[1]) if len(parts) > 1 else float(parts[0]) * 0.1
    except (ValueError, IndexError):
        raise OptionsError(f"-I wants MEAN,SD (e.g. 400,40), got {text!r}") from None
    if mean <= 0 or sd <= 0 or len(parts) > 2:
        raise OptionsError(f"-I wants a positive MEAN,SD (e.g. 400,40), got {text!r}")
    return InsertSize(mean, sd)


def orientation_and_insert(a: Alignment, b: Alignment) -> tuple[str, int] | None:
    """("FR" | "RF" | "FF", insert length) of two placements on one contig, else None. The insert
    runs from the leftmost to the rightmost reference base of the two; FR: the leftmost mate is
    forward and the other reverse (the usual Illumina library)."""
    if a.contig_index != b.contig_index:
        return None
    left, right = (a, b) if (a.ref_start, a.ref_end) <= (b.ref_start, b.ref_end) else (b, a)
    if left.reverse == right.reverse:
        kind = "FF"
    else:
        kind = "FR" if not left.reverse else "RF"
    return kind, max(a.ref_end, b.ref_end) - min(a.ref_start, b.ref_start)


def estimate_insert_size(pairs: Sequence[tuple[list[Alignment], list[Alignment]]]) -> InsertSize | None:
    """The distribution from pairs of placement lists (primary first); None from too few pairs."""
    by_kind: dict[str, list[int]] = {"FR": [], "RF": [], "FF": []}
    for first, second in pairs:
        if not first or not second or min(first[0].mapq, second[0].mapq) < CONFIDENT_MAPQ:
            continue
        found = orientation_and_insert(first[0], second[0])
        if found is not None:
            by_kind[found[0]].append(found[1])
    kind, sizes = max(by_kind.items(), key=lambda item: len(item[1]))
    if len(sizes) < MIN_PAIRS:
        return None
    values = np.asarray(sizes, dtype=np.float64)
    q1, q3 = np.percentile(values, [25, 75])
    iqr = q3 - q1
    kept = values[(values >= q1 - 2 * iqr) & (values <= q3 + 2 * iqr)]
    return InsertSize(float(kept.mean()), max(float(kept.std()), 1.0), kind, len(sizes))


@dataclass
class PairChoice:
    """The placements chosen for a pair (None: that mate is unmapped) and whether they are proper."""

    first: Alignment | None
    second: Alignment | None
    proper: bool = False


def _pair_score(a: Alignment, b: Alignment, insert: InsertSize | None) -> float | None:
    """BWA-MEM's score of a proper pair, or None when the two do not make one."""
    if insert is None:
        return None
    found = orientation_and_insert(a, b)
    if found is None or found[0] != insert.orientation or not insert.low <= found[1] <= insert.high:
        return None
    z = abs(found[1] - insert.mean) / insert.sd
    return a.score + b.score + 0.721 * math.log(max(2.0 * math.erfc(z / math.sqrt(2.0)), 1e-300))


def proper_partner(anchor: Alignment, others: Sequence[Alignment], insert: InsertSize) -> bool:
    """True when one of `others` makes a proper pair with `anchor`."""
    return any(_pair_score(anchor, other, insert) is not None for other in others)


def choose_pair(first: list[Alignment], second: list[Alignment], insert: InsertSize | None) -> PairChoice:
    """The best proper pair, or each mate's own best when that scores higher; sets pair-aware MAPQ.

    Both lists are a mate's placements, primary first, with single-end MAPQ already set."""
    if not first or not second:
        return PairChoice(first[0] if first else None, second[0] if second else None)
    unpaired = first[0].score + second[0].score - UNPAIRED_PENALTY
    scored = []
    for a in first:
        if a.score < first[0].score - PAIR_SCORE_DROP:
            continue
        for b in second:
            if b.score < second[0].score - PAIR_SCORE_DROP:
                continue
            s = _pair_score(a, b, insert)
            if s is not None:
                scored.append((s, a, b))
    if not scored:
        return PairChoice(first[0], second[0])
    scored.sort(key=lambda item: -item[0])
    best, a, b = scored[0]
    if best < unpaired:
        return PairChoice(first[0], second[0])
    rival = max(scored[1][0] if len(scored) > 1 else -math.inf, unpaired)
    q_pe = int(max(0, min(MAPQ_MAX, 6.02 * (best - rival) + 0.499)))
    for mate, own in ((a, first), (b, second)):
        q_se = mate.mapq if mate is own[0] else 0
        mate.mapq = max(q_se, min(q_pe, q_se + 40))
    return PairChoice(a, b, proper=True)


def rescue_window(anchor: Alignment, read_len: int, insert: InsertSize, contig_len: int) -> Candidate | None:
    """Where the insert size puts the mate of `anchor`, and on which strand (FR and RF libraries)."""
    if insert.orientation == "FF":
        return None
    reach = int(insert.high) + read_len
    mate_reverse = not anchor.reverse
    anchor_is_left = (insert.orientation == "FR") != anchor.reverse
    if anchor_is_left:
        lo, hi = anchor.ref_start, anchor.ref_start + reach
    else:
        lo, hi = anchor.ref_end - reach, anchor.ref_end
    lo, hi = max(lo, 0), min(hi, contig_len)
    if hi - lo < read_len // 2:
        return None
    return Candidate(anchor.contig_index, lo, hi, mate_reverse)
