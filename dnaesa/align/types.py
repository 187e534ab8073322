"""`Alignment`: one placement of a read on the reference, as the writer and the API see it."""
from __future__ import annotations

from dataclasses import dataclass, field

#: pysam CIGAR operation codes -> letters
CIGAR_OPS = "MIDNSHP=X"


@dataclass
class Alignment:
    """A read placed on the reference; coordinates 0-based, half-open, on the forward strand.

    `cigar` is a list of (pysam op code, length), in reference order (for a reverse-strand read it
    describes the reverse complement of the read, as SAM does). Soft clips are part of it.
    """

    contig: str
    contig_index: int
    ref_start: int
    ref_end: int
    reverse: bool
    cigar: list[tuple[int, int]]
    nm: int
    md: str
    score: int
    sub_score: int | None = None
    mapq: int = 0
    #: equally good placements found besides this one (for MAPQ and XA-like reporting)
    n_equal: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def cigar_string(self) -> str:
        return "".join(f"{n}{CIGAR_OPS[op]}" for op, n in self.cigar)

    @property
    def strand(self) -> str:
        return "-" if self.reverse else "+"

    @property
    def query_length(self) -> int:
        """Read length implied by the CIGAR (M, I, S, =, X)."""
        return sum(n for op, n in self.cigar if op in (0, 1, 4, 7, 8))
