"""Reads of a related strain aligned to the reference strain, with truth lifted over.

Reads are simulated from the DONOR genome (1% sequencing errors, both strands); a whole-genome
alignment of donor to reference (`minimap2 -c -x asm20`) lifts each read's start and end onto the
reference, which becomes the truth in the read's name (dnaesa's convention, so `dnaesa evaluate`
scores it). Reads whose origin does not lift (donor-only sequence, or a read that straddles two
alignment blocks) carry no truth and are left out of the accuracy figures.

    python benchmarks/related_strain.py --donor DONOR.fa --reference REF.fa --outdir bench_out/NAME \
        [--reads 10000] [--length 250] [--tools dnaesa,dnaesa-divergent,bwa,bowtie2-local,minimap2]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tools import align, build_index, make_tools  # noqa: E402

from dnaesa.evaluate import evaluate_sam  # noqa: E402
from dnaesa.simulate import read_fasta, simulate_reads  # noqa: E402

_CIGAR = re.compile(r"(\d+)([MID])")


@dataclass
class Block:
    """One donor-to-reference alignment: donor positions -> reference positions through its CIGAR."""

    qname: str
    tname: str
    reverse: bool
    qstart: int
    qend: int
    q_breaks: np.ndarray  # donor offset (along the alignment's walk) where each CIGAR op starts
    t_breaks: np.ndarray  # reference position where each op starts
    is_match: np.ndarray
    identity: float

    def lift(self, q: int) -> int | None:
        """Reference position aligned to donor position q (None: in an insertion or outside)."""
        if not self.qstart <= q < self.qend:
            return None
        walk = (self.qend - 1 - q) if self.reverse else (q - self.qstart)
        i = int(np.searchsorted(self.q_breaks, walk, side="right")) - 1
        if not self.is_match[i]:
            return None
        return int(self.t_breaks[i] + (walk - self.q_breaks[i]))


def whole_genome_blocks(donor: Path, reference: Path, paf: Path, threads: int) -> list[Block]:
    with open(paf, "w") as out:
        subprocess.run(["minimap2", "-c", "-x", "asm20", "--secondary=no", "-t", str(threads),
                        str(reference), str(donor)], stdout=out, stderr=subprocess.DEVNULL, check=True)
    blocks = []
    for line in open(paf):
        f = line.rstrip("\n").split("\t")
        cigar = next(x[5:] for x in f[12:] if x.startswith("cg:Z:"))
        q_pos, t_pos, q_breaks, t_breaks, is_match = 0, int(f[7]), [], [], []
        for n, op in _CIGAR.findall(cigar):
            q_breaks.append(q_pos)
            t_breaks.append(t_pos)
            is_match.append(op == "M")
            q_pos += int(n) if op in "MI" else 0
            t_pos += int(n) if op in "MD" else 0
        blocks.append(Block(f[0], f[5], f[4] == "-", int(f[2]), int(f[3]), np.array(q_breaks),
                            np.array(t_breaks), np.array(is_match), int(f[9]) / int(f[10])))
    return blocks


def lifted_fastq(donor: Path, blocks: list[Block], n: int, length: int, seed: int, path: Path) -> tuple[int, int]:
    """Write reads with lifted truth in their names; returns (reads, reads with truth)."""
    reads = simulate_reads(read_fasta(donor), n, length, seed=seed, sub_rate=0.01, indel_rate=0.001)
    with_truth = 0
    with open(path, "w") as out:
        for i, r in enumerate(reads):
            name = f"unlifted_{i:x}"
            for b in blocks:
                if b.qname != r.contig:
                    continue
                a, z = b.lift(r.start), b.lift(r.end - 1)
                if a is not None and z is not None and abs(abs(z - a) - (r.end - 1 - r.start)) < 50:
                    strand = "R" if r.reverse != b.reverse else "F"
                    name = f"{b.tname}_{min(a, z) + 1}_{max(a, z) + 1}_0:0:0_{strand}_{i:x}"
                    with_truth += 1
                    break
            out.write(f"@{name}\n{r.seq}\n+\n{r.qual}\n")
    return len(reads), with_truth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--donor", required=True, type=Path, help="FASTA of the strain the reads come from")
    p.add_argument("--reference", required=True, type=Path, help="FASTA the reads are aligned to")
    p.add_argument("--outdir", required=True, type=Path)
    p.add_argument("--reads", type=int, default=10000)
    p.add_argument("--length", type=int, default=250)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tools", default="dnaesa,dnaesa-divergent,bwa,bowtie2-local,minimap2")
    args = p.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    log = args.outdir / "commands.log"
    blocks = whole_genome_blocks(args.donor, args.reference, args.outdir / "donor.paf", args.threads)
    aligned = sum(b.qend - b.qstart for b in blocks)
    identity = sum(b.identity * (b.qend - b.qstart) for b in blocks) / max(aligned, 1)
    reads = args.outdir / f"related_{args.length}.fq"
    total, lifted = lifted_fastq(args.donor, blocks, args.reads, args.length, args.seed, reads)
    print(f"donor {args.donor.name} -> reference {args.reference.name}: {aligned:,} donor bases in "
          f"{len(blocks)} alignment blocks, identity {100 * identity:.2f}%; {lifted} of {total} reads lifted")
    print("\n| tool | align wall s | CPU s | peak RSS MB | mapped % | correct % | MAPQ≥20 mapped % / error |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    tools = make_tools([])
    for name in args.tools.split(","):
        tool = tools[name]
        idx = args.outdir / "index" / tool.index_key
        if not idx.exists():
            build_index(tool, args.reference.resolve(), idx, args.threads, log)
        sam = args.outdir / f"related_{args.length}.{name}.sam"
        use = align(tool, args.reference.resolve(), idx, reads, sam, args.threads, log)
        rep = evaluate_sam(str(sam))
        q20 = next(r for r in rep.rows if r.threshold == 20)
        print(f"| {name} | {use.wall_s:.2f} | {use.cpu_s:.2f} | {use.rss_mb:.0f} | {100 * rep.mapped / rep.total:.2f} | "
              f"{rep.percent_correct:.2f} | {100 * q20.mapped / rep.total:.2f} / {q20.error_rate:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
