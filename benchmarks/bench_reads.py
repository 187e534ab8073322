"""Simulated read sets for the benchmark, all with their truth in wgsim-style read names.

- `wgsim` (samtools): `wgsim -N n -1 L -2 L -e 0.01 -r 0.001`, read 1 kept; names give the
  fragment's ends, which `dnaesa.evaluate` handles the way `wgsim_eval.pl` does;
- `art` (art_illumina, built-in Illumina profiles: HS20 for 100 bp, HS25 for 150 bp, MSv3 for
  250 bp; none reaches 500 bp): truth read from ART's `-sam` output and written into our
  read-name convention (`{contig}_{left1}_{right1}_{nerr}:0:0_{F|R}_{index}`), `n` reads drawn
  at random from a slightly higher coverage;
- `dnaesa` (`dnaesa.simulate`): 1% substitutions, 0.1% indels, plus an optional divergence.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam

from dnaesa.simulate import read_fasta, simulate_reads, write_fastq

SIMULATORS = ("wgsim", "art", "dnaesa")
ART_PROFILES = {100: "HS20", 125: "HS25", 150: "HS25", 250: "MSv3"}
_CIGAR = re.compile(r"(\d+)([MIDNSHP=X])")


@dataclass(frozen=True)
class ReadSet:
    simulator: str
    length: int
    divergence: float
    path: Path
    n: int
    #: part of the divergence sweep (a dnaesa read set at the sweep's length)
    sweep: bool = False

    @property
    def label(self) -> str:
        return label_of(self.simulator, self.length, self.divergence, self.sweep)


def label_of(simulator: str, length: int, divergence: float, sweep: bool) -> str:
    return f"sweep_div{divergence:g}_{length}" if sweep else f"{simulator}_{length}"


class SkipReadSet(Exception):
    """This simulator cannot make this read set here (the message says why)."""


def _wgsim(ref: Path, out: Path, n: int, length: int, seed: int, log: Path) -> None:
    frag = max(500, 2 * length)
    cmd = ["wgsim", "-N", str(n), "-1", str(length), "-2", str(length), "-e", "0.01",
           "-r", "0.001", "-d", str(frag), "-S", str(seed), str(ref), str(out), "/dev/null"]
    with open(log, "ab") as err:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, check=True)


def _art_truth(line: str) -> tuple[str, tuple[str, int, int, int, bool]]:
    """(read name, (contig, left1, right1, n sequencing errors, reverse)) of one record of ART's
    true-alignment SAM, parsed as text: ART's @SQ names keep the whole FASTA header, so a SAM
    library would not resolve its RNAME."""
    qname, flag, rname, pos, _, cigar = line.split("\t", 6)[:6]
    ops = [(int(n), op) for n, op in _CIGAR.findall(cigar)]
    ref_len = sum(n for n, op in ops if op in "MD=XN")
    nerr = sum(n if op == "X" else 1 for n, op in ops if op in "XID")
    left = int(pos)
    return qname, (rname, left, left + ref_len - 1, nerr, bool(int(flag) & 16))


def _art(ref: Path, out: Path, n: int, length: int, seed: int, log: Path) -> None:
    profile = ART_PROFILES.get(length)
    if profile is None:
        raise SkipReadSet(f"ART has no built-in Illumina profile for {length} bp reads")
    genome = sum(len(s) for _, s in read_fasta(ref))
    coverage = max(1.3 * n * length / genome, 0.01)
    prefix = out.with_suffix("")
    prefix = prefix.with_name(prefix.name + ".art")
    cmd = ["art_illumina", "-ss", profile, "-i", str(ref), "-l", str(length), "-f",
           f"{coverage:.4f}", "-o", str(prefix), "-sam", "-na", "-rs", str(seed)]
    with open(log, "ab") as err:
        subprocess.run(cmd, stdout=err, stderr=err, check=True)
    with open(f"{prefix}.sam") as sam:
        truth = dict(_art_truth(line) for line in sam if not line.startswith("@"))
    with pysam.FastxFile(f"{prefix}.fq") as fq:
        records = [(rec.name, rec.sequence, rec.quality) for rec in fq]
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(records), size=min(n, len(records)), replace=False))
    with open(out, "w") as fh:
        for i, j in enumerate(keep):
            name, seq, qual = records[j]
            contig, left, right, nerr, reverse = truth[name]
            fh.write(f"@{contig}_{left}_{right}_{nerr}:0:0_{'R' if reverse else 'F'}_{i:x}\n"
                     f"{seq}\n+\n{qual}\n")
    for suffix in (".sam", ".fq"):
        Path(f"{prefix}{suffix}").unlink()


def make_read_set(simulator: str, ref: Path, outdir: Path, n: int, length: int, seed: int,
                  log: Path, divergence: float | None = None) -> ReadSet:
    """Simulate one read set into `outdir` (reused when the same one is already there); a
    `divergence` makes it a read set of the divergence sweep (dnaesa simulator only)."""
    sweep = divergence is not None
    div = divergence or 0.0
    path = outdir / "reads" / f"{label_of(simulator, length, div, sweep)}_n{n}_s{seed}.fq"
    rs = ReadSet(simulator, length, div, path, n, sweep)
    if path.exists():
        return rs
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if simulator == "wgsim":
        _wgsim(ref, tmp, n, length, seed, log)
    elif simulator == "art":
        _art(ref, tmp, n, length, seed, log)
    elif simulator == "dnaesa":
        write_fastq(simulate_reads(read_fasta(ref), n, length, seed=seed, divergence=div), tmp)
    else:
        raise ValueError(f"unknown simulator {simulator!r}")
    tmp.rename(path)
    return rs


def simulator_missing(simulator: str) -> str | None:
    """Why `simulator` cannot run here, or None."""
    exe = {"wgsim": "wgsim", "art": "art_illumina"}.get(simulator)
    if exe and shutil.which(exe) is None:
        return f"`{exe}` is not on PATH"
    return None
