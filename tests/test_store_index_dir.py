"""The index folder: never replaces a folder that is not ours, checksums catch damage, the umask's
mode, stale temporaries removed, an interrupted build resumes, a changed store kind is caught."""
from __future__ import annotations

import json
import os
import time

import faiss
import numpy as np
import pytest

from dnaesa.cli import main
from dnaesa.errors import IndexDirError
from dnaesa.model.base import load_encoder
from dnaesa.options import IndexOptions
from dnaesa.reference import Reference
from dnaesa.store import index_dir
from dnaesa.store.index_dir import build_index, expected_manifest, load_index, open_index, resolve_options


@pytest.fixture(scope="module")
def small_ref(tmp_path_factory):
    """2.6 Mb of random sequence in two contigs: 2,600 fragments, enough for several shards of 1,000."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("ref") / "random.fa"
    with open(path, "w") as fh:
        for name, n in (("a", 1_600_000), ("b", 1_000_000)):
            fh.write(f">{name}\n{''.join(rng.choice(list('ACGT'), n))}\n")
    return Reference.load(path)


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("kmer:k=8,dim=64", "cpu")


OPTS = IndexOptions(shard_size=1000)


def test_folder_that_is_not_an_index_is_refused(lambda_ref, tmp_path, capsys):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "keep").write_text("x")
    assert main(["index", str(lambda_ref), "--encoder", "kmer", "--index", str(folder)]) == 2
    assert "is not a dnaesa index" in capsys.readouterr().err
    assert (folder / "keep").read_text() == "x" and sorted(p.name for p in folder.iterdir()) == ["keep"]


def test_index_dot_does_not_empty_the_working_folder(lambda_ref, tmp_path, monkeypatch):
    (tmp_path / "mine.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert main(["index", str(lambda_ref), "--encoder", "kmer", "--index", "."]) == 2
    assert (tmp_path / "mine.txt").exists()


def test_empty_folder_and_rebuild_over_our_index(lambda_ref, tmp_path, encoder):
    ref = Reference.load(lambda_ref)
    folder = tmp_path / "empty"
    folder.mkdir()
    first = open_index(ref, encoder, IndexOptions(), folder)
    assert first.store.ntotal == 49 and (folder / "manifest.json").exists()
    again = open_index(ref, encoder, IndexOptions(), folder, rebuild=True)  # ours: replaced
    assert again.store.ntotal == 49


def test_index_folder_gets_the_umask_mode(lambda_ref, tmp_path, encoder):
    old = os.umask(0o022)
    try:
        open_index(Reference.load(lambda_ref), encoder, IndexOptions(), tmp_path / "idx")
    finally:
        os.umask(old)
    assert (tmp_path / "idx").stat().st_mode & 0o777 == 0o755


def test_damaged_shard_and_fragments_are_caught(lambda_ref, tmp_path, encoder):
    ref = Reference.load(lambda_ref)
    folder = tmp_path / "idx"
    open_index(ref, encoder, IndexOptions(index_kind="flat"), folder)
    shard = folder / "shard000.faiss"
    index = faiss.read_index(str(shard))
    vectors = index.reconstruct_n(0, index.ntotal)
    vectors[5, 3] = np.nan
    damaged = faiss.IndexFlatIP(index.d)
    damaged.add(vectors)
    faiss.write_index(damaged, str(shard))
    with pytest.raises(IndexDirError, match="shard000.faiss.*checksum"):
        load_index(folder).store.to("cpu", "torch")
    # the same NaN in a shard whose checksum was updated too: refused for its numbers
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["checksums"]["shard000.faiss"] = index_dir.file_checksum(shard)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexDirError, match="shard000.faiss.*NaN"):
        load_index(folder).store.search(np.zeros((1, encoder.dim), np.float32), 4)
    np.save(folder / "fragments.npy", np.zeros((49, 3), np.int64))
    with pytest.raises(IndexDirError, match="fragments.npy.*checksum"):
        load_index(folder)


def test_stale_tmp_folders_of_ours_are_removed(lambda_ref, tmp_path, encoder):
    stale, fresh, foreign = (tmp_path / f"idx.tmp{x}" for x in ("old1", "new1", "old2"))
    for folder in (stale, fresh, foreign):
        folder.mkdir()
        (folder / ("notes.txt" if folder is foreign else "shard000.faiss")).write_text("x")
    for folder in (stale, foreign):
        os.utime(folder, (time.time() - 2 * index_dir.STALE_TMP_SECONDS,) * 2)
    open_index(Reference.load(lambda_ref), encoder, IndexOptions(), tmp_path / "idx")
    assert not stale.exists() and fresh.exists() and foreign.exists()


class _Interrupting:
    """An encoder that fails after `calls` batches, counting the sequences it embedded."""

    def __init__(self, encoder, calls):
        self.encoder, self.calls, self.embedded = encoder, calls, 0
        self.dim = encoder.dim

    def identity(self):
        return self.encoder.identity()

    def encode(self, seqs):
        if self.calls == 0:
            raise KeyboardInterrupt
        self.calls -= 1
        self.embedded += len(seqs)
        return self.encoder.encode(seqs)


@pytest.mark.parametrize("kind", ["flat", "int4"])
def test_interrupted_build_resumes_after_finished_shards(small_ref, tmp_path, encoder, kind):
    opts = IndexOptions(shard_size=1000, index_kind=kind)
    manifest = expected_manifest(small_ref, encoder, opts)
    whole = build_index(small_ref, encoder, tmp_path / "whole", manifest, chunk=400)
    target = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        build_index(small_ref, _Interrupting(encoder, 6), target, manifest, chunk=400)  # 2,400 done: 2 shards
    assert not target.exists() and (target.parent / "idx.partial" / "shard001.npy" if kind == "int4"
                                    else target.parent / "idx.partial" / "shard001.faiss").exists()
    resumed_encoder = _Interrupting(encoder, 100)
    resumed = build_index(small_ref, resumed_encoder, target, manifest, chunk=400)
    assert resumed_encoder.embedded == len(whole.fragments) - 2000
    assert not (target.parent / "idx.partial").exists()
    assert resumed.manifest["checksums"] == whole.manifest["checksums"]
    queries = encoder.encode([small_ref.fetch(0, s, s + 150) for s in range(0, 1_500_000, 100_000)])
    np.testing.assert_array_equal(resumed.store.search(queries, 5)[1], whole.store.search(queries, 5)[1])


def test_changed_store_kind_is_caught_by_the_manifest(small_ref, tmp_path, encoder, caplog):
    folder = tmp_path / "idx"
    flat = open_index(small_ref, encoder, OPTS, folder)
    assert flat.manifest["options"]["index_kind"] == "flat"  # auto: 2,600 fragments are few
    caplog.set_level("INFO", logger="dnaesa")
    with pytest.raises(IndexDirError, match="index_kind flat -> int4"):  # an explicit folder: refused...
        open_index(small_ref, encoder, IndexOptions(shard_size=1000, index_kind="int4"), folder)
    compact = open_index(small_ref, encoder, IndexOptions(shard_size=1000, index_kind="int4"), folder, rebuild=True)
    assert compact.manifest["options"]["index_kind"] == "int4" and compact.store.kind == "int4"
    assert sorted(p.name for p in folder.glob("shard*")) == ["shard000.npy", "shard001.npy", "shard002.npy"]
    caplog.clear()
    assert open_index(small_ref, encoder, IndexOptions(shard_size=1000, index_kind="int4"), folder).store.kind == "int4"
    assert open_index(small_ref, encoder, OPTS, folder).store.kind == "int4"  # auto keeps the index's kind
    assert "rebuilding" not in caplog.text


def test_auto_store_kind_by_reference_size(small_ref, monkeypatch):
    from dnaesa.model.base import load_encoder

    compact = load_encoder("compact256", "cpu")  # not a count sketch: no lean store
    assert resolve_options(small_ref, OPTS).index_kind == "flat"
    monkeypatch.setattr(index_dir, "AUTO_COMPACT_FRAGMENTS", 2000)
    assert resolve_options(small_ref, OPTS).index_kind == "lean"
    assert resolve_options(small_ref, OPTS, load_encoder("default", "cpu")).index_kind == "lean"
    assert resolve_options(small_ref, OPTS, compact).index_kind == "int4"
    assert resolve_options(small_ref, IndexOptions(index_kind="hnsw")).index_kind == "hnsw"
    monkeypatch.setattr(index_dir, "AUTO_TIERED_FRAGMENTS", 2600)
    assert resolve_options(small_ref, OPTS).index_kind == "lean"
    assert resolve_options(small_ref, OPTS, compact).index_kind == "tiered"
    assert len(small_ref.fragments(OPTS.fragment_len, OPTS.stride)) == 2600


def test_shard_spans_follow_the_store_shards():
    """A Ray build's spans (one shard each) end where the driver's stores would spill: after a
    partly filled last shard (an added genome), and from a resume point."""
    assert index_dir._spans(0, 2500, 1000, 0, 0) == [(0, 0, 1000), (1, 1000, 2000), (2, 2000, 2500)]
    assert index_dir._spans(0, 2500, 1000, 300, 4) == [(4, 0, 700), (5, 700, 1700), (6, 1700, 2500)]
    assert index_dir._spans(700, 2500, 1000, 300, 5) == [(5, 700, 1700), (6, 1700, 2500)]
    assert index_dir._spans(0, 500, 1000, 300, 4) == [(4, 0, 500)]
    assert index_dir._spans(0, 2000, 1000, 0, 0) == [(0, 0, 1000), (1, 1000, 2000)]
    assert index_dir._spans(2000, 2000, 1000, 0, 2) == []


class _FullDisk:
    clipped = 0

    def add(self, vectors):
        pass

    def spill(self, directory, first, keep_last=True):
        raise OSError(28, "No space left on device")


def test_a_shard_an_actor_cannot_write_is_one_error_naming_the_folder(tmp_path, encoder):
    """A full disk met where a shard is written (a Ray actor) comes back as text, and the driver
    stops with the same IndexDirError as a local build's."""
    writer = index_dir.ShardWriter(lambda lo, hi: [np.zeros((hi - lo, 4), np.float32)], [("shards", _FullDisk())],
                                   tmp_path, 128, [(0, 0, 300)], {})
    assert writer.check.exists() and writer.check.parent == tmp_path
    result = writer(0)
    assert result == "No space left on device"
    with pytest.raises(IndexDirError, match=f"{tmp_path}: cannot write the index there \\(No space left on device\\)"):
        index_dir._written(result, tmp_path)


