"""Read simulation with known origin: `dnaesa simulate` and the truth encoded in read names.

This module owns the simulator used by the tests and benchmarks, and the read-name convention
that carries each read's true origin (parsed back by `parse_truth`, used by `dnaesa.evaluate`).

Read-name format (wgsim's convention, so samtools' `wgsim_eval.pl` parses it too)::

    {contig}_{left1}_{right1}_{nerr}:{nsub}:{nindel}_{strand}_{index}

- `contig`: first word of the FASTA header (may contain '_'); `left1`/`right1`: 1-based inclusive
  forward-strand coordinates of the leftmost and rightmost reference base the read covers;
- `nerr`: sequencing-error events (substitutions and indels) in the read; `nsub`/`nindel`:
  divergence events (substitutions, indels of 1-3 bp) between the reference and the sequenced
  genome inside the read's span;
- `strand`: F (read = reference window) or R (read = reverse complement of the window);
- `index`: the read's number, lower-case hexadecimal.

wgsim's own names (`{contig}_{frag_left1}_{frag_right1}_{e}:{s}:{i}_{e}:{s}:{i}_{index}`) give the
fragment's ends and not the read's strand; `parse_truth` returns them with `reverse=None`.

A read is drawn from a position uniform over the contigs (weighted by length) whose window holds no
N, on either strand with probability 1/2. The window is first mutated by `divergence` (90% single
substitutions, 10% indels of 1-3 bp), then by sequencing errors (`sub_rate`, `indel_rate`); the
window is taken long enough that the mutated read has exactly `length` bases, and the reported
span is the reference covered by those bases. Qualities are all 'I' (Phred 40).
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from dnaesa.dna import reverse_complement
from dnaesa.errors import OptionsError
from dnaesa.io.fastx import read_reference

BASES = "ACGT"
_OURS = re.compile(r"^(\S+)_(\d+)_(\d+)_(\d+):(\d+):(\d+)_([FR])_([0-9a-f]+)(?:/[12])?$")
_WGSIM = re.compile(r"^(\S+)_(\d+)_(\d+)_")
#: share of divergence events that are indels (the rest are substitutions)
DIVERGENCE_INDEL_SHARE = 0.1


@dataclass
class SimRead:
    """A simulated read and its origin: [start, end) 0-based on the forward strand of `contig`."""

    name: str
    seq: str
    qual: str
    contig: str
    start: int
    end: int
    reverse: bool


class Truth(NamedTuple):
    """A read's origin as its name tells it; `reverse` is None when the name does not say."""

    contig: str
    start: int
    end: int
    reverse: bool | None


class _Round(NamedTuple):
    """One round of mutation: output sequence, source index of each output base (-1: inserted),
    and the events as (kind 'S'|'I'|'D', output index where the event sits)."""

    seq: str
    origin: np.ndarray
    events: list[tuple[str, int]]


def _random_bases(rng: np.random.Generator, n: int) -> str:
    return "".join(BASES[i] for i in rng.integers(0, 4, n))


def _substitute(base: str, rng: np.random.Generator) -> str:
    """A base different from `base` (any base for a non-ACGT one)."""
    i = BASES.find(base.upper())
    if i < 0:
        return BASES[int(rng.integers(0, 4))]
    return BASES[(i + int(rng.integers(1, 4))) % 4]


def _mutate_round(seq: str, rng: np.random.Generator, sub_rate: float, indel_rate: float,
                  max_indel: int) -> _Round:
    """Substitutions and indels (1..max_indel bp, insertion or deletion 50/50) at per-base rates."""
    u = rng.random(len(seq))
    sites = np.flatnonzero(u < sub_rate + indel_rate)
    pieces: list[str] = []
    origin: list[np.ndarray] = []
    events: list[tuple[str, int]] = []
    out_len = cursor = 0
    for i in sites:
        i = int(i)
        if i < cursor:  # inside a deletion already made
            continue
        pieces.append(seq[cursor:i])
        origin.append(np.arange(cursor, i))
        out_len += i - cursor
        cursor = i
        if u[i] < sub_rate:
            events.append(("S", out_len))
            pieces.append(_substitute(seq[i], rng))
            origin.append(np.array([i]))
            out_len += 1
            cursor = i + 1
            continue
        k = int(rng.integers(1, max_indel + 1))
        if rng.random() < 0.5:
            events.append(("I", out_len))
            pieces.append(_random_bases(rng, k))
            origin.append(np.full(k, -1))
            out_len += k
        else:
            events.append(("D", out_len))
            cursor = min(i + k, len(seq))
    pieces.append(seq[cursor:])
    origin.append(np.arange(cursor, len(seq)))
    return _Round("".join(pieces), np.concatenate(origin).astype(np.int64), events)


