"""The integer scan of a flat store (`store/integer_scan.py`, `store/_scan.c`): exact scores, ties
to the lower id, the compiled kernel (AVX2 and generic) and the numpy path equal to the bit."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from dnaesa import compiled
from dnaesa.store import integer_scan
from dnaesa.store.integer_scan import IntegerScan, integer_rows
from dnaesa.store.vector_store import VectorStore

COMPILED = integer_scan.kernel() is not None


@pytest.fixture(scope="module")
def sketch_store(lambda_contigs):
    """A flat store of lambda's 1,250 bp windows (every 250 bp) as the shipped encoder's vectors
    (8-mer count sketch plus spaced seeds at scale 1.5: multiples of 0.5), in shards of 64, with
    exact duplicates (ties); and queries: reads, random sequence, a repeat, no k-mer at all."""
    from dnaesa.model.base import load_encoder

    enc = load_encoder("default", "cpu")
    seq = lambda_contigs[0][1]
    windows = [seq[s : s + 1250] for s in range(0, len(seq) - 1250, 250)]
    windows += windows[:20]  # the same vectors again: equal scores
    store = VectorStore(enc.dim, shard_size=64)
    store.add(enc.encode(windows))
    rng = np.random.default_rng(3)
    reads = [seq[s : s + 150] for s in rng.integers(0, len(seq) - 150, 60)]
    reads += ["".join(rng.choice(list("ACGT"), 150)) for _ in range(5)] + ["ACGT" * 30, "N" * 150]
    return store, enc.encode(reads)


def _vectors(store):
    return np.concatenate([s.reconstruct_n(0, s.ntotal) for s in store.shards])


def _exact_top(base, queries, k):
    """Reference: exact rational scores in float64 from the integers, ties to the lower id."""
    ints_b, inv_b, _ = integer_rows(base, compiled=False)
    ints_q, inv_q, _ = integer_rows(queries, compiled=False)
    dots = ints_q.astype(np.int64) @ ints_b.astype(np.int64).T
    scores = dots * inv_b[None, :]
    ids = np.array([np.lexsort((np.arange(len(row)), -row))[:k] for row in scores])
    return np.take_along_axis(scores, ids, 1) * inv_q[:, None], ids


def test_integer_rows_recover_the_integers_and_refuse_the_rest():
    rng = np.random.default_rng(1)
    ints = rng.integers(-6, 7, (40, 96)) * rng.integers(0, 2, (40, 96)) + 3 * rng.integers(-2, 3, (40, 96))
    ints[:, 0] = 2  # a gcd of 1 at most, so the row is its own smallest multiple...
    ints[:, 1] = 3
    ints[5] *= 2  # ...except this one: its smallest multiple is half of it
    x = ints.astype(np.float32) / 2  # half-integers, as the spaced seeds make
    x[7] = 0  # a zero row is its own integer vector
    x[8, 3], x[9, 4], x[10, 5] = np.nan, np.inf, np.sqrt(2) / 10  # not finite; off the lattice
    x[11] = rng.standard_normal(96)  # a dense float vector
    x[12, :2] = [1.0, 200.0]  # beyond int8
    unit = x / np.maximum(np.linalg.norm(np.nan_to_num(x, posinf=1.0), axis=1, keepdims=True), 1e-12)
    got, inv, ok = integer_rows(unit, compiled=False)
    assert ok.tolist() == [i not in (8, 9, 10, 11, 12) for i in range(40)]
    want = ints.copy()
    want[5] //= 2
    want[7] = 0
    np.testing.assert_array_equal(got[ok], want[ok])
    assert not got[~ok].any()
    norms = np.sqrt((want[ok] ** 2).sum(1))
    np.testing.assert_array_equal(inv[ok], np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0))
    if COMPILED:
        for a, b in zip(integer_rows(unit), (got, inv, ok)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("k", [1, 16, 400])
def test_scan_is_exact_with_ties_to_the_lower_id_on_every_path(sketch_store, k, monkeypatch):
    monkeypatch.setattr(integer_scan, "NUMPY_QUERIES", 7)  # the numpy path in several rounds of queries
    store, queries = sketch_store
    base = _vectors(store)
    k = min(k, len(base))
    scan = IntegerScan.from_vectors([s.reconstruct_n(0, s.ntotal) for s in store.shards], store.dim, len(base))
    assert scan is not None and scan.blocks.shape[2] == integer_scan.LANES
    want_s, want_i = _exact_top(base, queries, k)
    paths = [dict(compiled=False)] + ([dict(simd=True), dict(simd=False)] if COMPILED else [])
    for path in paths:
        scores, ids = scan.search(queries, k, **path)
        np.testing.assert_array_equal(ids, want_i)
        np.testing.assert_array_equal(scores, want_s.astype(np.float32))
        for columns in (False, True):  # one query at a time: the same, through the blocks or the columns
            scan.columns, scan._single = None, (integer_scan.COLUMNS_AFTER if columns else -10**9)
            for q in (0, 61, 65, 66):  # a read, random sequence, a repeat, all N
                one = scan.search(queries[q : q + 1], k, **path)
                np.testing.assert_array_equal(one[1], ids[q : q + 1])
                np.testing.assert_array_equal(one[0], scores[q : q + 1])
            assert (scan.columns is not None) == (columns and path.get("compiled", True))
    ties = [(row[:-1] == row[1:]).any() for row in want_s[:, : min(k, 8)]]
    assert any(ties) or k == 1  # the duplicated windows tie, and the lower id came first


def test_rerank_scores_chosen_vectors_as_the_scan_does_on_every_path(sketch_store):
    store, queries = sketch_store
    base = _vectors(store)
    scan = IntegerScan.from_vectors([base], store.dim, len(base))
    all_s, all_i = scan.search(queries, len(base))
    rng = np.random.default_rng(8)
    picked = np.full((len(queries), 40), -1, dtype=np.int64)
    for r in range(len(queries)):  # some ids of each row, unordered, with pads between them
        chosen = rng.choice(len(base), 30, replace=False)
        picked[r, rng.choice(40, 30, replace=False)] = chosen
    picked[3] = -1  # a read with no candidate at all
    picked[4] = -1
    picked[4, 5:7] = [base.shape[0] - 20, 0]  # window 0 and its copy (a tie): the lower id first
    for path in [False] + ([True] if COMPILED else []):
        scores, ids = scan.rerank(queries, picked, 12, compiled=path)
        for r in range(len(queries)):
            mine = np.isin(all_i[r], picked[r])  # the full ranking restricted to the row's picks
            want_i, want_s = all_i[r][mine][:12], all_s[r][mine][:12]
            np.testing.assert_array_equal(ids[r, : len(want_i)], want_i)
            np.testing.assert_array_equal(scores[r, : len(want_i)], want_s)
            assert (ids[r, len(want_i) :] == -1).all() and np.isneginf(scores[r, len(want_i) :]).all()
        assert ids[4, :3].tolist() == [0, base.shape[0] - 20, -1] and scores[4, 0] == scores[4, 1]
    assert store.reranks() and store.rerank(queries, picked, 12)[1].tolist() == scan.rerank(queries, picked, 12)[1].tolist()


def test_flat_store_searches_through_the_scan_and_agrees_with_faiss(sketch_store):
    fixture, queries = sketch_store
    store = VectorStore(fixture.dim, shard_size=64)  # its own: this test adds to it
    store.add(_vectors(fixture))
    scores, ids = store.search(queries, 16)
    assert isinstance(store._scan, IntegerScan)
    faiss_s, faiss_i = store._search_shards(queries, 16)
    np.testing.assert_allclose(scores, faiss_s, atol=1e-6)
    distinct = np.abs(np.diff(faiss_s, axis=1)).min(axis=1) > 1e-5  # no near-ties: the same ids
    np.testing.assert_array_equal(ids[distinct], faiss_i[distinct])
    store.add(store.shards[0].reconstruct_n(0, 3))  # new vectors: the blocks are made again
    assert store._scan is None
    assert store.search(queries[:2], 16)[1].shape == (2, 16) and store._scan.n == store.ntotal


@pytest.mark.skipif(not COMPILED, reason="the copy serves the compiled single-query kernel only")
def test_single_queries_get_the_dimension_major_copy_after_a_few(sketch_store):
    """Batches never make it; the `COLUMNS_AFTER`-th search of one query does; it holds every
    vector's coordinates in id order."""
    store, queries = sketch_store
    base = _vectors(store)
    scan = IntegerScan.from_vectors([base], store.dim, len(base))
    for _ in range(3):
        scan.search(queries[:5], 8)
    assert scan.columns is None
    for q in queries[: integer_scan.COLUMNS_AFTER]:
        scan.search(q[None], 8)
    assert scan.columns is not None and scan.columns.shape == (store.dim, len(base))
    np.testing.assert_array_equal(scan.columns.T, integer_rows(base, compiled=False)[0])


