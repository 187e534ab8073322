"""Tests of dnaesa.simulate: origin truth, mutation rates, read names, FASTQ and CLI."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pysam
import pytest

from dnaesa.dna import reverse_complement as revcomp
from dnaesa.simulate import Truth, add_arguments, mutate, parse_truth, read_fasta, run, simulate_reads, write_fastq

LAMBDA = Path(__file__).parent / "data" / "lambda_phage.fa.gz"


@pytest.fixture(scope="module")
def contigs() -> list[tuple[str, str]]:
    return read_fasta(LAMBDA)


def _window(contigs: dict[str, str], r) -> str:
    w = contigs[r.contig][r.start:r.end]
    return revcomp(w) if r.reverse else w


def test_error_free_read_is_the_reference_window(contigs):
    reads = simulate_reads(contigs, 400, 150, seed=3, sub_rate=0, indel_rate=0)
    ref = dict(contigs)
    assert all(len(r.seq) == 150 and r.end - r.start == 150 for r in reads)
    assert all(r.seq == _window(ref, r) for r in reads)
    assert 150 < sum(r.reverse for r in reads) < 250


def test_names_parse_back(contigs):
    for r in simulate_reads(contigs, 50, 100, seed=1, divergence=0.05):
        assert parse_truth(r.name) == Truth(r.contig, r.start, r.end, r.reverse)
        assert parse_truth(r.name + "/1") == Truth(r.contig, r.start, r.end, r.reverse)
        # the pattern samtools' wgsim_eval.pl uses
        m = re.match(r"^(\S+)_(\d+)_(\d+)_", r.name)
        assert (m.group(1), int(m.group(2)), int(m.group(3))) == (r.contig, r.start + 1, r.end)


def test_parse_wgsim_names():
    assert parse_truth("chr_1_1001_1500_2:0:0_1:0:0_1a/1") == Truth("chr_1", 1000, 1500, None)
    assert parse_truth("NC_000913.3_5_504_0:0:0_0:0:0_0") == Truth("NC_000913.3", 4, 504, None)
    assert parse_truth("read42") is None


def test_substitutions_only_counts_and_span(contigs):
    ref = dict(contigs)
    reads = simulate_reads(contigs, 300, 200, seed=2, sub_rate=0.02, indel_rate=0)
    total = 0
    for r in reads:
        window = _window(ref, r)
        assert len(window) == 200
        diffs = sum(a != b for a, b in zip(window, r.seq))
        assert diffs == int(r.name.split("_")[-3].split(":")[0])
        total += diffs
    assert total / (300 * 200) == pytest.approx(0.02, rel=0.2)


def test_indels_keep_length_and_shift_span(contigs):
    reads = simulate_reads(contigs, 300, 250, seed=4, sub_rate=0, indel_rate=0.01)
    assert all(len(r.seq) == 250 for r in reads)
    spans = np.array([r.end - r.start for r in reads])
    assert spans.min() < 250 < spans.max()
    n_indel = sum(int(r.name.split("_")[-3].split(":")[0]) for r in reads)
    assert n_indel / (300 * 250) == pytest.approx(0.01, rel=0.25)


def test_divergence_counts(contigs):
    reads = simulate_reads(contigs, 200, 250, seed=5, sub_rate=0, indel_rate=0, divergence=0.1)
    fields = np.array([[int(x) for x in r.name.split("_")[-3].split(":")] for r in reads])
    assert fields[:, 0].sum() == 0
    assert fields[:, 1].mean() / 250 == pytest.approx(0.09, rel=0.2)
    assert fields[:, 2].mean() / 250 == pytest.approx(0.01, rel=0.35)


def test_mutate_rates():
    rng = np.random.default_rng(0)
    seq = "ACGT" * 25_000
    out, n_sub, n_ins, n_del = mutate(seq, rng, 0.01, 0.002)
    assert n_sub == pytest.approx(1000, rel=0.15)
    assert n_ins + n_del == pytest.approx(200, rel=0.25)
    assert abs(n_ins - n_del) < 0.3 * (n_ins + n_del)
    assert len(out) != len(seq)
    assert mutate(seq, rng, 0, 0) == (seq, 0, 0, 0)


def test_n_windows_are_avoided():
    contigs = {"c_1": "ACGT" * 50 + "N" * 100 + "TTGCA" * 40}
    reads = simulate_reads(contigs, 100, 60, seed=0, sub_rate=0, indel_rate=0)
    assert all("N" not in r.seq for r in reads)
    assert {r.start < 200 for r in reads} == {True, False}


def test_seed_is_reproducible(contigs):
    a = simulate_reads(contigs, 20, 100, seed=9)
    b = simulate_reads(contigs, 20, 100, seed=9)
    assert [r.name for r in a] == [r.name for r in b]
    assert [r.seq for r in a] == [r.seq for r in b]


def test_cli_writes_fastq(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "r.fq"
    args = parser.parse_args([str(LAMBDA), "-n", "30", "-l", "120", "--seed", "1",
                              "--divergence", "0.02", "-o", str(out)])
    assert run(args) == 0
    with pysam.FastxFile(str(out)) as fh:
        recs = list(fh)
    assert len(recs) == 30
    assert all(len(r.sequence) == 120 == len(r.quality) for r in recs)
    assert all(parse_truth(r.name) is not None for r in recs)


def test_write_fastq_roundtrip(tmp_path, contigs):
    reads = simulate_reads(contigs, 5, 50, seed=1)
    write_fastq(reads, tmp_path / "x.fq")
    lines = (tmp_path / "x.fq").read_text().splitlines()
    assert lines[0] == "@" + reads[0].name and lines[1] == reads[0].seq
