"""Reads against a fragmented draft assembly, against `bwa mem`: unmapped reads and split records.

    python benchmarks/draft_assembly.py REF.fa.gz --contigs 903 --reads 10000 --outdir bench_out/draft

The first contig of REF is cut at random points into `--contigs` pieces (a draft assembly of it);
wgsim reads of 250 bp are drawn from the whole contig, so reads that cross a cut have no end-to-end
placement in the draft and must be split or clipped. Prints a Markdown table: unmapped reads,
supplementary records and reads with an SA tag, for each aligner.
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
from pathlib import Path

import pysam

from dnaesa.io.fastx import read_reference


def counts(sam: Path) -> tuple[int, int, int, int]:
    """(primary records, unmapped, supplementary records, reads with SA) of a SAM file."""
    primary = unmapped = supplementary = 0
    with_sa = set()
    with pysam.AlignmentFile(str(sam)) as fh:
        for rec in fh:
            if rec.is_supplementary:
                supplementary += 1
                continue
            if rec.is_secondary:
                continue
            primary += 1
            unmapped += rec.is_unmapped
            if rec.has_tag("SA"):
                with_sa.add(rec.query_name)
    return primary, unmapped, supplementary, len(with_sa)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref")
    parser.add_argument("--contigs", type=int, default=903)
    parser.add_argument("--reads", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--outdir", default="bench_out/draft")
    args = parser.parse_args()
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    name, seq = next(read_reference(args.ref))
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(seq)), args.contigs - 1))
    draft = out / "draft.fa"
    with open(draft, "w") as fh:
        for i, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, len(seq)])):
            fh.write(f">draft_{i}\n{seq[lo:hi]}\n")
    whole = out / "whole.fa"
    whole.write_text(f">{name}\n{seq}\n")
    reads = out / "reads.fq"
    subprocess.run(["wgsim", "-S", "3", "-N", str(args.reads), "-1", "250", "-2", "250", str(whole), str(reads), "/dev/null"],
                   capture_output=True, check=True)
    subprocess.run(["bwa", "index", str(draft)], capture_output=True, check=True)
    subprocess.run([sys.executable, "-m", "dnaesa", "-q", "align", str(reads), str(draft), "-t", str(args.threads),
                    "-o", str(out / "dnaesa.sam")], check=True)
    with open(out / "bwa.sam", "w") as fh:
        subprocess.run(["bwa", "mem", "-t", str(args.threads), str(draft), str(reads)], stdout=fh,
                       stderr=subprocess.DEVNULL, check=True)
    sizes = [hi - lo for lo, hi in zip([0, *cuts], [*cuts, len(seq)])]
    print(f"{args.reads:,} wgsim 250 bp reads of {name} against a draft of it in {args.contigs} contigs "
          f"(median {sorted(sizes)[len(sizes) // 2]:,} bp)\n")
    print("| aligner | reads | unmapped | supplementary records | reads with SA |")
    print("| --- | --- | --- | --- | --- |")
    for label, sam in (("dnaesa", out / "dnaesa.sam"), ("bwa mem", out / "bwa.sam")):
        primary, unmapped, supplementary, with_sa = counts(sam)
        print(f"| {label} | {primary} | {unmapped} | {supplementary} | {with_sa} |")


if __name__ == "__main__":
    main()