def test_a_flat_store_too_large_for_the_int8_copy_stays_with_faiss(sketch_store, monkeypatch):
    from dnaesa.store import vector_store

    store, queries = sketch_store
    monkeypatch.setattr(vector_store, "SCAN_MAX_BYTES", store.ntotal * store.dim - 1)
    store.to("cpu", "faiss")
    np.testing.assert_array_equal(store.search(queries, 8)[1], store._search_shards(queries, 8)[1])
    assert store._scan is False


def test_vectors_that_are_not_integer_vectors_stay_with_faiss(sketch_store, lambda_contigs):
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((300, 64)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    store = VectorStore(64)
    store.add(dense)
    np.testing.assert_array_equal(store.search(dense[:5], 4)[1], store._search_shards(dense[:5], 4)[1])
    assert store._scan is False
    sketch, queries = sketch_store
    odd = queries[:3].copy()
    odd[0, 0] = 0.123  # a query off the lattice: the whole batch goes to FAISS
    sketch.to("cpu", "faiss")
    np.testing.assert_array_equal(sketch.search(odd, 8)[1], sketch._search_shards(odd, 8)[1])
    big = np.zeros((1, 2048), np.float32)
    big[0, 0], big[0, 1:] = 1.0, 127.0  # its integer sums could pass 2^24: not exact in float32
    scan = IntegerScan.from_vectors([big], 2048, 1)
    assert scan is not None and scan.largest == 127 and scan.search(big, 1) is None
    # a whole 48 kb genome as one read: its sums stay exact against the sketches (small integers)
    from dnaesa.model.base import load_encoder

    whole = load_encoder("default", "cpu").encode([lambda_contigs[0][1]])
    sketch_scan = IntegerScan.from_vectors([_vectors(sketch)], sketch.dim, sketch.ntotal)
    assert sketch_scan.largest < 127 and sketch_scan.search(whole, 4) is not None


@pytest.mark.parametrize("why", ["not built", "another version"])
def test_without_the_compiled_kernel_one_warning_and_the_same_results(sketch_store, monkeypatch, caplog, why):
    """No build (no C compiler at install), or a stale in-place build of another `_scan.c` (called
    with the wrong arguments it could crash): one warning line, and the numpy path's same bits."""
    store, queries = sketch_store
    store.to("cpu", "faiss")
    want = store.search(queries, 16)
    monkeypatch.setattr(compiled, "_libs", {})
    monkeypatch.setattr(compiled, "UNAVAILABLE", {})
    if why == "not built":
        monkeypatch.setattr(compiled.importlib.util, "find_spec", lambda name: None)
    else:
        if not COMPILED:
            pytest.skip("the compiled scan was not built here")
        abi, configure = compiled.KERNELS[compiled.SCAN]
        monkeypatch.setitem(compiled.KERNELS, compiled.SCAN, (abi + 1, configure))
    store.to("cpu", "faiss")
    with caplog.at_level(logging.WARNING, logger="dnaesa"):
        got = store.search(queries, 16)
        store.search(queries[:2], 16)
    assert len(caplog.records) == 1 and why in caplog.records[0].message
    assert why in compiled.UNAVAILABLE["dnaesa.store._scan"]
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
