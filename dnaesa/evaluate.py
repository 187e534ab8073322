"""Mapping accuracy of a SAM/BAM of simulated reads (mapeval-style): `dnaesa evaluate`.

This module owns the rule that decides whether a read is placed correctly and the per-MAPQ report.
Each read's truth comes from its name (`dnaesa.simulate.parse_truth`: our names and wgsim's).
Only primary records count (flags 0x100 and 0x800 are skipped), so each read is counted once.

A mapped read is correct when it lies on the true contig and

- names that give the strand (ours): the strand matches, and the unclipped start (POS minus a
  leading soft/hard clip, i.e. cigar[0], whatever the strand) is within `tolerance` bp of the true
  start, OR the unclipped end (end plus a trailing clip) is within `tolerance` of the true end.
  Accepting either end keeps a read correct when an indel near one end shifts that end's clip;
- names that do not (wgsim: the name gives the ends of the fragment read 1 came from): a forward
  record's unclipped start must be within `tolerance` of the fragment's left end, a reverse
  record's unclipped end within `tolerance` of its right end. This is samtools' `wgsim_eval.pl
  alneval` rule, except that it also accepts POS minus the *trailing* clip (and the mirror for the
  end), and counts secondary/supplementary records too.

For each MAPQ threshold in `THRESHOLDS` the report gives the reads mapped with MAPQ >= threshold,
their fraction of all reads, how many of them are wrong, and that error rate.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pysam

from dnaesa.errors import InputError
from dnaesa.simulate import Truth, parse_truth

THRESHOLDS = (60, 40, 30, 20, 10, 1, 0)
_CLIPS = (4, 5)  # pysam: soft clip, hard clip


@dataclass
class Row:
    """Reads mapped with MAPQ >= `threshold` and the wrong ones among them."""

    threshold: int
    mapped: int
    fraction: float
    wrong: int
    error_rate: float


@dataclass
class Report:
    path: str
    tolerance: int
    total: int = 0
    unmapped: int = 0
    correct: int = 0
    #: primary records whose name carries no truth (not counted anywhere else)
    no_truth: int = 0
    rows: list[Row] = field(default_factory=list)

    @property
    def mapped(self) -> int:
        return self.total - self.unmapped

    @property
    def percent_correct(self) -> float:
        return 100.0 * self.correct / self.total if self.total else 0.0


def unclipped_span(rec: pysam.AlignedSegment) -> tuple[int, int]:
    """0-based [start, end) of a mapped record, clips at either end added back."""
    cigar = rec.cigartuples or []
    start, end = rec.reference_start, rec.reference_end
    if cigar and cigar[0][0] in _CLIPS:
        start -= cigar[0][1]
    if len(cigar) > 1 and cigar[-1][0] in _CLIPS:
        end += cigar[-1][1]
    return start, end


def is_correct(truth: Truth, contig: str, reverse: bool, start: int, end: int,
               tolerance: int) -> bool:
    """Whether a placement (unclipped, 0-based half-open) agrees with the truth (module rule)."""
    if contig != truth.contig:
        return False
    if truth.reverse is None:
        return abs(end - truth.end) <= tolerance if reverse else abs(start - truth.start) <= tolerance
    if reverse != truth.reverse:
        return False
    return abs(start - truth.start) <= tolerance or abs(end - truth.end) <= tolerance


def _rows(placed: list[tuple[int, bool]], total: int) -> list[Row]:
    rows = []
    for t in THRESHOLDS:
        hits = [ok for mapq, ok in placed if mapq >= t]
        wrong = hits.count(False)
        rows.append(Row(t, len(hits), len(hits) / total if total else 0.0, wrong,
                        wrong / len(hits) if hits else 0.0))
    return rows


def evaluate_sam(path: str | Path, tolerance: int = 5) -> Report:
    """Accuracy report of the primary records of a SAM/BAM file of simulated reads."""
    report = Report(str(path), tolerance)
    placed: list[tuple[int, bool]] = []
    try:
        sam = pysam.AlignmentFile(str(path), check_sq=False)
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read as SAM/BAM: {e}") from e
    with sam:
        for rec in sam:
            if rec.is_secondary or rec.is_supplementary:
                continue
            truth = parse_truth(rec.query_name)
            if truth is None:
                report.no_truth += 1
                continue
            report.total += 1
            if rec.is_unmapped:
                report.unmapped += 1
                continue
            start, end = unclipped_span(rec)
            ok = is_correct(truth, rec.reference_name, rec.is_reverse, start, end, tolerance)
            report.correct += ok
            placed.append((rec.mapping_quality, ok))
    report.rows = _rows(placed, report.total)
    return report


def format_table(report: Report) -> str:
    """A readable table of one report."""
    lines = [f"{report.path}: {report.total} reads, {report.mapped} mapped, "
             f"{report.unmapped} unmapped, {report.percent_correct:.2f}% correct "
             f"(tolerance {report.tolerance} bp)"]
    if report.no_truth:
        lines.append(f"  ({report.no_truth} records without truth in their name were ignored)")
    lines.append(f"  {'MAPQ>=':>6} {'mapped':>9} {'fraction':>9} {'wrong':>7} {'error rate':>11}")
    for r in report.rows:
        lines.append(f"  {r.threshold:>6} {r.mapped:>9} {r.fraction:>9.4f} {r.wrong:>7} "
                     f"{r.error_rate:>11.3e}")
    return "\n".join(lines)


TSV_HEADER = ("file", "mapq_min", "mapped", "fraction", "wrong", "error_rate", "total",
              "unmapped", "percent_correct")


def format_tsv(reports: list[Report]) -> str:
    """One line per file and MAPQ threshold, with a header line."""
    lines = ["\t".join(TSV_HEADER)]
    for rep in reports:
        for r in rep.rows:
            lines.append("\t".join(str(x) for x in (
                rep.path, r.threshold, r.mapped, f"{r.fraction:.6f}", r.wrong,
                f"{r.error_rate:.6e}", rep.total, rep.unmapped, f"{rep.percent_correct:.4f}")))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sam", nargs="+", help="SAM/BAM files of simulated reads")
    parser.add_argument("--tolerance", type=int, default=5,
                        help="bp between the true and the mapped (unclipped) start (default 5)")
    parser.add_argument("--tsv", action="store_true", help="print TSV instead of tables")


def run(args: argparse.Namespace) -> int:
    reports = [evaluate_sam(path, args.tolerance) for path in args.sam]
    if args.tsv:
        print(format_tsv(reports))
    else:
        print("\n\n".join(format_table(r) for r in reports))
    if any(r.total == 0 for r in reports):
        print("warning: a file held no read with truth in its name", file=sys.stderr)
    return 0
