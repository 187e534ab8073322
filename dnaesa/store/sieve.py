"""The coarse tier's sieve: 4-bit product-quantisation codes that narrow the coarse search.

At genome scale the coarse tier's exhaustive pass is most of a read's cost: 3.1 M fragments x 256
int8 products, 20-40 CPU ms a read on an AVX2 core, as the host's load goes (benchmarks/RESULTS.md,
"Genome scale"; through the sieve, 11.4). The
sieve holds each fragment's coarse vector again as `m` 4-bit product-quantisation codes (FAISS
`IndexPQFastScan`: `m / 2` bytes a fragment, scanned with SIMD table lookups, several times
faster than the int8 products), picks each read's `k` best fragments by those approximate
scores, and the coarse tier scores only those exactly (int8 products, `CoarseTier.search`), so
the tier's top C is the exact top C among the sieve's `k` picks: the same as the exhaustive
pass whenever that top C is among them. How often it is, and what it buys, is measured at
300 Mb and 3.1 Gb in benchmarks/RESULTS.md; it is approximate, so it is an option
(`--coarse-sieve K`, 0: the exhaustive pass).

The sieve is derived from the coarse shards alone (trained on a sample that depends only on the
number of fragments and their codes, on one thread: the same bytes on any machine), written as
one FAISS file named in the manifest with its checksum, and rebuilt whenever the coarse tier
changes (a build, the upgrade of an int4 index, an added genome); an index without one (made
before it existed) gets one in place the next time it is opened for a tiered search, or, where
the folder cannot take it (read-only, full, another writer), is searched exhaustively with one
warning line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dnaesa.store.coarse import COARSE_SCALE, CoarseTier

#: the manifest's `coarse_sieve`: FAISS PQ fast-scan codes of `m` sub-vectors of `nbits` bits,
#: trained on `train` coarse vectors drawn with `seed`; indexes of fewer than `min_fragments`
#: get none: at 300,001 fragments the sieve's 8,192 picks cost about what the exhaustive pass
#: does (2.5 against 2.7 CPU ms a read), at 3.1 M half (benchmarks/RESULTS.md, "Genome scale")
SIEVE_PARAMS = {"kind": "pq-fastscan", "m": 128, "nbits": 4, "train": 65536, "seed": 0, "min_fragments": 1_000_000}
#: vectors encoded at a time while building
ADD_CHUNK = 1 << 18


def sieve_file(ntotal: int) -> str:
    """The sieve's file name: it names the fragment count, so an index that grows (a genome added)
    writes a new file beside the old one and the manifest switches to it in one step."""
    return f"coarse_sieve_{ntotal}.faiss"


def wanted(params: dict | None, ntotal: int) -> bool:
    return bool(params) and ntotal >= params["min_fragments"]


def _rows(tier: CoarseTier, ids: np.ndarray) -> np.ndarray:
    """The coarse codes of `ids` (ascending) as float32 unit-scale vectors."""
    out = np.empty((len(ids), tier.dim), dtype=np.float32)
    shard = ids // tier.shard_size
    for s in np.unique(shard):
        sel = np.flatnonzero(shard == s)
        out[sel] = tier.shards[s][ids[sel] - s * tier.shard_size]
    return out / np.float32(COARSE_SCALE)


def build(tier: CoarseTier, params: dict):
    """A trained and filled FAISS index of the tier's vectors (one thread: the same bytes anywhere)."""
    import faiss
    from threadpoolctl import threadpool_limits

    n = tier.ntotal
    rng = np.random.default_rng(params["seed"])
    sample = np.sort(rng.choice(n, min(params["train"], n), replace=False))
    index = faiss.IndexPQFastScan(tier.dim, params["m"], params["nbits"], faiss.METRIC_INNER_PRODUCT)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(1):
            index.train(_rows(tier, sample))
            for lo in range(0, n, ADD_CHUNK):
                index.add(_rows(tier, np.arange(lo, min(n, lo + ADD_CHUNK))))
    finally:
        faiss.omp_set_num_threads(threads)
    return index


def write(index, path: Path) -> None:
    """Write the sieve to `path` (beside it first, then renamed); a failed write is an OSError."""
    import faiss

    tmp = path.with_name(path.name + ".new")
    try:
        faiss.write_index(index, str(tmp))
    except RuntimeError as err:  # FAISS reports a failed write (a full disk) as a RuntimeError
        tmp.unlink(missing_ok=True)
        text = str(err)
        why = "No space left on device" if "No space left" in text else text.rpartition("Error:")[2].strip()[:160]
        raise OSError(f"cannot write {tmp}: {why}") from err
    tmp.replace(path)


def load(path: Path, params: dict, dim: int, ntotal: int):
    """The sieve in `path`, checked against the manifest's parameters (ValueError otherwise; the
    file's checksum is the caller's)."""
    import faiss

    try:
        index = faiss.read_index(str(path))
    except RuntimeError as err:
        raise ValueError(f"{path}: not a readable sieve ({str(err).splitlines()[0]})") from err
    if not isinstance(index, faiss.IndexPQFastScan) or index.d != dim or index.ntotal != ntotal or \
            index.M != params["m"] or index.nbits != params["nbits"]:
        raise ValueError(f"{path}: the sieve does not match the manifest")
    return index

