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
