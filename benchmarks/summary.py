"""The "summary against the targets" table of RESULTS.md, from the runs of run_benchmark.py.

    python benchmarks/summary.py bench_out/ecoli_k12 bench_out/saureus_col ... [--tool dnaesa] [--versus bwa]

For each read set with no divergence: % correct of TOOL and VERSUS, their difference, wrong/mapped
at MAPQ >= 20, and align wall and CPU seconds; then the divergence sweep. Reads each run
directory's runs.tsv and mapq.tsv.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path


def rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--tool", default="dnaesa")
    p.add_argument("--versus", default="bwa")
    args = p.parse_args(argv)
    t, v = args.tool, args.versus
    print(f"| genome | reads | {t} correct % | {v} correct % | diff (points) | {t} err MAPQ≥20 | {v} err MAPQ≥20 "
          f"| {t} / {v} align wall s | CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    sweep = []
    for run in args.runs:
        runs = rows(run / "runs.tsv")
        q20 = {(r["simulator"], r["length"], r["divergence"], r["tool"]): r for r in rows(run / "mapq.tsv")
               if r["mapq_min"] == "20"}
        by = {(r["simulator"], r["length"], r["divergence"], r["tool"]): r for r in runs}
        for key in dict.fromkeys((r["simulator"], r["length"], r["divergence"]) for r in runs):
            a, b = by.get((*key, t)), by.get((*key, v))
            if a is None or b is None:
                continue
            if float(key[2]) > 0:
                sweep.append((a["genome"], key[2], a, b, by.get((*key, f"{t}-divergent"))))
                continue
            qa, qb = q20[(*key, t)], q20[(*key, v)]
            diff = float(a["pct_correct"]) - float(b["pct_correct"])
            print(f"| {a['genome']} | {key[0]} {key[1]} bp | {float(a['pct_correct']):.2f} | {float(b['pct_correct']):.2f} "
                  f"| {diff:+.2f} | {qa['wrong']}/{qa['mapped']} | {qb['wrong']}/{qb['mapped']} "
                  f"| {float(a['wall_s']):.1f} / {float(b['wall_s']):.1f} | {float(a['cpu_s']):.1f} / {float(b['cpu_s']):.1f} |")
    if sweep:
        print(f"\n| genome | divergence | {t} | {t} -x divergent | {v} | {t} - {v} | divergent - {v} |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for genome, div, a, b, d in sweep:
            ca, cb = float(a["pct_correct"]), float(b["pct_correct"])
            cd = float(d["pct_correct"]) if d else float("nan")
            print(f"| {genome} | {float(div) * 100:g}% | {ca:.2f} | {cd:.2f} | {cb:.2f} | {ca - cb:+.1f} | {cd - cb:+.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
