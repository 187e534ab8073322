"""The Ray engine: the same SAM as the local engine; an actor killed mid-run loses and duplicates
nothing; an unreachable cluster is one error line. One local Ray cluster for the whole module."""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from dnaesa.cli import main  # noqa: E402
from dnaesa.engine.ray import KILL_HOOK  # noqa: E402
from dnaesa.pipeline import Aligner  # noqa: E402
from dnaesa.simulate import simulate_reads, write_fastq  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, object_store_memory=128 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reads(tmp_path_factory, lambda_contigs):
    path = tmp_path_factory.mktemp("ray") / "reads.fq"
    write_fastq(simulate_reads(lambda_contigs, 3000, 150, seed=12), path)
    return path


def _body(path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("@PG")]


@pytest.fixture(scope="module")
def local_sam(reads, lambda_ref, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "local.sam"
    Aligner(lambda_ref, "kmer", index=tmp_path_factory.getbasetemp() / "ray.idx", threads=2,
            batch_size=500).align_file(str(reads), str(out))
    return _body(out)


def test_ray_sam_equals_local_sam(cluster, reads, lambda_ref, local_sam, tmp_path, tmp_path_factory):
    out = tmp_path / "ray.sam"
    aligner = Aligner(lambda_ref, "kmer", index=tmp_path_factory.getbasetemp() / "ray.idx", engine="ray",
                      ray_workers=2, batch_size=500)
    summary = aligner.align_file(str(reads), str(out))
    assert summary.reads == 3000 and _body(out) == local_sam


def test_killed_actor_loses_and_duplicates_nothing(cluster, reads, lambda_ref, local_sam, tmp_path, tmp_path_factory,
                                                   monkeypatch):
    index = tmp_path_factory.getbasetemp() / "ray.idx"
    monkeypatch.setenv(KILL_HOOK, "2")  # the actor aligning batch 2 exits, once; Ray restarts it and retries
    out = tmp_path / "ray.sam"
    Aligner(lambda_ref, "kmer", index=index, engine="ray", ray_workers=2, batch_size=500).align_file(str(reads), str(out))
    assert (index.parent / (index.name + ".killed")).exists(), "the hook did not fire"
    assert _body(out) == local_sam


def test_unreachable_cluster_is_one_error_line(reads, lambda_ref, tmp_path, capsys):
    out = tmp_path / "o.sam"
    code = main(["-q", "align", str(reads), str(lambda_ref), "--encoder", "kmer", "--index", str(tmp_path / "idx"),
                 "-o", str(out), "--engine", "ray", "--ray-address", "127.0.0.1:1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("ask", [["--ray-gpus-per-worker", "1"], ["--ray-workers", "3"]])
def test_actors_the_cluster_cannot_hold_are_one_error_line_not_a_hang(cluster, reads, lambda_ref, tmp_path, capsys,
                                                                      monkeypatch, ask):
    """A GPU asked of a cluster without one, or more actors than its 2 CPUs: Ray would leave the
    actors pending for ever; the reservation fails after DNAESA_RAY_PLACEMENT_SECONDS instead."""
    monkeypatch.setenv("DNAESA_RAY_PLACEMENT_SECONDS", "3")
    out = tmp_path / "o.sam"
    code = main(["-q", "align", str(reads), str(lambda_ref), "--encoder", "kmer", "--index", str(tmp_path / "idx"),
                 "-o", str(out), "--engine", "ray", *ask])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot hold" in err[0] and "waited 3 s" in err[0], err
    assert not out.exists()
    assert not ray.util.placement_group_table() or all(
        group["state"] == "REMOVED" for group in ray.util.placement_group_table().values())


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_actors_equal_local_sam(reads, lambda_ref, local_sam, tmp_path, tmp_path_factory):
    out = tmp_path / "gpu.sam"
    Aligner(lambda_ref, "kmer", index=tmp_path_factory.getbasetemp() / "ray.idx", engine="ray", ray_workers=1,
            ray_gpus_per_worker=1, batch_size=500).align_file(str(reads), str(out))
    assert _body(out) == local_sam


def test_ray_pairs_equal_local_pairs(cluster, lambda_ref, lambda_contigs, tmp_path, tmp_path_factory):
    from dnaesa.simulate import simulate_pairs

    pairs = simulate_pairs(lambda_contigs, 800, 150, seed=13)
    write_fastq([p[0] for p in pairs], tmp_path / "r1.fq")
    write_fastq([p[1] for p in pairs], tmp_path / "r2.fq")
    index = tmp_path_factory.getbasetemp() / "ray.idx"
    outs = {}
    for engine in ("local", "ray"):
        outs[engine] = tmp_path / f"{engine}.sam"
        Aligner(lambda_ref, "kmer", index=index, engine=engine, ray_workers=2, threads=2,
                batch_size=400).align_file(str(tmp_path / "r1.fq"), str(outs[engine]), mates=str(tmp_path / "r2.fq"))
    assert _body(outs["ray"]) == _body(outs["local"]) and len(_body(outs["ray"])) > 1600


def _tiered_build(ref_path, folder, **kwargs):
    from dnaesa.model.base import load_encoder
    from dnaesa.options import IndexOptions
    from dnaesa.reference import Reference
    from dnaesa.store.index_dir import build_index, expected_manifest

    ref, enc = Reference.load(ref_path), load_encoder("default", "cpu")
    manifest = expected_manifest(ref, enc, IndexOptions(index_kind="tiered", shard_size=1000))
    return build_index(ref, enc, folder, manifest, chunk=128, **kwargs)


def test_ray_index_build_writes_the_same_bytes_despite_a_killed_actor(cluster, random_ref, tmp_path,
                                                                      monkeypatch):
    """Chunks embedded by 2 Ray actors, one of which dies once (replaced, its chunk retried): the
    shards (int4 and coarse) of one process."""
    from dnaesa.engine.ray import KILL_CHUNK_HOOK, RayEngine

    one = _tiered_build(random_ref, tmp_path / "one")
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_CHUNK_HOOK, f"256:{marker}")
    two = _tiered_build(random_ref, tmp_path / "two", engine=RayEngine(2))
    assert marker.exists(), "the hook did not fire"
    assert one.manifest["checksums"] == two.manifest["checksums"] and len(one.manifest["shards"]) >= 2


def _refuse_driver_spills(monkeypatch):
    """The driver's stores may not write shards (the actors' processes keep the real methods)."""
    from dnaesa.store.coarse import CoarseTier
    from dnaesa.store.vector_store import VectorStore

    def refuse(*args, **kwargs):
        raise AssertionError("the driver wrote a shard")

    monkeypatch.setattr(VectorStore, "spill", refuse)
    monkeypatch.setattr(CoarseTier, "spill", refuse)


def test_ray_actors_write_the_shards_themselves(cluster, random_ref, tmp_path, monkeypatch):
    """Every shard (int4 and coarse) written by the actor that encoded it: the driver's stores never
    spill, and the index is a one-process build's bytes, with no check file left in it."""
    from dnaesa.engine.ray import RayEngine

    one = _tiered_build(random_ref, tmp_path / "one")
    _refuse_driver_spills(monkeypatch)
    two = _tiered_build(random_ref, tmp_path / "two", engine=RayEngine(2))
    assert one.manifest["checksums"] == two.manifest["checksums"] and len(two.manifest["shards"]) == 2
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(p.name for p in (tmp_path / "two").iterdir())


def test_ray_build_without_a_shared_folder_falls_back_to_the_driver(cluster, random_ref, tmp_path, monkeypatch):
    """Actors that do not see the build folder (nodes without a shared filesystem; a test hook
    here) encode chunks and the driver writes the shards: the same bytes."""
    from dnaesa.engine import ray as ray_engine
    from dnaesa.store.vector_store import VectorStore

    one = _tiered_build(random_ref, tmp_path / "one")
    monkeypatch.setenv(ray_engine.UNSHARED_HOOK, "1")
    spills = []
    real = VectorStore.spill
    monkeypatch.setattr(VectorStore, "spill", lambda self, *a, **k: spills.append(1) or real(self, *a, **k))
    two = _tiered_build(random_ref, tmp_path / "two", engine=ray_engine.RayEngine(2))
    assert spills, "the driver did not write the shards"
    assert one.manifest["checksums"] == two.manifest["checksums"]
    assert not list((tmp_path / "two").glob("ray-*"))


def test_ray_build_stopped_after_a_shard_resumes_after_it(cluster, random_ref, tmp_path, monkeypatch, caplog):
    """The actor writing the second shard dies with no restarts left: the build stops with one
    IndexDirError, the first shard recorded; the next build resumes after it (the driver's stores
    write nothing) and gives a one-process build's bytes."""
    import logging

    from dnaesa.engine import ray as ray_engine
    from dnaesa.errors import IndexDirError

    one = _tiered_build(random_ref, tmp_path / "one")
    marker = tmp_path / "killed"
    monkeypatch.setenv(ray_engine.KILL_CHUNK_HOOK, f"1100:{marker}")
    monkeypatch.setattr(ray_engine, "MAX_RESTARTS", 0)
    with pytest.raises(IndexDirError, match="retries ran out"):
        _tiered_build(random_ref, tmp_path / "two", engine=ray_engine.RayEngine(2))
    assert marker.exists() and not (tmp_path / "two").exists()
    monkeypatch.undo()
    _refuse_driver_spills(monkeypatch)
    with caplog.at_level(logging.INFO, logger="dnaesa"):
        two = _tiered_build(random_ref, tmp_path / "two", engine=ray_engine.RayEngine(2))
    assert "after 1 finished shards" in caplog.text
    assert one.manifest["checksums"] == two.manifest["checksums"]


def test_ray_index_retries_run_out_is_one_error_line_then_resumes(cluster, random_ref, tmp_path, monkeypatch,
                                                                  capsys):
    """`dnaesa index --engine ray`: an actor that dies with no restarts left stops the build with
    one error line; the same command then builds the index a local build makes."""
    import dnaesa.engine.ray as ray_engine

    def index(folder, *extra):
        return main(["-q", "index", str(random_ref), "--index", str(folder), "--store", "int4", *extra])

    assert index(tmp_path / "local", "-t", "1") == 0
    marker = tmp_path / "killed"
    monkeypatch.setenv(ray_engine.KILL_CHUNK_HOOK, f"0:{marker}")
    monkeypatch.setattr(ray_engine, "MAX_RESTARTS", 0)
    capsys.readouterr()
    assert index(tmp_path / "ray", "--engine", "ray", "--ray-workers", "2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Ray actor embedding the index failed and retries ran out" in err[0], err
    assert not (tmp_path / "ray").exists()
    monkeypatch.undo()
    assert index(tmp_path / "ray", "--engine", "ray", "--ray-workers", "2") == 0
    import json

    manifests = [json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("local", "ray")]
    assert manifests[0]["checksums"] == manifests[1]["checksums"]


def test_ray_add_equals_building_both_at_once(cluster, random_ref, lambda_ref, tmp_path):
    """`dnaesa index B --index DIR --add --engine ray`: the added genome's chunks encoded by Ray
    actors give the index that building both genomes at once in one process gives."""
    import json

    def index(folder, *args):
        return main(["-q", "index", *map(str, args), "--index", str(folder), "--store", "int4"])

    assert index(tmp_path / "grown", random_ref, "--genome", "rnd", "-t", "1") == 0
    assert index(tmp_path / "grown", lambda_ref, "--genome", "lambda", "--add", "--engine", "ray",
                 "--ray-workers", "2") == 0
    assert index(tmp_path / "both", random_ref, lambda_ref, "--genome", "rnd", "--genome", "lambda",
                 "-t", "1") == 0
    grown, both = (json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("grown", "both"))
    assert sorted(grown["checksums"].values()) == sorted(both["checksums"].values())
    assert [g["name"] for g in grown["genomes"]] == ["rnd", "lambda"]


def test_ray_upgrade_to_tiered_writes_the_coarse_shards_in_the_actors(cluster, random_ref, tmp_path, monkeypatch):
    """An int4 index made tiered in place by Ray actors (`add_coarse_tier`): each coarse shard
    written by its actor (the driver's never spill), the same files as an upgrade in one process."""
    import shutil

    from dnaesa.engine.ray import RayEngine
    from dnaesa.model.base import load_encoder
    from dnaesa.options import IndexOptions
    from dnaesa.reference import Reference
    from dnaesa.store.index_dir import add_coarse_tier, build_index, expected_manifest

    ref, enc = Reference.load(random_ref), load_encoder("default", "cpu")
    int4, tiered = (expected_manifest(ref, enc, IndexOptions(index_kind=kind, shard_size=1000)) for kind in ("int4", "tiered"))
    build_index(ref, enc, tmp_path / "one", int4, chunk=128)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    one = add_coarse_tier(ref, tmp_path / "one", tiered, chunk=128)
    _refuse_driver_spills(monkeypatch)
    two = add_coarse_tier(ref, tmp_path / "two", tiered, chunk=128, engine=RayEngine(2))
    assert len(two.manifest["coarse_shards"]) == 2 and one.manifest["checksums"] == two.manifest["checksums"]
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(p.name for p in (tmp_path / "two").iterdir())