def mutate(seq: str, rng: np.random.Generator, sub_rate: float, indel_rate: float,
           max_indel: int = 3) -> tuple[str, int, int, int]:
    """Mutate `seq`: returns (mutated sequence, n substitutions, n insertions, n deletions)."""
    r = _mutate_round(seq, rng, sub_rate, indel_rate, max_indel)
    kinds = [kind for kind, _ in r.events]
    return r.seq, kinds.count("S"), kinds.count("I"), kinds.count("D")


def _count_events(events: list[tuple[str, int]], lo: int, hi: int) -> tuple[int, int]:
    """(substitutions, indels) among events inside output bases lo..hi (a deletion counts when it
    lies between two of them)."""
    subs = sum(1 for kind, at in events if kind == "S" and lo <= at <= hi)
    indels = sum(1 for kind, at in events
                 if (kind == "I" and lo <= at <= hi) or (kind == "D" and lo < at <= hi))
    return subs, indels


def _load_contigs(contigs: list[tuple[str, str]] | dict[str, str]) -> list[tuple[str, str]]:
    items = contigs.items() if isinstance(contigs, dict) else contigs
    return [(name, seq.upper()) for name, seq in items]


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """(name, sequence) of each record of a FASTA file, plain or gzipped, validated."""
    return list(read_reference(str(path)))


class _Sampler:
    """Draws reference windows uniformly over the contigs, rejecting those that hold an N."""

    def __init__(self, contigs: list[tuple[str, str]], rng: np.random.Generator):
        self.contigs = contigs
        self.rng = rng
        self.cum = np.cumsum([len(seq) for _, seq in contigs])

    def draw(self, width: int) -> tuple[int, int]:
        """(contig index, start) of a window of `width` bases holding no N."""
        if not any(len(seq) >= width for _, seq in self.contigs):
            raise OptionsError(f"no contig is long enough for a {width} bp window")
        for _ in range(100_000):
            pos = int(self.rng.integers(0, int(self.cum[-1])))
            ci = int(np.searchsorted(self.cum, pos, side="right"))
            start = pos - (int(self.cum[ci - 1]) if ci else 0)
            seq = self.contigs[ci][1]
            if start + width <= len(seq) and "N" not in seq[start:start + width]:
                return ci, start
        raise OptionsError("could not find a reference window without N")


def _one_read(sampler: _Sampler, index: int, length: int, rates: tuple[float, float, float],
              max_indel: int) -> SimRead:
    """Draw and mutate one read; `rates` = (sub_rate, indel_rate, divergence)."""
    sub_rate, indel_rate, divergence = rates
    rng = sampler.rng
    margin = 8 + int(4 * length * (indel_rate + divergence) * max_indel)
    while True:
        ci, start = sampler.draw(length + margin)
        name, contig = sampler.contigs[ci]
        window = contig[start:start + length + margin]
        div = _mutate_round(window, rng, divergence * (1 - DIVERGENCE_INDEL_SHARE),
                            divergence * DIVERGENCE_INDEL_SHARE, max_indel)
        err = _mutate_round(div.seq, rng, sub_rate, indel_rate, max_indel)
        if len(err.seq) >= length:
            break
        margin *= 2
    kept = err.origin[:length]
    kept_div = kept[kept >= 0]
    ref = div.origin[kept_div]
    ref = ref[ref >= 0]
    n_err = sum(_count_events(err.events, 0, length - 1))
    n_sub, n_indel = _count_events(div.events, int(kept_div.min()), int(kept_div.max()))
    left, right = start + int(ref.min()), start + int(ref.max()) + 1
    reverse = bool(rng.random() < 0.5)
    seq = reverse_complement(err.seq[:length]) if reverse else err.seq[:length]
    read_name = (f"{name}_{left + 1}_{right}_{n_err}:{n_sub}:{n_indel}_"
                 f"{'R' if reverse else 'F'}_{index:x}")
    return SimRead(read_name, seq, "I" * length, name, left, right, reverse)


