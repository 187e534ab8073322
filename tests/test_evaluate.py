"""Tests of dnaesa.evaluate on a hand-made SAM with known correct, wrong and unmapped records."""
from __future__ import annotations

import argparse
from pathlib import Path

import pysam
import pytest

from dnaesa.errors import InputError
from dnaesa.evaluate import THRESHOLDS, add_arguments, evaluate_sam, format_tsv, is_correct, run
from dnaesa.simulate import Truth

HEADER = {"HD": {"VN": "1.6"}, "SQ": [{"SN": "chr_A", "LN": 10000}, {"SN": "chrB", "LN": 5000}]}
M, I, S = 0, 1, 4


def _rec(sam: pysam.AlignmentFile, name: str, flag: int, contig: int, pos: int, mapq: int,
         cigar: list[tuple[int, int]] | None) -> pysam.AlignedSegment:
    a = pysam.AlignedSegment(sam.header)
    a.query_name = name
    a.flag = flag
    a.reference_id = contig
    a.reference_start = pos
    a.mapping_quality = mapq
    a.cigartuples = cigar
    a.query_sequence = "A" * 100
    a.query_qualities = pysam.qualitystring_to_array("I" * 100)
    return a


# (name, flag, contig id, 0-based pos, mapq, cigar, expected correct | None for unmapped)
RECORDS = [
    # truth chr_A [1000, 1100) forward: exact -> correct
    ("chr_A_1001_1100_0:0:0_F_0", 0, 0, 1000, 60, [(M, 100)], True),
    # leading soft clip added back: 1010 - 10 = 1000 -> correct
    ("chr_A_1001_1100_0:0:0_F_1", 0, 0, 1010, 60, [(S, 10), (M, 90)], True),
    # reverse truth, reverse record with a leading clip (left end of the alignment) -> correct
    ("chr_A_2001_2100_0:0:0_R_2", 16, 0, 2003, 40, [(S, 3), (M, 97)], True),
    # wrong strand -> wrong
    ("chr_A_3001_3100_0:0:0_F_3", 16, 0, 3000, 60, [(M, 100)], False),
    # wrong contig -> wrong
    ("chr_A_4001_4100_0:0:0_F_4", 0, 1, 4000, 30, [(M, 100)], False),
    # 6 bp off at both ends -> wrong with tolerance 5
    ("chr_A_5001_5100_0:0:0_F_5", 0, 0, 5006, 20, [(M, 100)], False),
    # start 8 bp off (an insertion near the start) but end right -> correct
    ("chr_A_6001_6100_0:0:0_R_6", 16, 0, 6008, 10, [(M, 10), (I, 8), (M, 82)], True),
    # far away, low MAPQ -> wrong
    ("chrB_101_200_0:0:0_F_7", 0, 0, 100, 0, [(M, 100)], False),
    # within tolerance, MAPQ 1
    ("chrB_101_200_0:0:0_F_8", 0, 1, 104, 1, [(M, 100)], True),
    # unmapped
    ("chr_A_7001_7100_0:0:0_F_9", 4, -1, -1, 0, None, None),
    ("chr_A_8001_8100_0:0:0_R_a", 4, -1, -1, 0, None, None),
    # wgsim name (no strand): reverse record compared by its end to the fragment's right end
    ("chr_A_8801_9200_1:0:0_0:0:0_b/1", 16, 0, 9100, 60, [(M, 100)], True),
    # wgsim name: forward record compared by its start -> wrong
    ("chr_A_8801_9200_1:0:0_0:0:0_c/1", 0, 0, 9100, 60, [(M, 100)], False),
]
# secondary and supplementary records that must be ignored
EXTRA = [("chr_A_1001_1100_0:0:0_F_0", 256, 1, 10, 60, [(M, 100)]),
         ("chr_A_3001_3100_0:0:0_F_3", 2048, 0, 3000, 60, [(M, 100)]),
         ("not_a_simulated_read", 0, 0, 10, 60, [(M, 100)])]


@pytest.fixture()
def sam_path(tmp_path) -> Path:
    path = tmp_path / "t.sam"
    with pysam.AlignmentFile(str(path), "w", header=HEADER) as sam:
        for name, flag, contig, pos, mapq, cigar, _ in RECORDS:
            sam.write(_rec(sam, name, flag, contig, pos, mapq, cigar))
        for name, flag, contig, pos, mapq, cigar in EXTRA:
            sam.write(_rec(sam, name, flag, contig, pos, mapq, cigar))
    return path


def test_counts_per_threshold(sam_path):
    rep = evaluate_sam(sam_path, tolerance=5)
    mapped = [(r[4], r[6]) for r in RECORDS if r[6] is not None]
    assert rep.total == len(RECORDS) == 13
    assert rep.unmapped == 2
    assert rep.no_truth == 1
    assert rep.correct == sum(ok for _, ok in mapped) == 6
    assert rep.percent_correct == pytest.approx(100 * 6 / 13)
    assert [r.threshold for r in rep.rows] == list(THRESHOLDS)
    expected = {60: (5, 2), 40: (6, 2), 30: (7, 3), 20: (8, 4), 10: (9, 4), 1: (10, 4),
                0: (11, 5)}
    for row in rep.rows:
        assert (row.mapped, row.wrong) == expected[row.threshold]
        assert row.fraction == pytest.approx(row.mapped / 13)
        assert row.error_rate == pytest.approx(row.wrong / row.mapped)


def test_tolerance_widens(sam_path):
    assert evaluate_sam(sam_path, tolerance=6).correct == 7
    assert evaluate_sam(sam_path, tolerance=3).correct == 5


def test_is_correct_rules():
    t = Truth("c", 100, 200, False)
    assert is_correct(t, "c", False, 103, 210, 5)
    assert is_correct(t, "c", False, 90, 198, 5)
    assert not is_correct(t, "c", True, 100, 200, 5)
    w = Truth("c", 100, 600, None)
    assert is_correct(w, "c", True, 450, 597, 5) and not is_correct(w, "c", False, 450, 597, 5)


def test_cli_table_and_tsv(sam_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args([str(sam_path), str(sam_path)])) == 0
    out = capsys.readouterr().out
    assert out.count("13 reads, 11 mapped, 2 unmapped") == 2
    assert run(parser.parse_args([str(sam_path), "--tsv"])) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + len(THRESHOLDS)
    assert lines[1].split("\t")[1:3] == ["60", "5"]
    assert format_tsv([]).count("\n") == 0


def test_bad_file_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.sam"
    bad.write_bytes(b"\x00\x01 not a sam")
    with pytest.raises(InputError):
        evaluate_sam(bad)
