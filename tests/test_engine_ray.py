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