def simulate_reads(contigs: list[tuple[str, str]] | dict[str, str], n: int, length: int,
                   seed: int = 0, sub_rate: float = 0.01, indel_rate: float = 0.001,
                   divergence: float = 0.0, max_indel: int = 3) -> list[SimRead]:
    """`n` reads of `length` bases from `contigs` (see the module docstring for the model)."""
    if length < 1 or n < 0:
        raise OptionsError("length must be >= 1 and n >= 0")
    sampler = _Sampler(_load_contigs(contigs), np.random.default_rng(seed))
    rates = (sub_rate, indel_rate, divergence)
    return [_one_read(sampler, i, length, rates, max_indel) for i in range(n)]


def simulate_pairs(contigs: list[tuple[str, str]] | dict[str, str], n: int, length: int, insert_mean: int = 400,
                   insert_sd: int = 40, seed: int = 0, sub_rate: float = 0.01) -> list[tuple[SimRead, SimRead]]:
    """`n` FR pairs of `length`-base mates from fragments of Normal(insert_mean, insert_sd) bases
    (at least `length`), with substitution errors at `sub_rate`. Named as wgsim names pairs
    (`{contig}_{left1}_{right1}_{e}:0:0_{e}:0:0_{index}`, the fragment's 1-based ends), with `/1` and
    `/2` suffixes, so `parse_truth` and `dnaesa evaluate` read them: the forward mate starts at the
    fragment's start, the reverse one ends at its end. Mate 1 is the forward one half of the time."""
    if length < 1 or n < 0 or insert_mean < length:
        raise OptionsError("length must be >= 1, n >= 0 and insert_mean >= length")
    sampler = _Sampler(_load_contigs(contigs), np.random.default_rng(seed))
    rng = sampler.rng
    pairs = []
    for i in range(n):
        size = max(length, int(round(rng.normal(insert_mean, insert_sd))))
        ci, start = sampler.draw(size)
        name, contig = sampler.contigs[ci]
        fragment = contig[start : start + size]
        fwd = _mutate_round(fragment[:length], rng, sub_rate, 0.0, 1)
        rev = _mutate_round(fragment[size - length :], rng, sub_rate, 0.0, 1)
        errors = (len(fwd.events), len(rev.events))
        base = f"{name}_{start + 1}_{start + size}_{errors[0]}:0:0_{errors[1]}:0:0_{i:x}"
        forward = SimRead("", fwd.seq, "I" * length, name, start, start + length, False)
        reverse = SimRead("", reverse_complement(rev.seq), "I" * length, name, start + size - length, start + size, True)
        one, two = (forward, reverse) if rng.random() < 0.5 else (reverse, forward)
        pairs.append((dataclasses.replace(one, name=base + "/1"), dataclasses.replace(two, name=base + "/2")))
    return pairs


def parse_truth(name: str) -> Truth | None:
    """The origin encoded in a read name of ours or of wgsim; None for any other name."""
    m = _OURS.match(name)
    if m:
        return Truth(m.group(1), int(m.group(2)) - 1, int(m.group(3)), m.group(7) == "R")
    m = _WGSIM.match(name)
    if m:
        return Truth(m.group(1), int(m.group(2)) - 1, int(m.group(3)), None)
    return None


def write_fastq(reads: Iterable[SimRead], path: str | Path) -> None:
    with open(path, "w") as fh:
        for r in reads:
            fh.write(f"@{r.name}\n{r.seq}\n+\n{r.qual}\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", help="FASTA (plain or gzipped) to draw reads from")
    parser.add_argument("-n", "--num-reads", type=int, required=True, help="number of reads")
    parser.add_argument("-l", "--length", type=int, required=True, help="read length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sub-rate", type=float, default=0.01,
                        help="sequencing substitution rate per base (default 0.01)")
    parser.add_argument("--indel-rate", type=float, default=0.001,
                        help="sequencing indel rate per base (default 0.001)")
    parser.add_argument("--divergence", type=float, default=0.0,
                        help="divergence of the sequenced genome from the reference, per base: "
                             "90%% substitutions, 10%% indels of 1-3 bp (default 0)")
    parser.add_argument("-o", "--output", required=True, help="FASTQ to write")


def run(args: argparse.Namespace) -> int:
    reads = simulate_reads(read_fasta(args.reference), args.num_reads, args.length,
                           seed=args.seed, sub_rate=args.sub_rate, indel_rate=args.indel_rate,
                           divergence=args.divergence)
    write_fastq(reads, args.output)
    return 0
