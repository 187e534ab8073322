"""Benchmark results: the records, their TSV and markdown tables, and the PNG plots.

Files written into the output directory: `index.tsv`, `runs.tsv` (one line per read set and
tool), `mapq.tsv` (one line per read set, tool and MAPQ threshold), `results.md`, and the plots
`roc_{readset}.png` (error rate vs fraction mapped over MAPQ thresholds), `divergence.png`
(% correct vs divergence) and `speed.png` (reads/s vs read length).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from bench_reads import ReadSet  # noqa: E402
from bench_tools import Usage  # noqa: E402

from dnaesa.evaluate import Report  # noqa: E402


@dataclass
class IndexResult:
    tool: str
    usage: Usage | None
    status: str = "ok"


@dataclass
class RunResult:
    read_set: ReadSet
    tool: str
    usage: Usage | None
    report: Report | None
    status: str = "ok"

    @property
    def reads_per_s(self) -> float:
        return self.read_set.n / self.usage.wall_s if self.usage and self.usage.wall_s else 0.0

    def row(self, threshold: int):
        return next(r for r in self.report.rows if r.threshold == threshold)


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


INDEX_HEADER = ("genome", "tool", "wall_s", "cpu_s", "peak_rss_mb", "status")
RUNS_HEADER = ("genome", "simulator", "length", "divergence", "tool", "reads", "wall_s", "cpu_s",
               "peak_rss_mb", "reads_per_s", "mapped", "unmapped", "pct_mapped", "pct_correct",
               "q60_fraction", "q60_error", "q10_fraction", "q10_error", "q0_error", "status")
MAPQ_HEADER = ("genome", "simulator", "length", "divergence", "tool", "mapq_min", "mapped",
               "fraction", "wrong", "error_rate")


def _usage_cells(u: Usage | None) -> list[str]:
    return [_fmt(u.wall_s), _fmt(u.cpu_s), _fmt(u.rss_mb, 1)] if u else ["", "", ""]


def _run_cells(genome: str, r: RunResult) -> list[str]:
    rs = r.read_set
    cells = [genome, rs.simulator, str(rs.length), f"{rs.divergence:g}", r.tool, str(rs.n),
             *_usage_cells(r.usage), _fmt(r.reads_per_s, 0)]
    rep = r.report
    if rep is None:
        return cells + [""] * 9 + [r.status]
    q60, q10, q0 = r.row(60), r.row(10), r.row(0)
    return cells + [str(rep.mapped), str(rep.unmapped),
                    _fmt(100 * rep.mapped / rep.total if rep.total else 0.0, 3),
                    _fmt(rep.percent_correct, 3), _fmt(q60.fraction, 5), f"{q60.error_rate:.3e}",
                    _fmt(q10.fraction, 5), f"{q10.error_rate:.3e}", f"{q0.error_rate:.3e}",
                    r.status]


def write_tsvs(outdir: Path, genome: str, indexes: list[IndexResult],
               runs: list[RunResult]) -> None:
    lines = ["\t".join(INDEX_HEADER)]
    lines += ["\t".join([genome, i.tool, *_usage_cells(i.usage), i.status]) for i in indexes]
    (outdir / "index.tsv").write_text("\n".join(lines) + "\n")
    lines = ["\t".join(RUNS_HEADER)] + ["\t".join(_run_cells(genome, r)) for r in runs]
    (outdir / "runs.tsv").write_text("\n".join(lines) + "\n")
    lines = ["\t".join(MAPQ_HEADER)]
    for r in runs:
        rs = r.read_set
        for row in r.report.rows if r.report else []:
            lines.append("\t".join(map(str, (
                genome, rs.simulator, rs.length, f"{rs.divergence:g}", r.tool, row.threshold,
                row.mapped, f"{row.fraction:.6f}", row.wrong, f"{row.error_rate:.6e}"))))
    (outdir / "mapq.tsv").write_text("\n".join(lines) + "\n")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def _accuracy_row(r: RunResult) -> list[str]:
    if r.report is None:
        return [r.tool, r.status] + [""] * 8
    rep = r.report
    q60, q10 = r.row(60), r.row(10)
    return [r.tool, *_usage_cells(r.usage), _fmt(r.reads_per_s, 0),
            _fmt(100 * rep.mapped / rep.total if rep.total else 0.0),
            _fmt(rep.percent_correct),
            f"{100 * q60.fraction:.2f} / {q60.error_rate:.1e}",
            f"{100 * q10.fraction:.2f} / {q10.error_rate:.1e}", f"{r.row(0).error_rate:.1e}"]


ACCURACY_HEADER = ["tool", "align wall s", "CPU s", "peak RSS MB", "reads/s", "mapped %",
                   "correct %", "MAPQ≥60 mapped % / error", "MAPQ≥10 mapped % / error",
                   "error (all mapped)"]


def markdown(genome: str, indexes: list[IndexResult], runs: list[RunResult],
             skipped: list[str]) -> str:
    """The results as markdown tables."""
    out = [f"## {genome}: index building", ""]
    out += _table(["tool", "wall s", "CPU s", "peak RSS MB", "status"],
                  [[i.tool, *_usage_cells(i.usage), i.status] for i in indexes])
    plain = [r for r in runs if not r.read_set.sweep]
    for label in dict.fromkeys(r.read_set.label for r in plain):
        group = [r for r in plain if r.read_set.label == label]
        rs = group[0].read_set
        out += ["", f"## {genome}: {rs.simulator} {rs.length} bp, {rs.n} reads", ""]
        out += _table(ACCURACY_HEADER, [_accuracy_row(r) for r in group])
    sweep = [r for r in runs if r.read_set.sweep]
    if sweep:
        out += ["", *_divergence_tables(genome, sweep)]
    if skipped:
        out += ["", "Skipped:", "", *(f"- {s}" for s in skipped)]
    return "\n".join(out) + "\n"


def _divergence_tables(genome: str, sweep: list[RunResult]) -> list[str]:
    divs = sorted({r.read_set.divergence for r in sweep})
    tools = list(dict.fromkeys(r.tool for r in sweep))
    rs = sweep[0].read_set
    header = ["tool", *(f"{100 * d:g}%" for d in divs)]

    def cells(tool: str, cell) -> list[str]:
        by_div = {r.read_set.divergence: r for r in sweep if r.tool == tool}
        return [tool, *(cell(by_div[d]) if d in by_div and by_div[d].report else "-"
                        for d in divs)]

    out = [f"## {genome}: divergence sweep ({rs.n} reads of {rs.length} bp per divergence, "
           "`dnaesa simulate --divergence`)", "", "% correct (of all reads):", ""]
    out += _table(header, [cells(t, lambda r: _fmt(r.report.percent_correct)) for t in tools])
    out += ["", "MAPQ≥10: mapped % / error rate:", ""]
    out += _table(header, [cells(t, lambda r: f"{100 * r.row(10).fraction:.1f} / "
                                             f"{r.row(10).error_rate:.1e}") for t in tools])
    return out


def plot_all(outdir: Path, genome: str, runs: list[RunResult]) -> list[Path]:
    """Write the PNG plots; returns their paths."""
    done = [r for r in runs if r.report and r.report.total]
    paths = []
    plain = [r for r in done if not r.read_set.sweep]
    for label in dict.fromkeys(r.read_set.label for r in plain):
        paths.append(_plot_roc(outdir / f"roc_{label}.png", genome, label,
                               [r for r in plain if r.read_set.label == label]))
    sweep = [r for r in done if r.read_set.sweep]
    if sweep:
        paths.append(_plot_divergence(outdir / "divergence.png", genome, sweep))
    if plain:
        paths.append(_plot_speed(outdir / "speed.png", genome, plain))
    return paths


def _save(fig, ax, path: Path) -> Path:
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_roc(path: Path, genome: str, label: str, group: list[RunResult]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    floor = 0.5 / group[0].report.total
    for r in group:
        rows = [x for x in r.report.rows if x.mapped]
        ax.plot([x.fraction for x in rows], [max(x.error_rate, floor) for x in rows], "o-",
                label=r.tool, markersize=3)
    ax.set_yscale("log")
    ax.set_xlabel("fraction of reads mapped with MAPQ ≥ t (t = 60, 40, 30, 20, 10, 1, 0)")
    ax.set_ylabel(f"error rate (0 drawn at {floor:.0e})")
    ax.set_title(f"{genome}, {label}")
    return _save(fig, ax, path)


def _plot_divergence(path: Path, genome: str, sweep: list[RunResult]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for tool in dict.fromkeys(r.tool for r in sweep):
        pts = sorted((r.read_set.divergence, r.report.percent_correct)
                     for r in sweep if r.tool == tool)
        ax.plot([100 * d for d, _ in pts], [c for _, c in pts], "o-", label=tool)
    ax.set_xlabel("divergence from the reference (%)")
    ax.set_ylabel("% of reads mapped correctly")
    ax.set_title(f"{genome}, {sweep[0].read_set.length} bp reads")
    return _save(fig, ax, path)


def _plot_speed(path: Path, genome: str, plain: list[RunResult]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for tool in dict.fromkeys(r.tool for r in plain):
        by_len: dict[int, list[float]] = {}
        for r in plain:
            if r.tool == tool:
                by_len.setdefault(r.read_set.length, []).append(r.reads_per_s)
        lengths = sorted(by_len)
        ax.plot(lengths, [sum(by_len[n]) / len(by_len[n]) for n in lengths], "o-", label=tool)
    ax.set_yscale("log")
    ax.set_xlabel("read length (bp)")
    ax.set_ylabel("reads/s (alignment wall time, mean over simulators)")
    ax.set_title(genome)
    return _save(fig, ax, path)
