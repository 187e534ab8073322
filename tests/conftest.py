"""Shared fixtures: the lambda phage reference (committed in tests/data) and a k-mer index of it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
LAMBDA = DATA / "lambda_phage.fa.gz"


@pytest.fixture(scope="session")
def lambda_ref(tmp_path_factory) -> Path:
    """A private copy of the lambda reference, so indexes built beside it stay in tmp."""
    path = tmp_path_factory.mktemp("ref") / "lambda.fa.gz"
    shutil.copy(LAMBDA, path)
    return path


@pytest.fixture(scope="session")
def lambda_contigs(lambda_ref) -> list[tuple[str, str]]:
    from dnaesa.reference import Reference

    ref = Reference.load(lambda_ref)
    return list(zip(ref.names, ref.seqs))


@pytest.fixture(scope="session")
def kmer_aligner(lambda_ref, tmp_path_factory):
    from dnaesa.pipeline import Aligner

    return Aligner(lambda_ref, "kmer", index=tmp_path_factory.mktemp("idx") / "lambda.idx", device="cpu")


@pytest.fixture(scope="session")
def lambda_reads_placed(lambda_contigs, tmp_path_factory):
    """`placed(model)`: of 300 simulated 250 bp lambda reads, how many an `Aligner` with `model`
    places at their origin (a leading clip counted back)."""
    from dnaesa.pipeline import Aligner
    from dnaesa.simulate import simulate_reads

    reads = simulate_reads(lambda_contigs, 300, 250, seed=3, sub_rate=0.01, indel_rate=0.002)

    def placed(model: str) -> tuple[int, int, object]:
        folder = tmp_path_factory.mktemp("placed")
        ref = folder / "lambda.fa"
        ref.write_text("".join(f">{name}\n{seq}\n" for name, seq in lambda_contigs))  # index beside it, in tmp
        aligner = Aligner(str(ref), model=model, index=folder / "lambda.idx", device="cpu")
        good = 0
        for read, hits in zip(reads, aligner.map_batch([r.seq for r in reads])):
            if hits:
                aln, lead = hits[0], (hits[0].cigar[0][1] if hits[0].cigar[0][0] == 4 else 0)
                good += (aln.contig == read.contig and aln.reverse == read.reverse
                         and abs(aln.ref_start - lead - read.start) <= 5)
        return good, len(reads), aligner

    return placed


@pytest.fixture(scope="module")
def random_ref(tmp_path_factory) -> Path:
    """1.2 Mb of random sequence in two contigs (a: 700 kb, b: 500 kb): 1,200 fragments, one per module."""
    import numpy as np

    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("tref") / "random.fa"
    with open(path, "w") as fh:
        for name, n in (("a", 700_000), ("b", 500_000)):
            fh.write(f">{name}\n{''.join(rng.choice(list('ACGT'), n))}\n")
    return path