def test_saved_integer_scan_is_mapped_checked_and_remade(lambda_ref, tmp_path, encoder, caplog):
    """A flat index of a count sketch keeps its integer scan (int8 rows, blocks, inverse norms): the
    next open maps it and leaves the float32 shards unread, with the same search and rerank; a
    damaged copy is noticed when mapped (removed, the scan made from the shards, the same results)
    and saved again at the next open; a shard gone or cut short is refused at open."""
    ref = Reference.load(lambda_ref)
    folder = tmp_path / "idx"
    first = open_index(ref, encoder, IndexOptions(index_kind="flat"), folder)
    entry = first.manifest["integer_scan"]
    files = [folder / name for name in entry["files"]]
    assert all(path.is_file() for path in files)
    queries = encoder.encode([ref.fetch(0, s, s + 150) for s in range(0, 45_000, 1_500)])
    picked = np.tile(np.arange(0, 48, 3), (len(queries), 1))
    want = load_index(folder).store.search(queries, 8)  # the scan made from the shards
    want_rerank = load_index(folder).store.rerank(queries, picked, 5)

    mapped = open_index(ref, encoder, IndexOptions(index_kind="flat"), folder).store
    assert mapped.saved_scan is not None
    for got, expect in ((mapped.search(queries, 8), want), (mapped.rerank(queries, picked, 5), want_rerank)):
        np.testing.assert_array_equal(got[0], expect[0])
        np.testing.assert_array_equal(got[1], expect[1])
    assert mapped._unread and not mapped.shards  # the float32 shards were not read
    assert isinstance(mapped.integer_scan().rows, np.memmap)

    data = bytearray(files[0].read_bytes())
    data[-1] ^= 1
    files[0].write_bytes(bytes(data))
    damaged = open_index(ref, encoder, IndexOptions(index_kind="flat"), folder).store
    with caplog.at_level("INFO", logger="dnaesa"):
        got = damaged.search(queries, 8)
    np.testing.assert_array_equal(got[1], want[1])
    assert "checksum" in caplog.text and not any(path.exists() for path in files)
    again = open_index(ref, encoder, IndexOptions(index_kind="flat"), folder)
    assert all(path.is_file() for path in files) and again.manifest["integer_scan"]["checksums"] == entry["checksums"]

    shard = folder / first.manifest["shards"][0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(IndexDirError, match=f"{shard.name}.*rebuild"):
        open_index(ref, encoder, IndexOptions(index_kind="flat"), folder)
