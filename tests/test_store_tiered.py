"""The tiered store: the coarse tier's top C is exact (compiled and torch paths, ties to the lower
id), the exact tier's re-rank scores as exhaustive search does, a tiered index built at once equals
an int4 index upgraded in place, and reads are placed through it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dnaesa.errors import IndexDirError
from dnaesa.model.base import load_encoder
from dnaesa.options import IndexOptions
from dnaesa.pipeline import Aligner
from dnaesa.reference import Reference
from dnaesa.store import coarse as coarse_mod
from dnaesa.store import codes
from dnaesa.store.coarse import COARSE_SCALE, CoarseTier
from dnaesa.store.index_dir import load_index, open_index
from dnaesa.store.vector_store import VectorStore


@pytest.fixture(autouse=True)
def sieve_from_1024_fragments(monkeypatch):
    """The sieve (store/sieve.py) is built from 1,000,000 fragments; these small indexes get one too."""
    from dnaesa.store import sieve

    monkeypatch.setitem(sieve.SIEVE_PARAMS, "min_fragments", 1024)

def _brute_top(codes: np.ndarray, queries: np.ndarray, c: int) -> np.ndarray:
    scores = queries.astype(np.int64) @ codes.astype(np.int64).T
    ids = np.arange(len(codes))
    return np.stack([np.lexsort((ids, -row))[:c] for row in scores])


@pytest.mark.parametrize("use_numba", [True, False])
@pytest.mark.parametrize("c", [5, 300])
@pytest.mark.parametrize("int8_products", ["1", "0"])  # torch._int_mm, or float32 products (no VNNI)
def test_coarse_top_c_is_exact_with_ties(use_numba, c, int8_products, monkeypatch):
    if use_numba and not coarse_mod.HAVE_NUMBA:
        pytest.skip("numba not installed")
    monkeypatch.setenv("DNAESA_INT8_PRODUCTS", int8_products)
    rng = np.random.default_rng(3)
    # codes in {-1, 0, 1}: many equal scores, so the tie rule (lower id first) is exercised
    codes = rng.integers(-1, 2, size=(9_000, 32)).astype(np.int8)
    queries = rng.integers(-1, 2, size=(40, 32)).astype(np.int8)
    tier = CoarseTier(32, shard_size=2_500)  # 4 shards, blocks cross shard ends
    tier.add(codes / COARSE_SCALE)
    assert tier.clipped == 0 and tier.ntotal == 9_000
    tier.use_numba = use_numba
    calls, real_int_mm = [], torch._int_mm
    monkeypatch.setattr(torch, "_int_mm", lambda *a, **k: calls.append(1) or real_int_mm(*a, **k))
    got = tier.search(queries / COARSE_SCALE, c)
    assert np.array_equal(got, _brute_top(codes, queries, c))
    assert bool(calls) == (int8_products == "1")  # the path asked for is the path taken


def test_coarse_pads_when_fewer_vectors_than_c():
    tier = CoarseTier(16, shard_size=1000)
    tier.add(np.eye(16, dtype=np.float32)[:3])
    got = tier.search(np.eye(16, dtype=np.float32)[:2], 5)
    assert got[:, :3].tolist() == [[0, 1, 2], [1, 0, 2]] and (got[:, 3:] == -1).all()


@pytest.fixture(scope="module")
def int4_store():
    enc = load_encoder("kmer:k=6,dim=256", "cpu")
    rng = np.random.default_rng(5)
    seqs = ["".join(rng.choice(list("ACGT"), 300)) for _ in range(700)]
    store = VectorStore(256, "int4", shard_size=1000)
    store.add(enc.encode(seqs[:300]))
    store.add(enc.encode(seqs[300:]))  # ids run on across adds
    store2 = VectorStore(256, "int4", shard_size=250)  # 3 shards
    store2.add(enc.encode(seqs))
    reads = [s[20:170] for s in seqs[::7]]
    return store, store2, enc.encode(reads)


@pytest.mark.parametrize("use_numba", [True, False])
def test_rerank_of_all_ids_equals_exhaustive_search(int4_store, use_numba, monkeypatch):
    if use_numba and not codes.HAVE_NUMBA:
        pytest.skip("numba not installed")
    monkeypatch.setattr(codes, "HAVE_NUMBA", use_numba)
    store, sharded, queries = int4_store
    want_s, want_i = store.search(queries, 10)
    everything = np.tile(np.arange(700)[::-1], (len(queries), 1))  # any order in, same order out
    for s in (store, sharded):
        got_s, got_i = s.rerank(queries, everything, 10)
        assert np.array_equal(got_s, want_s)  # the same float32 numbers
        # the same ids, but for ties at the 10th score (exhaustive search leaves those to torch.topk)
        above = got_s > got_s[:, -1:]
        assert np.array_equal(np.where(above, got_i, -1), np.where(above, want_i, -1)) or \
            all(set(g[a]) == set(w[a]) for g, w, a in zip(got_i, want_i, above))
        assert all(len(set(row)) == 10 for row in got_i)


def _dots_both_ways(q_int, shard, kind, dim, rows, reads, width=None) -> list:
    """`codes._shard_dots` compiled, then in numpy: [(dots, |row|^2), (dots, |row|^2)]."""
    got = []
    for compiled in (True, False):
        codes.HAVE_NUMBA = compiled
        try:
            dots, sq = np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows), dtype=np.int64)
            codes._shard_dots(q_int, shard, kind, dim, rows, reads, np.arange(len(rows)), dots, sq, width)
            got.append((dots, sq))
        finally:
            codes.HAVE_NUMBA = True
    return got


@pytest.mark.parametrize("width", [None, 3])
@pytest.mark.parametrize("dim", [20, 19])
def test_prefix_dots_compiled_equal_numpy(width, dim):
    """Dot products over each row's first `width` bytes (a re-rank's prefilter): the compiled
    kernel and numpy give the same integers, odd dimensions included."""
    if not codes.HAVE_NUMBA:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(2)
    shard, _ = codes.quantize(rng.standard_normal((50, dim)).astype(np.float32), "int4")
    q_int = codes.quantize(rng.standard_normal((4, dim)).astype(np.float32), "int8")[0].view(np.int8)
    rows, reads = rng.integers(0, 50, 30), rng.integers(0, 4, 30)
    got = _dots_both_ways(q_int, shard, "int4", dim, rows, reads, width)
    assert np.array_equal(got[0][0], got[1][0]) and np.array_equal(got[0][1], got[1][1])
    full = codes.unpack_rows(shard, "int4", dim).astype(np.int64)
    if width is not None:  # the bytes' low and high nibbles: coordinates 0-2 and 10-12
        h = shard.shape[1]
        full[:, [j for j in range(dim) if not (j < width or h <= j < h + width)]] = 0
    assert np.array_equal(got[1][0], (full[rows] * q_int[reads]).sum(1)) and np.array_equal(got[1][1], (full[rows] ** 2).sum(1))


def test_int8_dots_compiled_equal_numpy():
    """The int8 kernel (an int8 store's re-rank) and numpy agree."""
    if not codes.HAVE_NUMBA:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(3)
    shard = rng.integers(-127, 128, (50, 256)).astype(np.int8)
    q_int = rng.integers(-127, 128, (4, 256)).astype(np.int8)
    rows, reads = rng.integers(0, 50, 300), rng.integers(0, 4, 300)
    got = _dots_both_ways(q_int, shard, "int8", 256, rows, reads)
    want = (shard[rows].astype(np.int64) * q_int[reads]).sum(1)
    assert np.array_equal(got[0][0], want) and np.array_equal(got[1][0], want)
    assert np.array_equal(got[0][1], got[1][1])


def test_prefilter_keeps_the_best_hit(random_ref):
    """A re-rank that scores 1,300 candidates on an eighth of each code and only the best 64 in
    full finds each read's best fragment among all of them (4,096-dim sketch, 2% errors)."""
    encoder = load_encoder("default", "cpu")
    seq = Reference.load(random_ref).seqs[0]
    frags = [seq[i : i + 1250] for i in range(0, 1300 * 500, 500)]
    store = VectorStore(encoder.dim, "int4", shard_size=500)
    store.add(encoder.encode(frags))
    rng = np.random.default_rng(8)
    reads = []
    for start in rng.integers(0, 1300 * 500, 60):  # 250 bp with 2% substitutions
        read = np.array(list(seq[start : start + 250]))
        read[rng.random(250) < 0.02] = "A"
        reads.append("".join(read))
    reads = encoder.encode(reads)
    everything = np.tile(np.arange(1300), (len(reads), 1))
    full_s, full_i = store.rerank(reads, everything, 8)
    pre_s, pre_i = store.rerank(reads, everything, 8, prefilter=64)
    assert np.array_equal(pre_i[:, 0], full_i[:, 0]) and np.array_equal(pre_s[:, 0], full_s[:, 0])
    assert np.array_equal(store.rerank(reads, everything[:, :64], 8, prefilter=64)[1],
                          store.rerank(reads, everything[:, :64], 8)[1])  # P >= C: no prefilter


def test_rerank_keeps_only_candidates_and_pads(int4_store):
    store, _, queries = int4_store
    cand = np.full((len(queries), 4), -1, dtype=np.int64)
    cand[:, :2] = [[5, 600]]
    s, i = store.rerank(queries, cand, 3)
    assert set(i[:, :2].ravel()) <= {5, 600} and (i[:, 2] == -1).all() and np.isneginf(s[:, 2]).all()




def test_upgraded_int4_index_equals_tiered_build_and_places_reads(random_ref, tmp_path):
    ref = Reference.load(random_ref)
    enc = load_encoder("default", "cpu")
    opts = dict(shard_size=1000)
    built = open_index(ref, enc, IndexOptions(index_kind="tiered", **opts), tmp_path / "t")
    assert built.coarse is not None and built.coarse.ntotal == built.store.ntotal == 1_200
    assert len(built.manifest["coarse_shards"]) == 2
    open_index(ref, enc, IndexOptions(index_kind="int4", **opts), tmp_path / "u")
    with pytest.raises(IndexDirError, match="index_kind int4 -> flat"):  # other changes stay refused
        open_index(ref, enc, IndexOptions(index_kind="flat", **opts), tmp_path / "u")
    upgraded = open_index(ref, enc, IndexOptions(index_kind="tiered", **opts), tmp_path / "u")
    assert upgraded.manifest["options"]["index_kind"] == "tiered"
    for name in built.manifest["coarse_shards"] + built.manifest["shards"]:
        assert (tmp_path / "t" / name).read_bytes() == (tmp_path / "u" / name).read_bytes()
    assert not (tmp_path / "u.coarse.partial").exists()
    # the upgraded index is found again as it is (auto keeps its kind)
    assert open_index(ref, enc, IndexOptions(**opts), tmp_path / "u").coarse is not None

    # reads: tiered search (C = 64 of 1,200) places them as exhaustive int4 search does
    rng = np.random.default_rng(2)
    seq = ref.fetch(0, 0, 700_000)
    starts = rng.integers(0, 700_000 - 250, 200)
    reads = [seq[s : s + 250] for s in starts]
    tiered = Aligner(ref, "default", index=tmp_path / "t", device="cpu", coarse_candidates=64)
    flat = Aligner(ref, "default", index=tmp_path / "u", device="cpu", index_kind="int4", rebuild=True)
    got = tiered.map_batch(reads)
    want = flat.map_batch(reads)
    assert sum(bool(a) and a[0].contig == "a" and a[0].ref_start == s for a, s in zip(got, starts)) >= 198
    assert [(a[0].contig, a[0].ref_start) for a in got] == [(a[0].contig, a[0].ref_start) for a in want]


def test_damaged_coarse_shard_is_refused(lambda_ref, tmp_path):
    ref = Reference.load(lambda_ref)
    enc = load_encoder("default", "cpu")
    folder = tmp_path / "t"
    open_index(ref, enc, IndexOptions(index_kind="tiered"), folder)
    shard = folder / json.loads((folder / "manifest.json").read_text())["coarse_shards"][0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(IndexDirError, match="checksum"):
        load_index(folder)


@pytest.mark.gpu
def test_cuda_coarse_search_matches_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    rng = np.random.default_rng(4)
    codes = rng.integers(-20, 21, size=(5_000, 64)).astype(np.int8)
    tier = CoarseTier(64, shard_size=2_000)
    tier.add(codes / COARSE_SCALE)
    queries = rng.integers(-20, 21, size=(30, 64)) / COARSE_SCALE
    want = tier.search(queries, 50)
    assert np.array_equal(tier.to("cuda").search(queries, 50), want)


def test_interrupted_upgrade_keeps_the_int4_index_and_resumes(random_ref, tmp_path, monkeypatch):
    from test_store_index_dir import _Interrupting

    from dnaesa.store import index_dir

    ref = Reference.load(random_ref)
    enc = load_encoder("default", "cpu")
    opts = dict(shard_size=1000)
    whole = open_index(ref, enc, IndexOptions(index_kind="tiered", **opts), tmp_path / "whole")
    folder = tmp_path / "u"
    open_index(ref, enc, IndexOptions(index_kind="int4", **opts), folder)
    int4_manifest = (folder / "manifest.json").read_text()
    real = index_dir.coarse_encoder
    first = _Interrupting(real(), 11)  # 11 chunks of 100 of 12: the first shard of 1,000 is written
    monkeypatch.setattr(index_dir, "coarse_encoder", lambda: first)
    expected = index_dir.expected_manifest(ref, enc, IndexOptions(index_kind="tiered", **opts))
    with pytest.raises(KeyboardInterrupt):
        index_dir.add_coarse_tier(ref, folder, expected, chunk=100)
    assert (folder / "manifest.json").read_text() == int4_manifest  # still the int4 index, untouched
    assert load_index(folder).coarse is None
    assert (tmp_path / "u.coarse.partial" / "coarse000.npy").exists()
    second = _Interrupting(real(), 100)
    monkeypatch.setattr(index_dir, "coarse_encoder", lambda: second)
    upgraded = index_dir.add_coarse_tier(ref, folder, expected, chunk=100)
    assert second.embedded == 1_200 - 1_000  # resumed after the finished shard
    monkeypatch.setattr(index_dir, "coarse_encoder", real)
    upgraded = load_index(folder)
    assert upgraded.manifest["coarse_shards"] == whole.manifest["coarse_shards"]
    for name in whole.manifest["coarse_shards"]:
        assert (folder / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_build_in_worker_processes_writes_the_same_bytes(random_ref, tmp_path):
    """Fragments embedded by 2 worker processes, chunk by chunk: the shards of one process."""
    from dnaesa.store.index_dir import build_index, expected_manifest

    ref, enc = Reference.load(random_ref), load_encoder("default", "cpu")
    manifest = expected_manifest(ref, enc, IndexOptions(index_kind="tiered", shard_size=1000))
    one = build_index(ref, enc, tmp_path / "one", manifest, chunk=128)
    two = build_index(ref, enc, tmp_path / "two", manifest, chunk=128, workers=2)
    assert one.manifest["checksums"] == two.manifest["checksums"] and len(one.manifest["shards"]) == 2


def _die_at_chunk_two(lo):
    import os

    if lo == 2:
        os._exit(3)
    return [lo]


def test_a_dead_embedding_worker_stops_the_build_instead_of_hanging():
    from dnaesa.store.parallel_embed import encoded_chunks

    assert list(encoded_chunks(_die_at_chunk_two, [0, 1], 2)) == [[0], [1]]
    with pytest.raises(IndexDirError, match="worker process died"):
        list(encoded_chunks(_die_at_chunk_two, [0, 1, 2, 3], 2))


def test_index_vectors_do_not_depend_on_the_blas_threads_of_the_machine():
    """OpenBLAS rounds some of the compact encoder's products otherwise with 1, 2 or 3 threads
    (up to 1e-7): a build encodes on one BLAS thread, so any machine and any -t write the same bytes."""
    from threadpoolctl import threadpool_limits

    from dnaesa.store.parallel_embed import encode_on_one_thread

    encoders = [load_encoder("compact256", "cpu"), load_encoder("default", "cpu")]
    rng = np.random.default_rng(4)
    seqs = ["".join(rng.choice(list("ACGT"), 1250)) for _ in range(512)]
    got = []
    for threads in (1, 2, 3):
        with threadpool_limits(limits=threads, user_api="blas"):
            got.append(encode_on_one_thread(encoders, seqs))
    for other in got[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(got[0], other))


def _reads(ref: Reference, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    seq = ref.fetch(0, 0, 700_000)
    starts = rng.integers(0, 700_000 - 250, n)
    return [seq[s : s + 250] for s in starts], starts


def test_sieved_coarse_search_is_the_exact_top_among_the_sieves_picks(random_ref, tmp_path, monkeypatch):
    """The sieve (store/sieve.py) picks K fragments by 4-bit PQ scores; the coarse tier returns the
    exact int8 top C among them, ties to the lower id; K >= the tier's size is the exhaustive search."""
    ref = Reference.load(random_ref)
    index = open_index(ref, load_encoder("default", "cpu"), IndexOptions(index_kind="tiered", shard_size=1000),
                       tmp_path / "t")
    tier = index.coarse
    assert tier.sieve is not None and tier.sieve.ntotal == tier.ntotal == 1_200
    assert index.manifest["sieve_file"] in index.manifest["checksums"]
    seqs, starts = _reads(ref, 100, 5)
    q = index.coarse_encoder.encode(seqs)
    monkeypatch.setattr(coarse_mod, "QUERY_CHUNK", 32)  # queries sieved in chunks
    got = tier.search(q, 20, sieve=300)
    tier.use_numba = False  # numpy: the same ids
    np.testing.assert_array_equal(tier.search(q, 20, sieve=300), got)
    tier.use_numba = coarse_mod.HAVE_NUMBA
    _, picked = tier.sieve.search(q, 300)
    codes = np.concatenate([np.asarray(s) for s in tier.shards])
    q_codes, _ = coarse_mod.quantize_coarse(q)
    for row, pick, ids in zip(q_codes, picked, got):
        pick = np.sort(pick)
        np.testing.assert_array_equal(ids, pick[_brute_top(codes[pick], row[None], 20)[0]])
    exhaustive = tier.search(q, 20)
    np.testing.assert_array_equal(tier.search(q, 20, sieve=1_200), exhaustive)
    frags = index.fragments
    true_first = [(frags[i, 0] == 0) & (frags[i, 1] <= s) & (frags[i, 2] >= s + 250) for i, s in zip(got[:, 0], starts)]
    assert np.mean(true_first) >= 0.97  # a quarter of the tier picked: the true fragment still first
    assert np.mean(got[:, 0] == exhaustive[:, 0]) >= 0.97


def test_an_index_without_a_sieve_gets_one_in_place_and_a_damaged_one_is_refused(random_ref, tmp_path, monkeypatch):
    import shutil

    from dnaesa.store import sieve

    ref, enc = Reference.load(random_ref), load_encoder("default", "cpu")
    opts = IndexOptions(index_kind="tiered", shard_size=1000)
    built = open_index(ref, enc, opts, tmp_path / "t")
    shutil.copytree(tmp_path / "t", tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())  # as an index made before the sieve
    name = manifest.pop("sieve_file")
    manifest.pop("coarse_sieve")
    manifest["checksums"].pop(name)
    (tmp_path / "old" / name).unlink()
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest))
    assert load_index(tmp_path / "old").coarse.sieve is None  # still usable: exhaustive coarse search
    upgraded = open_index(ref, enc, opts, tmp_path / "old")
    assert upgraded.manifest == dict(built.manifest, genomes=upgraded.manifest["genomes"])
    assert (tmp_path / "old" / name).read_bytes() == (tmp_path / "t" / name).read_bytes()
    assert upgraded.coarse.sieve is not None and not (tmp_path / "old.partial").exists()
    # other sieve parameters: a new file beside the one readers may be using, then the manifest
    monkeypatch.setitem(sieve.SIEVE_PARAMS, "seed", 1)
    remade = open_index(ref, enc, opts, tmp_path / "old")
    assert remade.manifest["sieve_file"] == name.replace(".faiss", ".1.faiss") and not (tmp_path / "old" / name).exists()
    assert remade.manifest["coarse_sieve"]["seed"] == 1 and remade.coarse.sieve is not None
    monkeypatch.setitem(sieve.SIEVE_PARAMS, "seed", 0)
    # a folder the sieve cannot be written to (read-only, full, being written): served without it
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest))

    def refuse(*args, **kwargs):
        raise IndexDirError(f"{tmp_path / 'old'}: cannot write the index there (Read-only file system)")

    monkeypatch.setattr("dnaesa.store.index_dir.make_sieve", refuse)
    served = open_index(ref, enc, opts, tmp_path / "old")
    assert served.coarse is not None and served.coarse.sieve is None and "sieve_file" not in served.manifest
    data = bytearray((tmp_path / "t" / name).read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "t" / name).write_bytes(bytes(data))
    with pytest.raises(IndexDirError, match="checksum"):
        load_index(tmp_path / "t")


