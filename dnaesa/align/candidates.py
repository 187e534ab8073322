"""Candidate windows: where each read is aligned, chosen from its embedding search hits.

The one home of candidate selection. Owns `Candidate` (one window, as the refiner takes it),
`CandidateBatch` (a batch's windows as flat arrays, cheap to send to worker processes) and
`CandidateFinder`, which embeds a batch of reads, searches the store and turns the hits into
windows, pruned against each read's best score, with a deeper rescue tier for reads the first
does not place. Engines only run these stages in parallel.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from dnaesa.dna import reverse_complement
from dnaesa.options import MapOptions

#: bases added on each side of a candidate fragment beyond the read's length
WINDOW_SLACK = 16


@dataclass
class Candidate:
    """A window to search: reference [start, end) of a contig, and the read's orientation there
    (True: reverse complement; None: unknown, try both)."""

    contig_index: int
    start: int
    end: int
    reverse: bool | None


@dataclass
class CandidateBatch:
    """The candidate windows of a batch of reads as flat arrays (cheap to pickle, built vectorised).

    Read i's candidates are rows `offsets[i]:offsets[i + 1]` of `windows`, each (contig index,
    start, end, orientation) with orientation 0 (forward), 1 (reverse) or -1 (unknown: try both).
    """

    offsets: np.ndarray  # int64, (n + 1,)
    windows: np.ndarray  # int64, (m, 4)
    #: the rescue tier: candidates tried only for a read that none of the first tier places; a
    #: `PendingTier` until a read asks for it (few do: one read's `Aligner.map` would otherwise
    #: spend a tenth of its time making it), made whole before the batch is pickled
    rescue: CandidateBatch | PendingTier | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if isinstance(self.rescue, PendingTier):  # it holds the finder (the store), which must not travel
            state["rescue"] = self.rescue_tier()
        return state

    def rescue_tier(self) -> CandidateBatch | None:
        """The rescue tier of the whole batch, made now if it was pending."""
        if isinstance(self.rescue, PendingTier):
            self.rescue = self.rescue.made()
        return self.rescue

    @classmethod
    def empty(cls, n: int) -> CandidateBatch:
        return cls(np.zeros(n + 1, dtype=np.int64), np.zeros((0, 4), dtype=np.int64))

    def slice(self, lo: int, hi: int) -> CandidateBatch:
        """The candidates of reads lo..hi-1."""
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        rescue = self.rescue.slice(lo, hi) if self.rescue is not None else None
        return CandidateBatch(self.offsets[lo : hi + 1] - a, self.windows[a:b], rescue)

    def lists(self) -> list[list[Candidate]]:
        """`Candidate` lists, one per read (first tier)."""
        rows = self.windows.tolist()
        bounds = self.offsets.tolist()
        return [[Candidate(ci, st, en, None if o < 0 else bool(o)) for ci, st, en, o in rows[lo:hi]]
                for lo, hi in zip(bounds[:-1], bounds[1:])]

    def tiers(self) -> list[tuple[list[Candidate], Callable[[], list[Candidate]] | None]]:
        """Per read: its first-tier candidates and a function giving its rescue tier (or None)."""
        first = self.lists()
        if self.rescue is None:
            return [(c, None) for c in first]
        rescue = self.rescue
        return [(c, (lambda i=i: rescue.slice(i, i + 1).lists()[0])) for i, c in enumerate(first)]


@dataclass
class PendingTier:
    """A tier's search hits, made into a `CandidateBatch` (`make`: `CandidateFinder._tier`) only
    when asked for; a slice of it is made alone, with the same windows (each read's are its own)."""

    make: Callable[..., CandidateBatch]
    scores: np.ndarray
    ids: np.ndarray
    read_lens: np.ndarray
    eligible: np.ndarray
    #: `_tier`'s other arguments: (symmetric, k, depth, ratio, limit)
    args: tuple

    def slice(self, lo: int, hi: int) -> PendingTier:
        return PendingTier(self.make, self.scores[lo:hi], self.ids[lo:hi], self.read_lens[lo:hi],
                           self.eligible[lo:hi], self.args)

    def made(self) -> CandidateBatch:
        symmetric, k, depth, ratio, limit = self.args
        return self.make(self.scores, self.ids, symmetric, k, depth, self.read_lens, ratio, limit, self.eligible)

    def lists(self) -> list[list[Candidate]]:
        return self.made().lists()


def exact_rerank(store, exact, vectors: np.ndarray, picked: np.ndarray, k: int,
                 options: MapOptions) -> tuple[np.ndarray, np.ndarray]:
    """A two-tier index's top `k` (scores, ids) among a coarse search's `picked` ids: `store`
    (int4) scores them, the `prefilter_candidates` best on a prefix of each code in full; or, for a
    lean index (`exact`, its `SequenceTier`), `store` (the prefix alone) picks those best and
    `exact` scores from the reference's sequence the ones of them scoring on the prefix at least
    `prefilter_ratio` x the read's best (always the first `top_k`)."""
    prefilter = max(options.prefilter_candidates, k) if options.prefilter_candidates else 0
    if exact is None:
        return store.rerank(vectors, picked, k, prefilter)
    if 0 < prefilter < picked.shape[1]:
        scores, picked = store.rerank(vectors, picked, prefilter)
        near = scores >= np.float32(options.prefilter_ratio) * scores[:, :1]
        near[:, : options.top_k] = True  # the rescue's deeper hits (k) only where they are near too
        picked = np.where(near, picked, -1)
    return exact.rerank(vectors, picked, k)


def merge_hits(one: tuple[np.ndarray, np.ndarray], two: tuple[np.ndarray, np.ndarray],
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top `k` of two searches' (scores, ids) per read (-inf / -1 pads), each id once (both
    searches score an id alike), ties to the lower id."""
    ids = np.hstack([one[1], two[1]])
    scores = np.hstack([one[0], two[0]])
    by_id = np.argsort(ids, axis=1, kind="stable")
    ids, scores = np.take_along_axis(ids, by_id, 1), np.take_along_axis(scores, by_id, 1)
    repeat = np.zeros(ids.shape, dtype=bool)
    repeat[:, 1:] = ids[:, 1:] == ids[:, :-1]
    drop = repeat | (ids < 0)
    scores = np.where(drop, -np.inf, scores)
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ids ascending: ties to the lower id
    scores, ids = np.take_along_axis(scores, best, 1), np.take_along_axis(np.where(drop, -1, ids), best, 1)
    return scores, ids


#: the seeds' most-voted fragments aligned whatever their cosine: those with as many votes as the
#: best one (a read's copies in a repeat tie), at most this many
MOST_VOTED = 4


def most_voted(picked: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """The fragments among `picked` (by votes, -1 pads) with as many `votes` as each read's first,
    at most `MOST_VOTED` (int64 (n, MOST_VOTED), -1 pads)."""
    top, top_votes = picked[:, :MOST_VOTED], votes[:, :MOST_VOTED]
    return np.where((top_votes == top_votes[:, :1]) & (top_votes > 0), top, -1)


class CandidateFinder:
    """Reads -> `CandidateBatch`: embed with `encoder`, search `store`, and map the hits to windows
    of the reference. `fragments[i]` = (contig index, start, end) of the store's vector i.

    With `coarse` = (encoder, `CoarseTier`) (a tiered index) the coarse tier picks each read's
    `coarse_candidates` fragments and `store` scores only those (`VectorStore.rerank`): the
    `prefilter_candidates` best of them on a prefix of the exact tier's codes, in full; the coarse
    tier scores only the `coarse_sieve` fragments its sieve picks, when it has one. With `exact` (a
    lean index's `SequenceTier`) `store` holds only the prefix, which picks the `prefilter_candidates`
    that `exact` scores in full from the reference's sequence (those of them scoring on the prefix at
    least `prefilter_ratio` x the read's best: measured at 300 Mb, a ratio of 0.4 leaves 68 of 256
    a read and loses no true fragment from the top 16). With `seeds` (a lean or flat index's
    `SeedTable`, store/seeds.py) the fragments a read's seeds point to are scored first (by `exact`,
    or by a flat store's integer scan: the scores its search gives), and settle the reads that score
    as contained (`seed_accept`); the others take the tiers, merged with what all their seeds find,
    or a flat store's exhaustive search. Whatever the scores, the fragments the seeds vote for most
    (`most_voted`) are aligned too: a read's own fragment can score a lower cosine than a fragment
    of simpler sequence that shares part of it (measured at 300 Mb and 3.1 Gb, benchmarks/RESULTS.md)."""

    def __init__(self, encoder, store, fragments: np.ndarray, contig_lengths: Sequence[int], options: MapOptions,
                 fragment_len: int, coarse: tuple | None = None, exact=None, seeds=None):
        self.encoder, self.store, self.fragments, self.options = encoder, store, fragments, options
        self.coarse, self.exact, self.seeds = coarse, exact, seeds
        self.fragment_len = fragment_len
        self._contig_lengths = np.asarray(contig_lengths, dtype=np.int64)

    def __call__(self, seqs: Sequence[str]) -> CandidateBatch:
        """Embed and search a batch: the candidate windows of each read, as flat arrays."""
        if not seqs:
            return CandidateBatch.empty(0)
        o = self.options
        n = len(seqs)
        symmetric = self.encoder.strand_symmetric
        queries = list(seqs) if symmetric else list(seqs) + [reverse_complement(s) for s in seqs]
        rescue = o.rescue_candidates > 0 and o.rescue_top_k > o.top_k
        k = o.rescue_top_k if rescue else o.top_k
        scores, ids, voted = self._search(queries, k)
        if not symmetric:  # (seeds serve count sketches only, which are strand-free)
            scores, ids, voted = np.hstack([scores[:n], scores[n:]]), np.hstack([ids[:n], ids[n:]]), None
        read_lens = np.fromiter(map(len, seqs), dtype=np.int64, count=n)
        first = self._tier(scores, ids, symmetric, k, o.top_k, read_lens, o.candidate_ratio, o.max_candidates,
                           voted=voted)
        if rescue:
            expected = np.sqrt(read_lens / self.fragment_len)
            eligible = np.where(ids >= 0, scores, -np.inf).max(axis=1) >= o.rescue_min_similarity * expected
            first.rescue = PendingTier(self._tier, scores, ids, read_lens, eligible,
                                       (symmetric, k, k, 0.0, o.rescue_candidates))
        return first

    def _search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, ids) of each query's top `k` fragments, and the fragments its seeds vote for most
        (`most_voted`; -1 pads; None without seeds)."""
        vectors = self.encoder.encode(queries)
        o = self.options
        if self.seeds is None or not o.seed_candidates:
            return (*self._search_dense(queries, vectors, k), None)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        # half the seeds at genome scale (a lean index: lookups in a table of gigabytes); all of them
        # in a flat index's small table, where they see more of a read's paralogs (its MAPQ)
        votes = np.zeros((len(queries), o.seed_candidates), dtype=np.int64)
        picked, usable = self.seeds.candidates(queries, o.seed_candidates, o.seed_max_occ,
                                               half=self.coarse is not None, frequent_share=o.seed_frequent_share,
                                               votes=votes)
        # the most-voted fragments are aligned also for the reads the seeds do not settle: a crowded
        # repeat's or a read with frequent seeds still has them, often its own locus
        voted = most_voted(picked, votes)
        some = np.flatnonzero(usable)
        if len(some):
            first = self._score(vectors[some], picked[some], k)
            if first is None:  # a query the flat store cannot score alone: the exhaustive search
                return (*self._search_dense(queries, vectors, k), voted)
            scores[some], ids[some] = first
        lens = np.fromiter(map(len, queries), dtype=np.float64, count=len(queries))
        rest = np.flatnonzero(~usable | (scores[:, 0] < o.seed_accept * np.sqrt(lens / self.fragment_len)))
        if len(rest):
            left = [queries[i] for i in rest]
            dense = self._search_dense(left, vectors[rest], k)
            if self.coarse is None:  # a flat store's search is exhaustive and exact: the seeds add nothing
                scores[rest], ids[rest] = dense
            else:  # the coarse tier's picks, and what all the seeds find (a divergent read's few)
                rest_votes = np.zeros((len(rest), o.seed_candidates), dtype=np.int64)
                picked, _ = self.seeds.candidates(left, o.seed_candidates, o.seed_max_occ, votes=rest_votes)
                scores[rest], ids[rest] = merge_hits(dense, self._score(vectors[rest], picked, k), k)
                by_all = most_voted(picked, rest_votes)  # all the seeds' votes, where they found any
                voted[rest] = np.where(by_all[:, :1] >= 0, by_all, voted[rest])
        return scores, ids, voted

    def _search_dense(self, queries: list[str], vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The search without seeds: a flat store's, or the tiers'."""
        return self.store.search(vectors, k) if self.coarse is None else self._search_tiers(queries, vectors, k)

    def _score(self, vectors: np.ndarray, picked: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The top `k` of the `picked` fragments (ids, -1 pads) by exact score: the lean index's
        `SequenceTier`, else the store's own (a flat store's integer scan)."""
        return (self.exact if self.exact is not None else self.store).rerank(vectors, picked, k)

    def _search_tiers(self, queries: list[str], vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The coarse tier's picks, scored by the exact tier (a tiered or lean index)."""
        encoder, tier = self.coarse
        o = self.options
        coarse_vectors = encoder.encode(queries)
        picked = tier.search(coarse_vectors, max(o.coarse_candidates, k), o.coarse_sieve)
        scores, ids = exact_rerank(self.store, self.exact, vectors, picked, k, o)
        if o.wide_below > 0:  # divergent reads: their true fragment may be past the prefix's picks
            lens = np.fromiter(map(len, queries), dtype=np.float64, count=len(queries))
            weak = np.flatnonzero(scores[:, 0] < o.wide_below * np.sqrt(lens / self.fragment_len))
            if len(weak):
                wide = max(o.wide_candidates, o.coarse_candidates, k)
                picked = tier.search(coarse_vectors[weak], wide, 0)  # exhaustive: the sieve's PQ loses these reads
                scores[weak], ids[weak] = exact_rerank(self.store, self.exact, vectors[weak], picked, k,
                                                       replace(o, prefilter_candidates=0))
        return scores, ids

    def _tier(self, scores: np.ndarray, ids: np.ndarray, symmetric: bool, k: int, depth: int,
              read_lens: np.ndarray, ratio: float, limit: int, eligible: np.ndarray | None = None,
              voted: np.ndarray | None = None) -> CandidateBatch:
        """Candidates from the first `depth` of the k hits per read (and strand); with `eligible`
        (bool per read), none for the reads where it is False. `voted` (symmetric only: fragment ids
        per read, -1 pads) are kept whatever their score, also from past the first `depth` hits."""
        if symmetric:  # one search serves both strands: candidates carry no strand
            top_s, top_i = scores[:, :depth], ids[:, :depth]
            forced = None
            if voted is not None:
                at = (ids[:, :, None] == voted[:, None, :]) & (voted[:, None, :] >= 0)  # (read, hit, voted)
                past = (voted >= 0) & ~at[:, :depth].any(axis=1)  # not among the first `depth`: a hit more
                extra_s = np.where(at.any(axis=1), np.where(at, scores[:, :, None], -np.inf).max(axis=1), 0)
                top_s = np.hstack([top_s, extra_s.astype(scores.dtype)])
                top_i = np.hstack([top_i, np.where(past, voted, -1)])
                forced = np.hstack([at[:, :depth].any(axis=2), past])
            strands = np.full(top_i.shape, -1, dtype=np.int8)
            return self.windows_from_hits(top_s, top_i, strands, read_lens, ratio, limit, eligible, forced)
        cols = np.r_[0:depth, k : k + depth]  # hits are [forward k | reverse k]
        strands = np.broadcast_to(np.repeat(np.array([[0, 1]], dtype=np.int8), depth, axis=1), (len(ids), 2 * depth))
        return self.windows_from_hits(scores[:, cols], ids[:, cols], strands, read_lens, ratio, limit, eligible)

    def windows_from_hits(self, scores: np.ndarray, ids: np.ndarray, strands: np.ndarray, read_lens: np.ndarray,
                    ratio: float | None = None, limit: int | None = None, eligible: np.ndarray | None = None,
                    forced: np.ndarray | None = None) -> CandidateBatch:
        """Windows around each read's best-scoring fragments, pruned against its best score.

        Row i of `scores`/`ids`/`strands` is read i's search hits; `strands` holds 0 (forward),
        1 (reverse) or -1 (either: align both orientations). Per read: the hits scoring at least
        `candidate_ratio` x its best score (which must be positive), best first (ties in hit order),
        at most `max_candidates`, and beside them those `forced` marks (the fragments a read's
        seeds vote for most: a close copy in simpler sequence can have the higher cosine), each
        widened by the read's length plus `WINDOW_SLACK` per side."""
        o = self.options
        ratio = o.candidate_ratio if ratio is None else ratio
        limit = o.max_candidates if limit is None else limit
        ok = ids >= 0
        best = np.where(ok, scores, -np.inf).max(axis=1, initial=-np.inf)
        # float32 throughout, as the per-read scalar code computed it (rows with best <= 0 keep nothing)
        threshold = np.maximum(best, 0) * scores.dtype.type(ratio)
        keep = ok & ((scores >= threshold[:, None]) | (False if forced is None else forced)) & (best > 0)[:, None]
        if eligible is not None:
            keep &= eligible[:, None]
        order = np.argsort(np.where(keep, -scores, np.inf), axis=1, kind="stable")
        by_row = np.arange(len(order))[:, None]
        chosen = keep[by_row, order] & (np.arange(order.shape[1]) < limit)
        if forced is not None:  # forced hits past the limit come too, in score order
            chosen |= (keep & forced)[by_row, order]
        counts = chosen.sum(axis=1)
        rows, cols = np.nonzero(chosen)
        picked = order[rows, cols]
        frags = self.fragments[ids[rows, picked]]
        pad = read_lens[rows] + WINDOW_SLACK
        windows = np.empty((len(rows), 4), dtype=np.int64)
        windows[:, 0] = frags[:, 0]
        windows[:, 1] = np.maximum(frags[:, 1] - pad, 0)
        windows[:, 2] = np.minimum(frags[:, 2] + pad, self._contig_lengths[frags[:, 0]])
        windows[:, 3] = strands[rows, picked]
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return CandidateBatch(offsets, windows)

