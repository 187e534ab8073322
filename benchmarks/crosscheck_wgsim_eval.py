"""Compare `dnaesa.evaluate` with samtools' `wgsim_eval.pl alneval` on one SAM of wgsim reads.

    python benchmarks/crosscheck_wgsim_eval.py OUT.sam [--tolerance 5]

Prints a markdown table: for each MAPQ threshold, the reads mapped and wrong by dnaesa.evaluate,
by wgsim_eval.pl on the SAM as it is (it counts secondary and supplementary records too), and by
wgsim_eval.pl on the primary records only (`samtools view -F 0x900`).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dnaesa.evaluate import THRESHOLDS, evaluate_sam  # noqa: E402


def wgsim_eval(sam: Path, tolerance: int) -> dict[int, tuple[int, int]]:
    """threshold -> (mapped with MAPQ >= threshold, wrong among them), by wgsim_eval.pl."""
    roc = subprocess.run(["wgsim_eval.pl", "alneval", "-a", "-g", str(tolerance), str(sam)],
                         capture_output=True, text=True, check=True).stdout
    points = [tuple(map(int, line.split())) for line in roc.splitlines() if line.strip()]
    table = subprocess.run(["wgsim_eval.pl", "alneval", "-g", str(tolerance), str(sam)],
                           capture_output=True, text=True, check=True).stdout
    total = wrong = 0
    for line in table.splitlines():  # "06x  wrong / count  cumulative  ratio"
        fields = line.split()
        wrong += int(fields[1])
        total += int(fields[3])
    counts = {0: (total, wrong)}
    for t in THRESHOLDS:
        if t:
            above = [(n, w) for q, n, w in points if q >= t]
            counts[t] = above[-1] if above else (0, 0)
    return counts


def primary_only(sam: Path, dst: Path) -> Path:
    subprocess.run(["samtools", "view", "-h", "-F", "0x900", "-o", str(dst), str(sam)],
                   check=True)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sam", type=Path)
    p.add_argument("--tolerance", type=int, default=5)
    args = p.parse_args(argv)
    ours = {r.threshold: (r.mapped, r.wrong) for r in evaluate_sam(args.sam, args.tolerance).rows}
    theirs = wgsim_eval(args.sam, args.tolerance)
    with tempfile.TemporaryDirectory() as tmp:
        primary = wgsim_eval(primary_only(args.sam, Path(tmp) / "primary.sam"), args.tolerance)
    print("| MAPQ ≥ | dnaesa.evaluate mapped / wrong | wgsim_eval.pl (all records) | "
          "wgsim_eval.pl (primary only) |")
    print("| --- | --- | --- | --- |")
    for t in THRESHOLDS:
        cells = [f"{n} / {w}" for n, w in (ours[t], theirs[t], primary[t])]
        print(f"| {t} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