def test_reads_are_placed_through_the_sieve(random_ref, tmp_path):
    ref = Reference.load(random_ref)
    seqs, starts = _reads(ref, 200, 6)
    aligner = Aligner(ref, "default", index=tmp_path / "t", device="cpu", index_kind="tiered", coarse_candidates=64,
                      coarse_sieve=256)
    got = aligner.map_batch(seqs)
    assert sum(bool(a) and a[0].contig == "a" and a[0].ref_start == s for a, s in zip(got, starts)) >= 198


def test_sieve_bytes_do_not_depend_on_faiss_threads(random_ref, tmp_path):
    import faiss

    from dnaesa.store import sieve

    ref = Reference.load(random_ref)
    tier = open_index(ref, load_encoder("default", "cpu"), IndexOptions(index_kind="tiered"), tmp_path / "t").coarse
    got = []
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        got.append(faiss.serialize_index(sieve.build(tier, sieve.SIEVE_PARAMS)).tobytes())
    assert got[0] == got[1]
    assert faiss.omp_get_max_threads() == 2  # restored after the build


def test_sieve_top_kernel_breaks_ties_to_the_lower_id():
    """Rows repeated across shards score alike; the kernel keeps the lower ids, as a stable sort would."""
    if not coarse_mod.HAVE_NUMBA:
        pytest.skip("numba not installed")
    from numba.typed import List

    from dnaesa.store import kernels

    rng = np.random.default_rng(8)
    base = rng.integers(-5, 6, (10, 16)).astype(np.int8)
    codes = np.concatenate([base, base, base])  # ids i, i + 10, i + 20 tie
    shards = List()
    for lo in range(0, 30, 7):
        shards.append(np.ascontiguousarray(codes[lo : lo + 7]))
    q = rng.integers(-5, 6, (6, 16)).astype(np.int8)
    picked = np.stack([rng.permutation(30) for _ in range(6)]).astype(np.int64)
    picked[:, -3:] = -1  # pads
    out = np.full((6, 12), -1, dtype=np.int64)
    kernels._sieve_top(q, shards, 7, picked, 12, out)
    for r in range(6):
        ids = np.sort(picked[r][picked[r] >= 0])
        np.testing.assert_array_equal(out[r], ids[_brute_top(codes[ids], q[r][None], 12)[0]])
