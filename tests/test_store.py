"""The vector store: shards merge to the same hits as one index; torch search equals FAISS; save/load."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dnaesa.errors import IndexDirError
from dnaesa.store.vector_store import VectorStore


def _unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors():
    return _unit(5000, 64, 0), _unit(200, 64, 1)


def test_shards_merge_like_one_index(vectors):
    base, queries = vectors
    one, many = VectorStore(64), VectorStore(64, shard_size=1000)
    one.add(base)
    many.add(base[:2500])
    many.add(base[2500:])
    assert len(many.shards) == 5 and many.ntotal == 5000
    s1, i1 = one.search(queries, 10)
    s2, i2 = many.search(queries, 10)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2)
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    assert np.array_equal(i1, exact)


def test_torch_backend_matches_faiss(vectors):
    base, queries = vectors
    store = VectorStore(64, shard_size=2000)
    store.add(base)
    s1, i1 = store.search(queries, 8)
    store.to("cpu", backend="torch")
    s2, i2 = store.search(queries, 8)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2, atol=1e-5)


def test_k_larger_than_store_pads_with_minus_one(vectors):
    base, queries = vectors
    store = VectorStore(64)
    store.add(base[:3])
    scores, ids = store.search(queries[:2], 5)
    assert ids.shape == (2, 5) and (ids[:, 3:] == -1).all() and set(ids[0, :3]) == {0, 1, 2}


def test_save_load_roundtrip(vectors, tmp_path):
    base, queries = vectors
    store = VectorStore(64, kind="hnsw", shard_size=3000)
    store.add(base)
    names = store.save(tmp_path)
    again = VectorStore.load(tmp_path, names, 64, "hnsw", 3000)
    assert np.array_equal(store.search(queries, 5)[1], again.search(queries, 5)[1])
    exact = np.argsort(-(queries @ base.T), axis=1)[:, 0]
    assert (again.search(queries, 1)[1][:, 0] == exact).mean() > 0.95


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_search_matches_cpu(vectors):
    base, queries = vectors
    store = VectorStore(64)
    store.add(base)
    s1, i1 = store.search(queries, 8)
    store.to("cuda")
    s2, i2 = store.search(queries, 8)
    assert (i1[:, 0] == i2[:, 0]).mean() > 0.99 and np.allclose(s1, s2, atol=2e-3)


def test_search_only_store_releases_faiss(vectors):
    base, queries = vectors
    store = VectorStore(64, shard_size=2000)
    store.add(base)
    s1, i1 = store.search(queries, 8)
    store.to("cpu", backend="torch", keep_faiss=False)
    assert store.shards == [] and store.ntotal == 5000
    s2, i2 = store.search(queries, 8)
    assert np.array_equal(i1, i2)
    with pytest.raises(ValueError, match="released"):
        store.to("cpu", backend="faiss")


def test_spilled_shards_load_lazily_and_search_like_one_index(vectors, tmp_path):
    """Building spills full shards to disk as they fill; a lazy load reads them only when needed,
    and both the FAISS and the torch search over them equal one in-memory index."""
    base, queries = vectors
    one = VectorStore(64)
    one.add(base)
    building = VectorStore(64, shard_size=1500)
    names = []
    for lo in range(0, 5000, 700):
        building.add(base[lo : lo + 700])
        names += building.spill(tmp_path, len(names))
        assert len(building.shards) == 1  # at most one shard in memory while building
    names += building.spill(tmp_path, len(names), keep_last=False)
    assert names == [f"shard{n:03d}.faiss" for n in range(4)] and building.shards == []
    lazy = VectorStore.load(tmp_path, names, 64, "flat", 1500, ntotal=5000)
    assert lazy.shards == [] and lazy.ntotal == 5000  # nothing read yet
    want = one.search(queries, 10)
    np.testing.assert_array_equal(lazy.search(queries, 10)[1], want[1])
    assert len(lazy.shards) == 4
    matrix_store = VectorStore.load(tmp_path, names, 64, "flat", 1500, ntotal=5000).to("cpu", "torch", keep_faiss=False)
    assert matrix_store.shards == [] and matrix_store.ntotal == 5000
    np.testing.assert_array_equal(matrix_store.search(queries, 10)[1], want[1])
    with pytest.raises(IndexDirError, match="manifest"):
        VectorStore.load(tmp_path, names, 64, "flat", 1500, ntotal=4000).to("cpu", "torch", keep_faiss=False)


def _sketch_store(lambda_contigs, shard_size=1000):
    """A flat store of lambda's 1,250 bp windows (every 250 bp) as 1,024-dim count sketches, with
    exact duplicates (ties), and sketch queries: reads, random sequence, a repeat, no k-mer at all."""
    from dnaesa.model.kmer import KmerSketchEncoder

    enc = KmerSketchEncoder(k=8, dim=1024)
    seq = lambda_contigs[0][1]
    windows = [seq[s : s + 1250] for s in range(0, len(seq) - 1250, 250)]
    windows += windows[:20]  # the same vectors again: equal scores
    store = VectorStore(1024, shard_size=shard_size)
    store.add(enc.encode(windows))
    rng = np.random.default_rng(3)
    reads = [seq[s : s + 150] for s in rng.integers(0, len(seq) - 150, 60)]
    reads += ["".join(rng.choice(list("ACGT"), 150)) for _ in range(5)] + ["ACGT" * 30, "N" * 150]
    return store, enc.encode(reads)


@pytest.mark.parametrize("k", [1, 16, 400])
def test_sparse_search_of_one_query_equals_faiss_to_the_bit(lambda_contigs, k):
    """`Aligner.map`'s search (one query: a scan of the query's non-zero coordinates, then FAISS on
    the vectors near the scan's k-th best) gives FAISS's scores and ids exactly, ties included,
    across shards, for k up to the whole store."""
    store, queries = _sketch_store(lambda_contigs, shard_size=64)
    assert len(store.shards) > 2
    store._small_searches = 10**6  # past SPARSE_AFTER
    ties = 0
    for q in queries:
        assert store._sparse_ready(q[None])
        s1, i1 = store._search_sparse(q[None], min(k, store.ntotal))
        s2, i2 = store._search_shards(q[None], min(k, store.ntotal))
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(s1, s2)
        ties += len(np.unique(s1[0][s1[0] > 0])) < int((s1[0] > 0).sum())
    assert ties or k == 1  # equal scores (the duplicated windows) were among the hits


def test_single_queries_switch_to_the_sparse_scan_after_a_few(lambda_contigs):
    """`search` of one query goes through FAISS until the `SPARSE_AFTER`-th, then through the copy;
    adding vectors drops the copy; batches never make one."""
    from dnaesa.store import vector_store

    store, queries = _sketch_store(lambda_contigs, shard_size=100)
    before = [store.search(q[None], 16) for q in queries[:3]]
    assert store._columns is None
    store.search(queries[:50], 16)
    assert store._columns is None
    for q in queries[: vector_store.SPARSE_AFTER]:
        store.search(q[None], 16)
    assert store._columns is not None and store._columns.shape == (1024, store.ntotal)
    after = [store.search(q[None], 16) for q in queries[:3]]
    for (s1, i1), (s2, i2) in zip(before, after):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(s1, s2)
    store.add(store.shards[0].reconstruct_n(0, 5))
    assert store._columns is None
    dense = np.full((1, 1024), 1 / 32, dtype=np.float32)  # a dense encoder's query: FAISS, not the copy
    assert not store._sparse_ready(dense) and store._sparse_ready(queries[:1])
    np.testing.assert_array_equal(store.search(dense, 16)[1], store._search_shards(dense, 16)[1])
