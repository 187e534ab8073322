"""The genome-scale stand-in (benchmarks/make_scale_reference.py) in miniature: real sequence
verbatim, Markov and mutated-copy decoys of the asked size, and reads from the real region found
by a compact (int4) index among the decoys."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dnaesa.io.fastx import read_reference
from dnaesa.pipeline import Aligner
from dnaesa.simulate import parse_truth, read_fasta, simulate_reads

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "make_scale_reference.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("make_scale_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stand_in_holds_the_real_sequence_and_decoys(scale, lambda_ref, tmp_path):
    real = scale.load_real(str(lambda_ref), None)
    out = tmp_path / "mini.fa"
    info = scale.build(real, 400_000, out, split=20_000, order=6, contig_len=30_000, chain_len=5_000, log=lambda *a: None)
    contigs = dict(read_reference(str(out)))
    lam = next(iter(read_reference(str(lambda_ref))))[1]
    assert contigs["REAL_0-0.02M"] + contigs["REAL_0.02-0.048502M"] == lam
    assert dict(read_reference(str(out) + ".reads-region.fa")) == {"REAL_0.02-0.048502M": lam[20_000:]}
    assert info["copies"] == 1 and abs(info["total"] - 400_000) < 1_000
    markov = "".join(s for n, s in contigs.items() if n.startswith("MARKOV"))
    copy = next(s for n, s in contigs.items() if n.startswith("COPY"))
    assert len(markov) == info["markov"] and set(markov) <= set("ACGT")
    gc = lambda s: (s.count("G") + s.count("C")) / len(s)  # noqa: E731
    assert abs(gc(markov) - gc(lam)) < 0.02
    assert abs(len(copy) - 30_000) < 500 and copy != lam[: len(copy)]


def test_reads_of_the_real_region_are_placed_among_decoys(scale, lambda_ref, tmp_path):
    real = scale.load_real(str(lambda_ref), None)
    out = tmp_path / "mini.fa"
    scale.build(real, 400_000, out, split=20_000, order=6, contig_len=30_000, chain_len=5_000, seed=1, log=lambda *a: None)
    reads = simulate_reads(read_fasta(str(out) + ".reads-region.fa"), 200, 150, seed=2)
    aligner = Aligner(out, "default", index=tmp_path / "idx", device="cpu", index_kind="int4")
    assert aligner.index.manifest["options"]["index_kind"] == "int4"
    hits = aligner.map_batch([r.seq for r in reads])
    right = 0
    for read, placed in zip(reads, hits):
        truth = parse_truth(read.name)
        right += bool(placed) and placed[0].contig == truth.contig and abs(placed[0].ref_start - truth.start) <= 5
    assert right >= 0.97 * len(reads)
