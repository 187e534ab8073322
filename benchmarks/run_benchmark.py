"""Benchmark dnaesa against bwa mem, bowtie2 (end-to-end and --local) and minimap2 -ax sr.

For one reference: simulate read sets (wgsim, art_illumina, `dnaesa simulate`) at each read
length, plus a divergence sweep (`dnaesa simulate --divergence`), build each aligner's index and
align every read set with the same thread count, timing index building and alignment separately
(wall, CPU, peak RSS), and score each SAM with `dnaesa.evaluate`. Tools or simulators that are not
installed (or `dnaesa align` while it does not exist) are skipped with a message.

    python benchmarks/run_benchmark.py --reference REF.fa[.gz] --outdir bench_out/NAME
    python benchmarks/run_benchmark.py --quick --outdir bench_out/quick   # lambda, < 5 min

Exit status 1 when a tool that ran failed. Outputs: see bench_report.
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO),
                                                         os.environ.get("PYTHONPATH")]))

from bench_reads import (
    SIMULATORS,
    ReadSet,
    SkipReadSet,
    make_read_set,
    simulator_missing,  # noqa: E402
)
from bench_report import IndexResult, RunResult, markdown, plot_all, write_tsvs  # noqa: E402
from bench_tools import (
    ALL_TOOLS,
    QUICK_TOOLS,
    Tool,
    align,
    build_index,
    make_tools,
    missing_reason,  # noqa: E402
)

from dnaesa.evaluate import evaluate_sam  # noqa: E402

FULL = dict(reference=None, reads=10_000, lengths="100,150,250,500",
            simulators=",".join(SIMULATORS), tools=",".join(ALL_TOOLS),
            divergence="0,0.02,0.05,0.1,0.15,0.2", divergence_reads=None, divergence_length=250)
QUICK = dict(reference=str(REPO / "tests" / "data" / "lambda_phage.fa.gz"), reads=2000,
             lengths="100,250", simulators=",".join(SIMULATORS), tools=",".join(QUICK_TOOLS),
             divergence="0,0.05,0.1", divergence_reads=1000, divergence_length=150)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", help="FASTA (plain or gzipped); --quick: tests' lambda phage")
    p.add_argument("--name", help="genome name in the tables (default: the file's stem)")
    p.add_argument("--outdir", required=True, type=Path)
    p.add_argument("--quick", action="store_true",
                   help="small defaults (lambda, 2000 reads, 100/250 bp, fast tools)")
    p.add_argument("--reads", type=int, help="reads per read set (default 10000)")
    p.add_argument("--lengths", help="read lengths, comma-separated (default 100,150,250,500)")
    p.add_argument("--simulators", help=f"of {','.join(SIMULATORS)} (default all)")
    p.add_argument("--tools", help=f"of {','.join(ALL_TOOLS)} (default all)")
    p.add_argument("--divergence", help="divergence sweep, comma-separated fractions "
                                        "(default 0,0.02,0.05,0.1,0.15,0.2; '' for none)")
    p.add_argument("--divergence-reads", type=int, help="reads per sweep step (default --reads)")
    p.add_argument("--divergence-length", type=int, help="sweep read length (default 250)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tolerance", type=int, default=5)
    p.add_argument("--dnaesa-args", default="",
                   help="extra arguments for both `dnaesa index` and `dnaesa align`, "
                        "e.g. '--max-read-len 500'")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.reference is None:
        p.error("--reference is required without --quick")
    args.divergence_reads = args.divergence_reads or args.reads
    return args


def _csv(text: str) -> list[str]:
    return [x for x in text.split(",") if x.strip()]


def genome_name(reference: str) -> str:
    name = Path(reference).name
    for suffix in (".gz", ".fa", ".fasta", ".fna"):
        name = name.removesuffix(suffix)
    return name


def plain_reference(reference: str, outdir: Path, name: str) -> Path:
    """The reference as an uncompressed FASTA under outdir/ref (every tool reads that)."""
    dst = outdir / "ref" / f"{name}.fa"
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        opener = gzip.open if reference.endswith(".gz") else open
        with opener(reference, "rb") as src, open(dst.with_suffix(".tmp"), "wb") as out:
            shutil.copyfileobj(src, out)
        dst.with_suffix(".tmp").rename(dst)
    return dst


def make_read_sets(args, ref: Path, log: Path, skipped: list[str]) -> list[ReadSet]:
    sets = []
    for sim in _csv(args.simulators):
        why = simulator_missing(sim)
        if why:
            skipped.append(f"simulator {sim}: {why}")
            continue
        for length in map(int, _csv(args.lengths)):
            try:
                sets.append(make_read_set(sim, ref, args.outdir, args.reads, length, args.seed,
                                          log))
            except SkipReadSet as e:
                skipped.append(f"{sim} {length} bp: {e}")
    for div in map(float, _csv(args.divergence)):
        sets.append(make_read_set("dnaesa", ref, args.outdir, args.divergence_reads,
                                  args.divergence_length, args.seed, log, divergence=div))
    return sets


def available_tools(args, skipped: list[str]) -> list[Tool]:
    known = make_tools(args.dnaesa_args.split())
    tools = []
    for name in _csv(args.tools):
        if name not in known:
            raise SystemExit(f"unknown tool {name!r}; known: {', '.join(known)}")
        why = missing_reason(known[name])
        if why:
            skipped.append(f"{name}: {why}")
            print(f"[bench] skipping {name}: {why}", file=sys.stderr)
        else:
            tools.append(known[name])
    return tools


def build_indexes(args, tools: list[Tool], ref: Path, log: Path) -> tuple[list[IndexResult], dict[str, Path]]:
    results, dirs = [], {}
    built: dict[str, str] = {}
    for tool in tools:
        idx = args.outdir / "index" / tool.index_key
        if tool.index_key in built:
            results.append(IndexResult(tool.name, None, f"uses {built[tool.index_key]}'s index"))
            dirs[tool.name] = idx
            continue
        built[tool.index_key] = tool.name
        print(f"[bench] index: {tool.name}", file=sys.stderr)
        usage = build_index(tool, ref, idx, args.threads, log)
        status = "ok" if usage.rc == 0 else f"failed (exit {usage.rc}, see {log.name})"
        results.append(IndexResult(tool.name, usage, status))
        if usage.rc == 0:
            dirs[tool.name] = idx
        else:
            built.pop(tool.index_key)
    return results, dirs


def run_one(args, tool: Tool, ref: Path, idx: Path, rs: ReadSet, log: Path) -> RunResult:
    sam = args.outdir / "sam" / f"{rs.label}.{tool.name}.sam"
    sam.parent.mkdir(parents=True, exist_ok=True)
    print(f"[bench] align: {tool.name} {rs.label}", file=sys.stderr)
    usage = align(tool, ref, idx, rs.path, sam, args.threads, log)
    if usage.rc != 0:
        return RunResult(rs, tool.name, usage, None, f"failed (exit {usage.rc}, see {log.name})")
    return RunResult(rs, tool.name, usage, evaluate_sam(sam, args.tolerance))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = args.name or genome_name(args.reference)
    args.outdir.mkdir(parents=True, exist_ok=True)
    log = args.outdir / "commands.log"
    skipped: list[str] = []
    ref = plain_reference(args.reference, args.outdir, name)
    tools = available_tools(args, skipped)
    read_sets = make_read_sets(args, ref, log, skipped)
    if not read_sets:
        raise SystemExit("no read set could be simulated")
    indexes, idx_dirs = build_indexes(args, tools, ref, log)
    runs = [run_one(args, tool, ref, idx_dirs[tool.name], rs, log)
            for rs in read_sets for tool in tools if tool.name in idx_dirs]
    write_tsvs(args.outdir, name, indexes, runs)
    (args.outdir / "results.md").write_text(markdown(name, indexes, runs, skipped))
    plot_all(args.outdir, name, runs)
    print((args.outdir / "results.md").read_text())
    failed = [i for i in indexes if i.status != "ok"] + [r for r in runs if r.status != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
