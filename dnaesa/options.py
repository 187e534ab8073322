"""Options of each stage as frozen dataclasses with one default each; they validate themselves.

The CLI reads its defaults from here, so a number that matters lives in one place.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from dnaesa.errors import OptionsError


@dataclass(frozen=True)
class IndexOptions:
    """How the reference is cut into fragments and stored.

    Fragments are `fragment_len` long at stride `fragment_len - max_read_len`, so every read of up
    to `max_read_len` bases lies wholly inside at least one fragment.
    """

    fragment_len: int = 1250
    max_read_len: int = 250
    #: store kind (`dnaesa/store/vector_store.py`): auto, flat, hnsw, int8, int4, tiered (int4
    #: plus a compact256 coarse tier that picks the candidates, `dnaesa/store/coarse.py`) or lean
    #: (the coarse tier, an int4 prefix, and exact scores from the reference's sequence,
    #: `dnaesa/store/sequence_tier.py`); `auto`
    #: takes tiered for references of 1,000,000 fragments (about 1 Gb) or more, int4 from 100,000
    #: (about 100 Mb), flat below
    index_kind: str = "auto"
    #: vectors per FAISS shard file (16,384 x 4,096 float32 = 268 MB): loading converts one at a time
    shard_size: int = 16_384

    def __post_init__(self) -> None:
        if not 50 <= self.max_read_len < self.fragment_len:
            raise OptionsError(f"max_read_len must be in [50, fragment_len), got {self.max_read_len}")
        if self.fragment_len > 100_000:
            raise OptionsError(f"fragment_len must be at most 100000, got {self.fragment_len}")
        if self.index_kind not in ("auto", "flat", "hnsw", "int8", "int4", "tiered", "lean"):
            raise OptionsError(f"index_kind must be auto, flat, hnsw, int8, int4, tiered or lean, got {self.index_kind!r}")
        if self.shard_size < 1000:
            raise OptionsError(f"shard_size must be at least 1000, got {self.shard_size}")

    @property
    def stride(self) -> int:
        return self.fragment_len - self.max_read_len


#: named presets of `MapOptions`, applied before individual options (as minimap2's -x)
PRESETS: dict[str, dict] = {
    # BWA-MEM's scores: for reads within a few percent of the reference
    "sr": {},
    # reads 10-20% divergent from the reference (a related strain or species): a mismatch costs
    # less, so that an alignment of 80% identity still scores well above the threshold
    "divergent": {"mismatch": 2, "gap_open": 4, "gap_extend": 1},
}


@dataclass(frozen=True)
class MapOptions:
    """How reads are searched, aligned and scored (scores as BWA-MEM: +1, -4, gap 6 + 1 per base)."""

    top_k: int = 16
    #: keep candidates whose embedding score is at least this fraction of the read's best
    candidate_ratio: float = 0.6
    #: at most this many candidates per read go to dynamic programming
    max_candidates: int = 16
    #: rescue of reads that no candidate places: the search returns this many hits per read, and a
    #: read left unplaced is aligned against up to `rescue_candidates` of them, unpruned (0 = off).
    #: Low-complexity reads (microsatellites) need it: fragments of similar composition fill the
    #: first 16 hits (43 of 100,000 human 150 bp reads; a search of 128 placed 41 of them correctly)
    rescue_top_k: int = 128
    rescue_candidates: int = 64
    #: ...but only a read whose best embedding score is at least this fraction of
    #: sqrt(read length / fragment length), about what a read inside a fragment scores. Unplaced
    #: microsatellite reads score 0.7-1.5 of it; reads 20% divergent from the reference, which no
    #: deeper search can place, 0.1-0.3 (measured), and rescuing them tripled the run time
    rescue_min_similarity: float = 0.5
    #: candidates within this many edits of the best get the full affine alignment
    edit_margin: int = 12
    match: int = 1
    mismatch: int = 4
    gap_open: int = 6
    gap_extend: int = 1
    clip_penalty: int = 5
    #: alignments scoring below this are reported unmapped (BWA-MEM's -T)
    min_score: int = 30
    #: a read that these scores leave unplaced is aligned again in its best `divergent_candidates`
    #: windows with the `divergent` preset's scores (reads 15-20% divergent from the reference)
    auto_divergent: bool = True
    divergent_candidates: int = 4
    #: extra alignments reported as secondary (flag 256)
    secondary: int = 0
    batch_size: int = 2048
    #: exact search by FAISS or by torch matrix products (see `VectorStore.to`)
    search_backend: str = "auto"
    #: a tiered store: fragments the coarse tier picks per read, then scored by the exact tier
    coarse_candidates: int = 2048
    #: ... of which this many, the best on a prefix of the exact tier's codes, are scored in full (0: all)
    prefilter_candidates: int = 256
    #: a lean store: of those, only the ones scoring on the prefix at least this x the read's best
    #: prefix score (and always the first top_k) are scored from the reference's sequence
    prefilter_ratio: float = 0.4
    #: ... and the coarse tier scores only the fragments its sieve (`store/sieve.py`) picks, this many a read
    #: (0: all, exhaustively)
    coarse_sieve: int = 8192
    #: a tiered/lean store: a read whose best exact score is below this x what a read inside a
    #: fragment scores (sqrt(read length / fragment length)) is searched again widely: the coarse
    #: tier's `wide_candidates` best (exhaustively, not through its sieve), every one scored in
    #: full (0: off). Divergent reads score low
    #: (10%: about 0.4, 15%: 0.26 at the median), 1%-error reads high (0.74 at the 1st percentile)
    wide_below: float = 0.6
    wide_candidates: int = 8192
    #: a lean or flat store with seeds (`store/seeds.py`): the fragments a read's seeds point to, at most
    #: this many, are scored by the exact tier first (0: no seeds) ...
    seed_candidates: int = 64
    #: ... unless more than this share of its seeds (0: any) is seen more often than this in the
    #: reference (a repeat); such seeds cast no vote
    seed_max_occ: int = 256
    seed_frequent_share: float = 0.0
    #: ... and settle the read when its best scores at least this x what a read inside a fragment
    #: scores; any other read is searched by the coarse tier as without seeds
    seed_accept: float = 0.8

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= 1024:
            raise OptionsError(f"top_k must be in [1, 1024], got {self.top_k}")
        if not 0.0 <= self.candidate_ratio <= 1.0:
            raise OptionsError(f"candidate_ratio must be in [0, 1], got {self.candidate_ratio}")
        if self.max_candidates < 1:
            raise OptionsError(f"max_candidates must be at least 1, got {self.max_candidates}")
        if not 0 <= self.rescue_top_k <= 1024 or self.rescue_candidates < 0:
            raise OptionsError(f"rescue_top_k must be in [0, 1024] and rescue_candidates >= 0, got "
                             f"{self.rescue_top_k}, {self.rescue_candidates}")
        if self.match < 1 or self.mismatch < 1 or self.gap_open < 0 or self.gap_extend < 1:
            raise OptionsError("scores must be positive: match >= 1, mismatch >= 1, gap_open >= 0, gap_extend >= 1")
        if self.secondary < 0:
            raise OptionsError(f"secondary must be >= 0, got {self.secondary}")
        if self.search_backend not in ("auto", "faiss", "torch", "torch-bf16"):
            raise OptionsError(f"search_backend must be auto, faiss, torch or torch-bf16, got {self.search_backend!r}")
        if not 1 <= self.coarse_candidates <= 8192:
            raise OptionsError(f"coarse_candidates must be in [1, 8192], got {self.coarse_candidates}")
        if self.prefilter_candidates < 0:
            raise OptionsError(f"prefilter_candidates must be >= 0, got {self.prefilter_candidates}")
        if not 0.0 <= self.prefilter_ratio <= 1.0:
            raise OptionsError(f"prefilter_ratio must be in [0, 1], got {self.prefilter_ratio}")
        if not 0.0 <= self.wide_below <= 1.0:
            raise OptionsError(f"wide_below must be in [0, 1], got {self.wide_below}")
        if not 1 <= self.wide_candidates <= 8192:
            raise OptionsError(f"wide_candidates must be in [1, 8192], got {self.wide_candidates}")
        if not 0 <= self.seed_candidates <= 8192:
            raise OptionsError(f"seed_candidates must be in [0, 8192], got {self.seed_candidates}")
        if self.seed_max_occ < 1:
            raise OptionsError(f"seed_max_occ must be at least 1, got {self.seed_max_occ}")
        if not 0.0 <= self.seed_frequent_share < 1.0:
            raise OptionsError(f"seed_frequent_share must be in [0, 1), got {self.seed_frequent_share}")
        if not 0.0 <= self.seed_accept <= 1.0:
            raise OptionsError(f"seed_accept must be in [0, 1], got {self.seed_accept}")
        if not 0 <= self.coarse_sieve <= 65536:
            raise OptionsError(f"coarse_sieve must be in [0, 65536], got {self.coarse_sieve}")
        if self.batch_size < 1:
            raise OptionsError(f"batch_size must be >= 1, got {self.batch_size}")


def resolve_options(preset: str = "sr", **given) -> tuple[IndexOptions, MapOptions]:
    """Options as minimap2 layers them: the defaults, then the preset (`-x`), then the options the
    user gave (None means "not given"). An unknown name or preset is an OptionsError."""
    if preset not in PRESETS:
        raise OptionsError(f"unknown preset {preset!r}: use {' or '.join(sorted(PRESETS))}")
    given = {k: v for k, v in given.items() if v is not None}
    index_names = {f.name for f in fields(IndexOptions)}
    map_names = {f.name for f in fields(MapOptions)}
    unknown = set(given) - index_names - map_names
    if unknown:
        raise OptionsError(f"unknown option(s): {', '.join(sorted(unknown))}")
    layered = {**PRESETS[preset], **given}
    return (IndexOptions(**{k: v for k, v in layered.items() if k in index_names}),
            MapOptions(**{k: v for k, v in layered.items() if k in map_names}))
