"""Reads that do not align end to end (issue 11), against `bwa mem`: N reads of each kind.

    python benchmarks/split_reads.py REF.fa.gz -n 200 --length 250 --threads 2 --outdir bench_out/split

Kinds (each read's truth is the reference start of its first base, forward strand):
- `foreign`: 110 bases of genome + 140 random bases (adapter read-through, contamination);
- `del300`: 125 + 125 bases across a 300 bp deletion;
- `del60`: a 60 bp deletion inside the read, at a random point between 40 and 210;
- `origin`: 130 bases from the end of the first contig + 120 from its start (a circular genome's
  origin);
- `chimera`: 125 bases + the reverse complement of 125 bases 500 kb (or a third of the contig) away.
A read is placed when its primary record starts at the truth with MAPQ >= 20, or (split kinds)
when one of its records (primary or supplementary) does, with MAPQ >= 20; SA counts the reads
whose records carry an SA tag. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
from pathlib import Path

import pysam

from dnaesa.dna import reverse_complement
from dnaesa.io.fastx import read_reference

KINDS = ("foreign", "del300", "del60", "origin", "chimera")


def make_reads(seq: str, kind: str, n: int, rng: random.Random) -> list[tuple[str, str, int]]:
    """(name, read, true start) of n reads of `kind` from `seq`."""
    out = []
    for i in range(n):
        st = rng.randrange(1000, len(seq) - 2000)
        if kind == "foreign":
            read = seq[st : st + 110] + "".join(rng.choice("ACGT") for _ in range(140))
        elif kind == "del300":
            read = seq[st : st + 125] + seq[st + 425 : st + 550]
        elif kind == "del60":
            cut = rng.randrange(40, 210)
            read = seq[st : st + cut] + seq[st + cut + 60 : st + 310]
        elif kind == "origin":
            st = len(seq) - 130
            read = seq[st:] + seq[:120]
        else:
            far = (st + min(500_000, len(seq) // 3)) % (len(seq) - 200)
            read = seq[st : st + 125] + reverse_complement(seq[far : far + 125])
        out.append((f"{kind}_{i}_{st}", read, st))
    return out


def placed(sam: Path, truth: dict[str, int], split: bool) -> tuple[int, int]:
    """(reads placed at their truth with MAPQ >= 20, reads with an SA tag)."""
    good, with_sa = set(), set()
    with pysam.AlignmentFile(str(sam)) as fh:
        for rec in fh:
            if rec.is_unmapped or rec.is_secondary or (rec.is_supplementary and not split):
                continue
            if rec.has_tag("SA"):
                with_sa.add(rec.query_name)
            if rec.mapping_quality >= 20 and rec.reference_start == truth[rec.query_name]:
                good.add(rec.query_name)
    return len(good), len(with_sa)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref")
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--outdir", default="bench_out/split")
    args = parser.parse_args()
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    seq = next(read_reference(args.ref))[1]
    if not Path(args.ref + ".bwt").exists():
        subprocess.run(["bwa", "index", args.ref], capture_output=True, check=True)
    rng = random.Random(args.seed)
    print(f"{args.n} reads of 250 bp per kind from {Path(args.ref).name}; placed = a record at the true start with "
          "MAPQ >= 20 (primary; split kinds: primary or supplementary)\n")
    print("| kind | dnaesa placed | dnaesa with SA | bwa mem placed | bwa mem with SA |")
    print("| --- | --- | --- | --- | --- |")
    for kind in KINDS:
        reads = make_reads(seq, kind, args.n, rng)
        fq = out / f"{kind}.fq"
        fq.write_text("".join(f"@{name}\n{read}\n+\n{'I' * len(read)}\n" for name, read, _ in reads))
        truth = {name: st for name, _, st in reads}
        subprocess.run([sys.executable, "-m", "dnaesa", "-q", "align", str(fq), args.ref, "-t", str(args.threads),
                        "-o", str(out / f"{kind}.dnaesa.sam")], check=True)
        with open(out / f"{kind}.bwa.sam", "w") as fh:
            subprocess.run(["bwa", "mem", "-t", str(args.threads), args.ref, str(fq)], stdout=fh,
                           stderr=subprocess.DEVNULL, check=True)
        split = kind in ("del300", "origin", "chimera")
        ours = placed(out / f"{kind}.dnaesa.sam", truth, split)
        theirs = placed(out / f"{kind}.bwa.sam", truth, split)
        print(f"| {kind} | {ours[0]} | {ours[1]} | {theirs[0]} | {theirs[1]} |", flush=True)


if __name__ == "__main__":
    main()
