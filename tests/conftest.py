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
