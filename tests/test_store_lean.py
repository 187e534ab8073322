"""The lean store: the sequence tier computes the encoder's own cosines from the reference (compiled
and numpy paths), a lean index holds the tiered index's coarse tier and sieve and the first eighth
of its int4 codes, a tiered index cut in place equals a lean build, and reads place as through the
tiered store."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dnaesa.errors import IndexDirError, OptionsError
from dnaesa.model.base import load_encoder
from dnaesa.model.kmer import KmerSketchEncoder
from dnaesa.options import IndexOptions
from dnaesa.pipeline import Aligner
from dnaesa.reference import Reference
from dnaesa.store import sequence_tier
from dnaesa.store.index_dir import load_index, open_index
from dnaesa.store.sequence_tier import SequenceTier


@pytest.fixture(autouse=True)
def sieve_from_1024_fragments(monkeypatch):
    """The sieve (store/sieve.py) is built from 1,000,000 fragments; these small indexes get one too."""
    from dnaesa.store import sieve

    monkeypatch.setitem(sieve.SIEVE_PARAMS, "min_fragments", 1024)


def _awkward_reference() -> tuple[Reference, np.ndarray]:
    """Fragments with N runs and single Ns, low complexity, shorter than a spaced seed, all N."""
    rng = np.random.default_rng(3)
    seq = list(rng.choice(list("ACGT"), 40_000))
    for p in rng.integers(0, 40_000, 200):
        seq[p] = "N"
    seq[5_000:5_300] = "N" * 300
    seq[9_000:10_500] = "A" * 1_500
    seq[20_000:20_400] = list("ACGTTGCA" * 50)
    contigs = ["".join(seq), "ACGTAC", "N" * 3_000, "".join(rng.choice(list("ACGT"), 9))]
    ref = Reference("awkward.fa", ["x", "short", "n", "nine"], contigs)
    return ref, ref.fragments(1250, 1000)


@pytest.mark.parametrize("encoder", ["default", "kmer"])
@pytest.mark.parametrize("compiled", [True, False])
def test_sequence_tier_scores_are_the_encoders_cosines(encoder, compiled, monkeypatch):
    monkeypatch.setattr(sequence_tier, "HAVE_NUMBA", compiled)
    monkeypatch.setattr(sequence_tier, "CHUNK", 7)  # fragments sketched 7 at a time: the pairs cross chunks
    enc = load_encoder("default", "cpu") if encoder == "default" else KmerSketchEncoder(k=9, dim=1024, seed=3)
    ref, frags = _awkward_reference()
    tier = SequenceTier(enc, ref, frags)
    vectors = enc.encode([ref.fetch(*row) for row in frags])
    rng = np.random.default_rng(0)
    queries = enc.encode([ref.seqs[0][s : s + 250] for s in rng.integers(0, 39_000, 5)] + ["A" * 250])
    reads = np.repeat(np.arange(len(queries)), len(frags))
    ids = np.tile(np.arange(len(frags)), len(queries))
    got = tier.scores(queries, reads, ids)
    want = np.einsum("pd,pd->p", queries[reads], vectors[ids])
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert np.abs(want).max() > 0.3  # the reads' own fragments score high: the test is not all zeros
    assert (got[ids == len(frags) - 2] == 0).all()  # the all-N contig's fragment: an empty sketch


def test_sequence_rerank_ties_go_to_the_lower_id_and_pads(random_ref):
    ref = Reference.load(random_ref)
    enc = load_encoder("default", "cpu")
    frags = ref.fragments(1250, 1000)
    frags = np.vstack([frags[:3], frags[:3]])  # ids 3..5 are ids 0..2 again: equal scores
    tier = SequenceTier(enc, ref, frags)
    q = enc.encode([ref.fetch(0, 100, 350)])
    scores, ids = tier.rerank(q, np.array([[5, 3, -1, 0, 4]]), 6)
    assert ids[0, :2].tolist() == [0, 3] and scores[0, 0] == scores[0, 1] > 0.3
    assert ids[0, -2:].tolist() == [-1, -1] and np.isneginf(scores[0, -2:]).all()


def test_lean_index_needs_a_sketch_encoder(random_ref, tmp_path):
    from dnaesa.model.transformer import TransformerEncoder

    assert SequenceTier.supports(load_encoder("default", "cpu"))
    assert not SequenceTier.supports(load_encoder("compact256", "cpu"))
    assert not SequenceTier.supports(KmerSketchEncoder(k=13))
    assert not SequenceTier.supports(TransformerEncoder.__new__(TransformerEncoder))
    enc = load_encoder("compact256", "cpu")
    with pytest.raises(OptionsError, match="count-sketch"):
        open_index(Reference.load(random_ref), enc, IndexOptions(index_kind="lean"), tmp_path / "x")


def test_lean_build_holds_the_tiered_indexs_bytes_and_a_cut_tiered_index_equals_it(random_ref, tmp_path):
    ref = Reference.load(random_ref)
    enc = load_encoder("default", "cpu")
    opts = dict(shard_size=1000)
    tiered = open_index(ref, enc, IndexOptions(index_kind="tiered", **opts), tmp_path / "t")
    lean = open_index(ref, enc, IndexOptions(index_kind="lean", **opts), tmp_path / "l")
    assert lean.manifest["options"]["index_kind"] == "lean" and lean.manifest["sieve_file"]
    for key in ("coarse_shards", "sieve_file"):
        names = lean.manifest[key] if isinstance(lean.manifest[key], list) else [lean.manifest[key]]
        for name in names:
            assert (tmp_path / "l" / name).read_bytes() == (tmp_path / "t" / name).read_bytes()
    for a, b in zip(tiered.manifest["shards"], lean.manifest["shards"], strict=True):
        full, prefix = np.load(tmp_path / "t" / a), np.load(tmp_path / "l" / b)
        assert prefix.shape == (len(full), 256)
        np.testing.assert_array_equal(prefix, full[:, :256])
    tier_bytes = sum((tmp_path / "t" / n).stat().st_size for n in tiered.manifest["shards"])
    lean_bytes = sum((tmp_path / "l" / n).stat().st_size for n in lean.manifest["shards"])
    assert lean_bytes < tier_bytes / 7

    # a tiered index is cut in place (nothing embedded again) into the same index
    cut = open_index(ref, enc, IndexOptions(index_kind="lean", **opts), tmp_path / "t")
    assert cut.manifest["options"] == lean.manifest["options"]
    for a, b in zip(cut.manifest["shards"], lean.manifest["shards"], strict=True):
        assert (tmp_path / "t" / a).read_bytes() == (tmp_path / "l" / b).read_bytes()
    listed = {"manifest.json", cut.manifest["fragments_file"], cut.manifest["sieve_file"], *cut.manifest["shards"],
              *cut.manifest["coarse_shards"], cut.manifest["sequence"]["bases"], cut.manifest["sequence"]["nruns"], *cut.manifest["seeds"]["files"]}
    assert {p.name for p in (tmp_path / "t").iterdir()} == listed  # the int4 shards are gone
    assert open_index(ref, enc, IndexOptions(**opts), tmp_path / "t").manifest["options"]["index_kind"] == "lean"
    with pytest.raises(IndexDirError, match="index_kind lean -> tiered"):  # the way back needs a rebuild
        open_index(ref, enc, IndexOptions(index_kind="tiered", **opts), tmp_path / "t")

    # an int4 index (what `auto` took from 100 Mb before) gets its coarse tier, then is cut
    open_index(ref, enc, IndexOptions(index_kind="int4", **opts), tmp_path / "i")
    upgraded = open_index(ref, enc, IndexOptions(index_kind="lean", **opts), tmp_path / "i")
    assert upgraded.manifest["options"] == lean.manifest["options"]
    for key in ("shards", "coarse_shards"):
        for a, b in zip(upgraded.manifest[key], lean.manifest[key], strict=True):
            assert (tmp_path / "i" / a).read_bytes() == (tmp_path / "l" / b).read_bytes()
    assert (tmp_path / "i" / upgraded.manifest["sieve_file"]).read_bytes() == \
        (tmp_path / "l" / lean.manifest["sieve_file"]).read_bytes()
    assert not list((tmp_path / "i").glob("shard*")) and not list(tmp_path.glob("*.partial"))


def test_damaged_prefix_shard_is_refused(random_ref, tmp_path):
    ref = Reference.load(random_ref)
    folder = tmp_path / "l"
    open_index(ref, load_encoder("default", "cpu"), IndexOptions(index_kind="lean", shard_size=1000), folder)
    shard = folder / json.loads((folder / "manifest.json").read_text())["shards"][0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    index = load_index(folder)
    with pytest.raises(IndexDirError, match="checksum"):
        index.store.open_shards()


@pytest.mark.parametrize("prefilter", [256, 0])
def test_reads_place_through_the_lean_store_as_through_the_tiered_one(random_ref, tmp_path, prefilter):
    ref = Reference.load(random_ref)
    rng = np.random.default_rng(6)
    seq = ref.fetch(1, 0, 500_000)
    starts = rng.integers(0, 500_000 - 250, 200)
    reads = [seq[s : s + 250] for s in starts]
    reads[:20] = [ref.fetch(1, s, s + 250)[::-1].translate(str.maketrans("ACGT", "TGCA")) for s in starts[:20]]
    got = {}
    for kind in ("tiered", "lean"):
        aligner = Aligner(ref, "default", index=tmp_path / kind, device="cpu", index_kind=kind,
                          coarse_candidates=512, prefilter_candidates=prefilter, threads=1)
        got[kind] = [(a[0].contig, a[0].ref_start, a[0].reverse) if a else None for a in aligner.map_batch(reads)]
    assert sum(g is not None and g[:2] == ("b", s) for g, s in zip(got["lean"], starts)) >= 198
    assert got["lean"] == got["tiered"]


def test_a_cut_that_cannot_be_written_leaves_the_tiered_index_as_it_was(random_ref, tmp_path, monkeypatch):
    ref = Reference.load(random_ref)
    enc = load_encoder("default", "cpu")
    opts = IndexOptions(index_kind="tiered", shard_size=1000)
    folder = tmp_path / "t"
    open_index(ref, enc, opts, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real_save = np.save

    def full_disk(path, array):
        if str(path).endswith("prefix001.npy"):
            raise OSError(28, "No space left on device")
        return real_save(path, array)

    monkeypatch.setattr(np, "save", full_disk)
    with pytest.raises(IndexDirError, match="cannot write"):
        open_index(ref, enc, IndexOptions(index_kind="lean", shard_size=1000), folder)
    monkeypatch.setattr(np, "save", real_save)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no partial prefix file left
    assert load_index(folder).manifest["options"]["index_kind"] == "tiered"


def test_divergent_reads_are_searched_again_widely_and_close_ones_are_not(random_ref, tmp_path, monkeypatch):
    """A read whose best exact score is low (a divergent one) gets a second search: the coarse
    tier's `wide_candidates` best, all scored in full. A narrow first pass (16 coarse picks) misses
    most 15%-divergent reads' fragments; the wide pass finds what an exhaustive search finds.
    Reads close to the reference never take it."""
    ref = Reference.load(random_ref)
    rng = np.random.default_rng(8)
    seq = ref.fetch(1, 0, 500_000)
    starts = rng.integers(0, 500_000 - 250, 60)

    def mutate(s: str, rate: float) -> str:
        b = np.frombuffer(s.encode(), np.uint8).copy()
        hit = rng.random(len(b)) < rate
        b[hit] = np.frombuffer(b"ACGT", np.uint8)[(np.searchsorted(np.frombuffer(b"ACGT", np.uint8), b[hit]) +
                                                   rng.integers(1, 4, hit.sum())) % 4]
        return b.tobytes().decode()

    divergent = [mutate(seq[s : s + 250], 0.15) for s in starts]
    close = [seq[s : s + 250] for s in starts]
    flat = Aligner(ref, "default", index=tmp_path / "f", device="cpu", index_kind="flat", threads=1)
    narrow = dict(coarse_candidates=16, prefilter_candidates=16, threads=1, seed_candidates=0)  # the coarse tier's path
    wide = Aligner(ref, "default", index=tmp_path / "l", device="cpu", index_kind="lean", **narrow)
    off = Aligner(ref, "default", index=tmp_path / "l", device="cpu", index_kind="lean", wide_below=0, **narrow)

    def found(aligner, reads) -> int:  # reads whose fragment (contig b, containing the read) is in the top 16
        _, ids, _ = aligner.find_candidates._search(reads, 16)
        frags = aligner.index.fragments
        return sum(any(frags[i][0] == 1 and frags[i][1] <= s and s + 250 <= frags[i][2] for i in row if i >= 0)
                   for row, s in zip(ids, starts))

    exhaustive = found(flat, divergent)
    assert exhaustive >= 50 and found(off, divergent) <= exhaustive - 10
    assert found(wide, divergent) == exhaustive

    tier = wide.find_candidates.coarse[1]
    calls = []
    real = tier.search
    monkeypatch.setattr(tier, "search", lambda *a: calls.append(len(a[0])) or real(*a))
    assert found(wide, close) == 60 and calls == [60]  # one search: no read was weak
    found(wide, divergent[:5] + close)
    assert calls[1:] == [65, 5]
