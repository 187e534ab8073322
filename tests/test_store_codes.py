"""Compact code stores (int8, int4): the same hits as the exact store, memory-mapped search equal
to in-memory search, any dimension, the same scores from int8 and float32 products, and a damaged
shard refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dnaesa.errors import IndexDirError
from dnaesa.model.base import load_encoder
from dnaesa.store import codes as codes_mod
from dnaesa.store.codes import exact_in_float32, quantize
from dnaesa.store.vector_store import VectorStore, file_checksum


def _unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def lambda_vectors(lambda_contigs):
    """Default-encoder vectors of lambda's fragments (1,250 bp at stride 500), of 300 reads of
    150 bp cut from it, and which fragments hold each read wholly."""
    seq = lambda_contigs[0][1]
    starts = np.arange(0, len(seq) - 1250 + 1, 500)
    encoder = load_encoder("default", "cpu")
    read_starts = np.random.default_rng(3).integers(0, len(seq) - 150, 300)
    reads = encoder.encode([seq[s : s + 150] for s in read_starts])
    holds = (starts[None, :] <= read_starts[:, None]) & (read_starts[:, None] + 150 <= starts[None, :] + 1250)
    return encoder.encode([seq[s : s + 1250] for s in starts]), reads, holds


def test_sketch_codes_are_exact_on_their_grid(lambda_vectors):
    """The default encoder's coordinates are multiples of 0.5 before normalising: int8 holds them
    exactly, int4 up to a few clipped coordinates a vector."""
    frags = lambda_vectors[0]
    codes, clipped = quantize(frags, "int8")
    q = codes.view(np.int8).astype(np.float32)
    np.testing.assert_allclose(q / np.linalg.norm(q, axis=1, keepdims=True), frags, atol=1e-6)
    assert clipped == 0
    _, clipped4 = quantize(frags, "int4")
    assert clipped4 / len(frags) < 20


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_code_store_finds_the_exact_stores_hits(lambda_vectors, kind):
    """The top hit holds the read as often as the exact store's (a read lies in one or two
    fragments, whose near-equal scores may swap), and the top scores agree closely."""
    frags, reads, holds = lambda_vectors
    exact = VectorStore(frags.shape[1], "flat", shard_size=1000)
    exact.add(frags)
    compact = VectorStore(frags.shape[1], kind, shard_size=1000)
    compact.add(frags)
    e_scores, e_ids = exact.search(reads, 16)
    c_scores, c_ids = compact.to("cpu", "torch").search(reads, 16)
    rows = np.arange(len(reads))
    assert holds[rows, c_ids[:, 0]].mean() >= holds[rows, e_ids[:, 0]].mean() - 0.005
    assert holds[rows, c_ids[:, 0]].mean() >= 0.95
    if kind == "int8":
        np.testing.assert_array_equal(c_ids[:, 0], e_ids[:, 0])
    np.testing.assert_allclose(c_scores[:, 0], e_scores[:, 0], atol=1e-2 if kind == "int4" else 1e-5)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_int8_and_float32_products_give_the_same_scores(lambda_vectors, kind, monkeypatch):
    """CPUs without int8 dot-product instructions search with float32 products of the codes, in
    blocks of F32_BLOCK rows: the same float32 scores as `torch._int_mm` (the sums are exact)."""
    frags, reads, _ = lambda_vectors
    monkeypatch.setattr(codes_mod, "F32_BLOCK", 15)  # 95 fragments: shards of 40, each in blocks of 15
    results, int_mm_calls = {}, []
    real_int_mm = torch._int_mm
    monkeypatch.setattr(torch, "_int_mm", lambda *a, **k: int_mm_calls.append(1) or real_int_mm(*a, **k))
    for flag in ("1", "0"):
        monkeypatch.setenv("DNAESA_INT8_PRODUCTS", flag)
        assert exact_in_float32(reads, kind, frags.shape[1]) == (flag == "0")
        results[flag] = VectorStore(frags.shape[1], kind, shard_size=40)
        results[flag].add(frags)
        int_mm_calls.clear()
        results[flag] = results[flag].to("cpu", "torch").search(reads, 8)
        assert bool(int_mm_calls) == (flag == "1")  # the path asked for is the path taken
    np.testing.assert_array_equal(results["0"][0], results["1"][0])
    tie_free = results["1"][0][:, :-1] > results["1"][0][:, 1:]  # ids may differ only among equal scores
    assert np.array_equal(results["0"][1][:, :-1][tie_free], results["1"][1][:, :-1][tie_free])


def test_float32_products_are_not_used_where_they_could_round(monkeypatch):
    monkeypatch.setenv("DNAESA_INT8_PRODUCTS", "0")
    spread = np.zeros((1, 4096), dtype=np.float32)
    spread[0, :2] = [1.0, 0.0078]  # an off-grid vector: int8 codes up to 127
    assert exact_in_float32(spread, "int4", 4096)  # 127 x 8 x 4,096 < 2**24
    assert not exact_in_float32(spread, "int8", 4096)  # 127 x 127 x 4,096 is not


@pytest.mark.parametrize("dim", [64, 255])
def test_memory_mapped_search_equals_in_memory_search(tmp_path, dim):
    """A saved code store, read back as memory maps in several shards, returns the very hits of
    the store built in memory; an odd dimension and trained-encoder floats (no grid) work too."""
    base, queries = _unit(5000, dim, 0), _unit(300, dim, 1)
    built = VectorStore(dim, "int4", shard_size=1200)
    built.add(base[:2600])
    built.add(base[2600:])
    want = built.to("cpu", "torch").search(queries, 10)
    names = built.save(tmp_path)
    checksums = {name: file_checksum(tmp_path / name) for name in names}
    mapped = VectorStore.load(tmp_path, names, dim, "int4", 1200, ntotal=5000, checksums=checksums).to("cpu", "torch")
    assert all(isinstance(s, np.memmap) for s in mapped.shards)
    got = mapped.search(queries, 10)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    exact = np.argsort(-(queries @ base.T), axis=1)[:, 0]
    assert (got[1] == exact[:, None]).any(axis=1).mean() > 0.97  # 4-bit floats: a coarse but useful search


def test_damaged_code_shard_is_refused(tmp_path):
    store = VectorStore(32, "int8", shard_size=1000)
    store.add(_unit(1500, 32, 0))
    names = store.save(tmp_path)
    checksums = {name: file_checksum(tmp_path / name) for name in names}
    with open(tmp_path / names[1], "r+b") as fh:
        fh.seek(-1, 2)
        fh.write(b"\x7f")
    with pytest.raises(IndexDirError, match="shard001.npy.*checksum"):
        VectorStore.load(tmp_path, names, 32, "int8", 1000, ntotal=1500, checksums=checksums).to("cpu", "torch")


def test_non_finite_vectors_are_not_stored():
    bad = _unit(10, 16, 0)
    bad[3, 2] = np.nan
    for kind in ("flat", "int4"):
        with pytest.raises(ValueError, match="NaN"):
            VectorStore(16, kind).add(bad)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_code_search_matches_cpu():
    base, queries = _unit(5000, 64, 0), _unit(200, 64, 1)
    store = VectorStore(64, "int4", shard_size=2000)
    store.add(base)
    s1, i1 = store.to("cpu").search(queries, 8)
    s2, i2 = store.to("cuda").search(queries, 8)
    assert (i1[:, 0] == i2[:, 0]).mean() > 0.99 and np.allclose(s1, s2, atol=2e-3)
