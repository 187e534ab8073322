"""The genome-scale cost curve: a markdown table and a figure from the runs' logs.

Reads, for each point P of `--points`, what the runs in WORKDIR left (see the "Genome scale"
section of RESULTS.md for the commands): `scale_P.fa.json` (reference size), `idx_P_auto/`
(index), `logs/index_P_auto.log`, `logs/align_P_dnaesa.log` (GNU time -v), `aln_P_dnaesa.sam`, and
when present bwa's `logs/bwaindex_P.log`, `logs/align_P_bwa.log`, `aln_P_bwa.sam`, `scale_P.fa.*`
index files. Accuracy is `dnaesa.evaluate`'s rule (5 bp).

    python benchmarks/scale_report.py /work/scale --points 5m,70m,300m,3g --figure benchmarks/figures/genome_scale.png
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnaesa.evaluate import evaluate_sam  # noqa: E402

BWA_SUFFIXES = (".amb", ".ann", ".bwt", ".pac", ".sa")


def gnu_time(path: Path) -> dict | None:
    """wall s, cpu s (user + sys) and peak RSS GB from a `/usr/bin/time -v` log."""
    if not path.exists():
        return None
    text = path.read_text()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if not wall or "Exit status: 0" not in text:
        return None
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", text).group(1)) for k in ("User", "System"))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1e6
    return {"wall": seconds, "cpu": cpu, "rss": rss}


def correct(sam: Path) -> tuple[int, float] | None:
    if not sam.exists():
        return None
    report = evaluate_sam(sam)
    return report.total, report.percent_correct


def point(workdir: Path, p: str) -> dict:
    info = json.loads((workdir / f"scale_{p}.fa.json").read_text())
    idx = workdir / f"idx_{p}_auto"
    manifest = json.loads((idx / "manifest.json").read_text()) if (idx / "manifest.json").exists() else {}
    ref = workdir / f"scale_{p}.fa"
    bwa_files = [Path(str(ref) + s) for s in BWA_SUFFIXES]
    return {
        "point": p, "bases": info["total"], "kind": manifest.get("options", {}).get("index_kind"),
        "fragments": manifest.get("n_fragments"),
        "index_bytes": sum(f.stat().st_size for f in idx.iterdir()) if manifest else None,
        "index": gnu_time(workdir / "logs" / f"index_{p}_auto.log"),
        "align": gnu_time(workdir / "logs" / f"align_{p}_dnaesa.log"),
        "accuracy": correct(workdir / f"aln_{p}_dnaesa.sam"),
        "bwa_index_bytes": sum(f.stat().st_size for f in bwa_files) if all(f.exists() for f in bwa_files) else None,
        "bwa_index": gnu_time(workdir / "logs" / f"bwaindex_{p}.log"),
        "bwa_align": gnu_time(workdir / "logs" / f"align_{p}_bwa.log"),
        "bwa_accuracy": correct(workdir / f"aln_{p}_bwa.sam"),
    }


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(points: list[dict]) -> str:
    rows = ["| reference | store | fragments | index bytes (B/fragment) | build wall / CPU s | build peak RSS GB | "
            "align wall / CPU s | reads/s (wall) | align peak RSS GB | % correct | bwa index wall s, GB | "
            "bwa mem wall / CPU s | bwa % correct |", "|" + " --- |" * 13]
    for r in points:
        ix, al, bi, ba = r["index"] or {}, r["align"] or {}, r["bwa_index"] or {}, r["bwa_align"] or {}
        n_reads = r["accuracy"][0] if r["accuracy"] else None
        per = r["index_bytes"] / r["fragments"] if r["index_bytes"] and r["fragments"] else None
        rows.append(" | ".join([
            f"| {r['bases'] / 1e6:,.0f} Mb", str(r["kind"]), _fmt(r["fragments"], ","),
            f"{_fmt(r['index_bytes'] and r['index_bytes'] / 1e9, '.2f')} GB ({_fmt(per, ',.0f')})",
            f"{_fmt(ix.get('wall'), '.0f')} / {_fmt(ix.get('cpu'), '.0f')}", _fmt(ix.get("rss"), ".2f"),
            f"{_fmt(al.get('wall'), '.0f')} / {_fmt(al.get('cpu'), '.0f')}",
            _fmt(n_reads and al.get("wall") and n_reads / al["wall"], ",.0f"), _fmt(al.get("rss"), ".2f"),
            _fmt(r["accuracy"] and r["accuracy"][1], ".2f"),
            f"{_fmt(bi.get('wall'), '.0f')}, {_fmt(r['bwa_index_bytes'] and r['bwa_index_bytes'] / 1e9, '.2f')}",
            f"{_fmt(ba.get('wall'), '.1f')} / {_fmt(ba.get('cpu'), '.1f')}",
            _fmt(r["bwa_accuracy"] and r["bwa_accuracy"][1], ".2f") + " |"]))
    return "\n".join(rows)


def figure(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = (("index build, CPU s", lambda r: (r["index"] or {}).get("cpu"), lambda r: (r["bwa_index"] or {}).get("cpu")),
              ("index size, GB", lambda r: r["index_bytes"] and r["index_bytes"] / 1e9,
               lambda r: r["bwa_index_bytes"] and r["bwa_index_bytes"] / 1e9),
              ("align peak RSS, GB", lambda r: (r["align"] or {}).get("rss"), lambda r: (r["bwa_align"] or {}).get("rss")),
              ("align CPU s per 1,000 reads", lambda r: r["align"] and r["accuracy"] and 1000 * r["align"]["cpu"] / r["accuracy"][0],
               lambda r: r["bwa_align"] and r["bwa_accuracy"] and 1000 * r["bwa_align"]["cpu"] / r["bwa_accuracy"][0]))
    for ax, (title, ours, bwa) in zip(axes, panels):
        for label, get, style in (("dnaesa", ours, "o-"), ("bwa", bwa, "s--")):
            pts = [(r["bases"] / 1e6, get(r)) for r in points if get(r) is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("reference, Mb")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workdir", type=Path)
    p.add_argument("--points", default="5m,70m,300m,3g")
    p.add_argument("--figure", type=Path)
    args = p.parse_args()
    points = [point(args.workdir, name) for name in args.points.split(",")
              if (args.workdir / f"scale_{name}.fa.json").exists()]
    print(table(points))
    if args.figure:
        figure(points, args.figure)


if __name__ == "__main__":
    main()
