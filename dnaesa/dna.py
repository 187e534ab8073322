"""Bases: the complement table and reverse complement, the one home for them.

Sequences in dnaesa are `str` of uppercase ACGTN (the readers normalise IUPAC codes to N);
lowercase is complemented too, for sequence that has not been through them.
"""
from __future__ import annotations

COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def reverse_complement(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]
