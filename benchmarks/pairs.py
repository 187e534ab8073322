"""Paired-end reads against `bwa mem`: wgsim pairs, both aligners, accuracy by MAPQ and time.

    python benchmarks/pairs.py REF.fa.gz --pairs 50000 --length 150 --threads 2 --outdir bench_out/pairs

wgsim draws FR pairs (insert 400 +- 40 by default, wgsim's default error and mutation rates unless
given); its read names hold each fragment's ends, which `dnaesa evaluate` reads (the forward mate
starts at the fragment's start, the reverse one ends at its end). Prints one Markdown table: per
aligner, wall time, peak RSS, % correct, wrong at MAPQ >= 20, % properly paired (samtools
flagstat), and the insert size dnaesa estimated.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from dnaesa.evaluate import evaluate_sam


def timed(cmd: list[str], stdout=None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS GB, stderr) of `cmd` under /usr/bin/time."""
    proc = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *cmd], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, check=True)
    wall, rss = re.findall(r"TIME (\S+) (\S+)", proc.stderr)[-1]
    return float(wall), int(rss) / 1e6, proc.stderr


def proper_share(sam: Path) -> float:
    text = subprocess.run(["samtools", "flagstat", str(sam)], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"properly paired \(([\d.]+)%", text).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref")
    parser.add_argument("--pairs", type=int, default=50_000)
    parser.add_argument("--length", type=int, default=150)
    parser.add_argument("--insert", default="400,40", help="wgsim's -d,-s [400,40]")
    parser.add_argument("--error", type=float, default=0.01, help="wgsim -e [0.01]")
    parser.add_argument("--mutation", type=float, default=0.001, help="wgsim -r [0.001]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--outdir", default="bench_out/pairs")
    args = parser.parse_args()
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    mean, sd = args.insert.split(",")
    r1, r2 = out / "r1.fq", out / "r2.fq"
    with open(out / "wgsim.log", "w") as log:
        subprocess.run(["wgsim", "-S", "11", "-N", str(args.pairs), "-1", str(args.length), "-2", str(args.length),
                        "-d", mean, "-s", sd, "-e", str(args.error), "-r", str(args.mutation), args.ref, str(r1), str(r2)],
                       stdout=log, check=True)
    if not Path(args.ref + ".bwt").exists():
        subprocess.run(["bwa", "index", args.ref], capture_output=True, check=True)
    subprocess.run([sys.executable, "-m", "dnaesa", "-q", "index", args.ref], check=True)
    rows = []
    wall, rss, err = timed([sys.executable, "-m", "dnaesa", "align", str(r1), str(r2), args.ref, "-t", str(args.threads),
                            "-o", str(out / "dnaesa.sam")])
    insert = re.search(r"insert size .*", err)
    rows.append(("dnaesa", wall, rss, out / "dnaesa.sam", insert.group(0) if insert else "-"))
    with open(out / "bwa.sam", "w") as fh:
        wall, rss, _ = timed(["bwa", "mem", "-t", str(args.threads), args.ref, str(r1), str(r2)], stdout=fh)
    rows.append(("bwa mem", wall, rss, out / "bwa.sam", "-"))
    print(f"{args.pairs:,} wgsim pairs of {args.length} bp (insert {args.insert}, -e {args.error} -r {args.mutation}), "
          f"{args.threads} threads, reference {Path(args.ref).name}\n")
    print("| aligner | wall s | peak RSS GB | % correct | wrong at MAPQ >= 20 | % properly paired | insert size |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, wall, rss, sam, ins in rows:
        result = evaluate_sam(str(sam))
        mapq20 = next(r for r in result.rows if r.threshold == 20)
        print(f"| {name} | {wall:.1f} | {rss:.2f} | {result.percent_correct:.2f} | {mapq20.wrong} of "
              f"{mapq20.mapped} | {proper_share(sam):.2f} | {ins} |")


if __name__ == "__main__":
    main()
