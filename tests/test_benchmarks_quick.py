"""Smoke test of `benchmarks/run_benchmark.py --quick` on the lambda phage: tables exist and add up.

Runs the aligners of the quick mode that are installed (the script skips the others); the whole
run is bounded to 2 minutes. Marked slow (it starts ~40 subprocesses).
"""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "run_benchmark.py"
EXTERNAL = ("bwa", "bowtie2", "minimap2")

pytestmark = pytest.mark.slow


def _tsv(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--outdir", str(out),
                           "--reads", "400", "--divergence-reads", "300"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_tables_exist(quick_run):
    for name in ("index.tsv", "runs.tsv", "mapq.tsv", "results.md"):
        assert (quick_run / name).stat().st_size > 0
    assert "divergence sweep" in (quick_run / "results.md").read_text()


def test_installed_tools_ran(quick_run):
    tools = {row["tool"] for row in _tsv(quick_run / "runs.tsv")}
    for tool in EXTERNAL:
        if shutil.which(tool):
            assert tool in tools
    assert tools, "no aligner ran"


def test_runs_add_up(quick_run):
    rows = _tsv(quick_run / "runs.tsv")
    assert {r["simulator"] for r in rows} >= {"dnaesa"}
    for r in rows:
        assert r["status"] == "ok"
        reads, mapped, unmapped = int(r["reads"]), int(r["mapped"]), int(r["unmapped"])
        assert mapped + unmapped == reads
        assert 0 <= float(r["pct_correct"]) <= float(r["pct_mapped"]) <= 100
        for key in ("q60_fraction", "q10_fraction", "q60_error", "q10_error", "q0_error"):
            assert 0.0 <= float(r[key]) <= 1.0
        assert float(r["q60_fraction"]) <= float(r["q10_fraction"])
        assert float(r["wall_s"]) >= 0 and float(r["peak_rss_mb"]) > 0


def test_mapq_rows_are_cumulative(quick_run):
    runs = {(r["simulator"], r["length"], r["divergence"], r["tool"]): r
            for r in _tsv(quick_run / "runs.tsv")}
    groups: dict[tuple, list[dict[str, str]]] = {}
    for row in _tsv(quick_run / "mapq.tsv"):
        groups.setdefault((row["simulator"], row["length"], row["divergence"], row["tool"]),
                          []).append(row)
    assert groups.keys() == runs.keys()
    for key, rows in groups.items():
        total = int(runs[key]["reads"])
        mapped = [int(r["mapped"]) for r in rows]
        assert [int(r["mapq_min"]) for r in rows] == [60, 40, 30, 20, 10, 1, 0]
        assert mapped == sorted(mapped) and mapped[-1] == int(runs[key]["mapped"])
        for r in rows:
            assert 0 <= int(r["wrong"]) <= int(r["mapped"])
            assert float(r["fraction"]) == pytest.approx(int(r["mapped"]) / total, abs=1e-6)


def test_index_table(quick_run):
    rows = _tsv(quick_run / "index.tsv")
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["tool"] for r in rows} == {r["tool"] for r in _tsv(quick_run / "runs.tsv")}
