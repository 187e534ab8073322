"""Build a stand-in for a human-sized reference: real human sequence verbatim plus decoys.

No whole human genome is reachable here, so the genome-scale benchmark measures on this stand-in
(issue 9). It holds:

- the real sequence (GRCh37 chrX 0-70 Mb from ../shared/genomes) verbatim, as two contigs split
  at `--split` (60 Mb): `REAL_0-60M` and `REAL_60-70M`. Reads are simulated from the second one
  only (written alone to `OUT.reads-region.fa`), so their truth is in the stand-in's coordinates
  and they must be found among all the other fragments;
- decoys up to `--size` bases, in contigs of `--contig-len` (10 Mb):
  - 90%: an order-`--order` (10) Markov chain fitted on the real sequence, so that every k-mer of
    up to order + 1 bases (the default encoder's 8-mers and spaced 8-of-11 seeds included) occurs
    with the real frequencies: GC content, CpG depletion, poly-A and simple-repeat richness as in
    human DNA. The chain runs as many independent chains of `--chain-len` (100 kb) at once;
  - 10%: mutated copies of `--contig-len` windows of the real sequence (read region included),
    at divergences 5, 10, 15, 20, 25 and 30% (90% substitutions, 10% indels of 1-3 bp): paralogs
    of known divergence, as segmental duplications and old repeat copies are.

What it tells: the cost of indexing and searching 3.1 M fragments (time, bytes, memory, reads/s)
is that of a human genome, exactly; and whether a read's true fragment still tops fragments whose
k-mer statistics are human, and diverged copies of its own locus. What it does not: a real genome's
interspersed repeats (Alu, L1) are copies at 5-30% divergence spread genome-wide, a million Alus
alone; the Markov chain reproduces their common k-mers but not their long shared stretches, and
the mutated copies cover only 10% of the decoys. So recall and accuracy here are an upper bound on
those against a real human genome, by an unknown margin; the cost figures are not.

    python benchmarks/make_scale_reference.py --real ../shared/genomes/human_grch37_chrX_0-70Mb.fa.gz \\
        --size 3.1e9 --out /work/scale/scale_3g.fa
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnaesa.io.fastx import read_reference  # noqa: E402

DIVERGENCES = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30)
COPY_FRACTION = 0.10
LINE = 80
_CODES = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODES[_b] = _CODES[_b + 32] = _i
_LETTERS = np.frombuffer(b"ACGTN", dtype=np.uint8)


def load_real(path: str, window: tuple[int, int] | None) -> np.ndarray:
    """The first contig of `path` (a window of it) as base codes 0-3, 4 for N."""
    _, seq = next(iter(read_reference(path)))
    if window:
        seq = seq[window[0] : window[1]]
    return _CODES[np.frombuffer(seq.encode(), dtype=np.uint8)]


def markov_table(real: np.ndarray, order: int) -> np.ndarray:
    """(4**order, 3) float32 cumulative next-base probabilities of every context of `order` bases
    (uniform for contexts never seen)."""
    n = real.size - order
    ok = np.ones(n, dtype=bool)
    ctx = np.zeros(n, dtype=np.int64)
    for j in range(order + 1):
        b = real[j : j + n]
        ok &= b < 4
        ctx = ctx * 4 + np.minimum(b, 3)
    counts = np.bincount(ctx[ok], minlength=4 ** (order + 1)).reshape(-1, 4).astype(np.float64)
    counts[counts.sum(axis=1) == 0] = 1.0
    return (np.cumsum(counts, axis=1)[:, :3] / counts.sum(axis=1, keepdims=True)).astype(np.float32)


def markov_chains(table: np.ndarray, order: int, chains: int, length: int, starts: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """`chains` independent chains of `length` bases, all advanced together: (chains, length) codes."""
    out = np.empty((length, chains), dtype=np.uint8)
    ctx = starts.astype(np.int64)
    mask = 4**order - 1
    for step in range(length):
        u = rng.random(chains, dtype=np.float32)
        t = table[ctx]
        b = (u > t[:, 0]).astype(np.int64) + (u > t[:, 1]) + (u > t[:, 2])
        out[step] = b
        ctx = ((ctx << 2) | b) & mask
    return out.T


def mutate(seq: np.ndarray, divergence: float, rng: np.random.Generator) -> np.ndarray:
    """Substitutions at 0.9 x divergence, indels of 1-3 bp at 0.1 x (half insertions); N stays N."""
    seq = seq.copy()
    sub = (rng.random(seq.size) < 0.9 * divergence) & (seq < 4)
    seq[sub] = (seq[sub] + rng.integers(1, 4, int(sub.sum()))) % 4
    n_indel = rng.binomial(seq.size, 0.1 * divergence)
    pos = np.sort(rng.integers(0, seq.size, n_indel))
    lengths = rng.integers(1, 4, n_indel)
    insert = rng.random(n_indel) < 0.5
    deleted = np.concatenate([np.arange(p, min(p + n, seq.size)) for p, n in zip(pos[~insert], lengths[~insert])]
                             or [np.zeros(0, np.int64)])
    ins_pos = np.repeat(pos[insert], lengths[insert])
    seq = np.insert(seq, ins_pos, rng.integers(0, 4, ins_pos.size).astype(np.uint8))
    shift = np.searchsorted(ins_pos, deleted, side="right")  # deletions move right by insertions before them
    return np.delete(seq, deleted + shift)


def write_contig(fh, name: str, codes: np.ndarray) -> None:
    fh.write(f">{name}\n".encode())
    text = _LETTERS[codes]
    full = text.size // LINE * LINE
    if full:
        lines = np.empty((full // LINE, LINE + 1), dtype=np.uint8)
        lines[:, :LINE] = text[:full].reshape(-1, LINE)
        lines[:, LINE] = ord("\n")
        fh.write(lines.tobytes())
    if text.size > full:
        fh.write(text[full:].tobytes() + b"\n")


def build(real: np.ndarray, size: int, out: Path, split: int, order: int = 10, contig_len: int = 10_000_000,
          chain_len: int = 100_000, seed: int = 0, offset: int = 0, log=print) -> dict:
    """Write the stand-in to `out` and the read region alone to `out.reads-region.fa`; returns its
    composition. `offset`: where `real` starts in its chromosome (for the real contigs' names)."""
    rng = np.random.default_rng(seed)
    decoy = max(size - real.size, 0)
    n_copies = int(round(decoy * COPY_FRACTION / contig_len)) if decoy >= 10 * contig_len else 0
    copy_len = min(contig_len, real.size)
    markov_len = decoy - n_copies * copy_len
    contig_len = min(contig_len, max(markov_len, 1))
    chain_len = min(chain_len, contig_len)
    contigs = []
    t0 = time.time()
    with open(out, "wb") as fh, open(str(out) + ".reads-region.fa", "wb") as region:
        names = [f"REAL_{lo / 1e6:g}-{hi / 1e6:g}M" for lo, hi in ((offset, offset + split),
                                                                   (offset + split, offset + real.size))]
        for name, part in zip(names, (real[:split], real[split:])):
            write_contig(fh, name, part)
            contigs.append([name, int(part.size), "real"])
        write_contig(region, names[1], real[split:])
        for c in range(n_copies):
            div = DIVERGENCES[c % len(DIVERGENCES)]
            start = int(rng.integers(0, real.size - copy_len + 1))
            seq = mutate(real[start : start + copy_len], div, rng)
            name = f"COPY{c:03d}_div{int(div * 100):02d}_{start}"
            write_contig(fh, name, seq)
            contigs.append([name, int(seq.size), f"mutated copy of real {start}-{start + copy_len} at {div:.0%}"])
        if markov_len > 0:
            table = markov_table(real, order)
            log(f"markov table of order {order}: {time.time() - t0:.0f} s")
            real_ok = np.flatnonzero(real[: real.size - order] < 4)
            per_contig = -(-contig_len // chain_len)
            n_contigs = -(-markov_len // contig_len)
            batch = max(1, min(n_contigs, 50_000 // per_contig))  # chains run together: contigs x chains each
            for first in range(0, n_contigs, batch):
                count = min(batch, n_contigs - first)
                picks = rng.choice(real_ok, count * per_contig)
                starts = np.zeros(picks.size, dtype=np.int64)
                for j in range(order):
                    starts = starts * 4 + np.minimum(real[picks + j], 3)
                chains = markov_chains(table, order, count * per_contig, chain_len, starts, rng)
                for c in range(count):
                    n = min(contig_len, markov_len - (first + c) * contig_len)
                    seq = chains[c * per_contig : (c + 1) * per_contig].reshape(-1)[:n]
                    name = f"MARKOV{first + c:04d}"
                    write_contig(fh, name, seq)
                    contigs.append([name, int(seq.size), f"order-{order} Markov chain of the real sequence"])
                log(f"markov contigs {first + count}/{n_contigs}: {time.time() - t0:.0f} s")
    info = {"total": int(sum(c[1] for c in contigs)), "real": int(real.size), "copies": n_copies,
            "markov": int(max(markov_len, 0)), "order": order, "seed": seed, "contigs": contigs}
    Path(str(out) + ".json").write_text(json.dumps(info, indent=1))
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--real", required=True, help="FASTA whose first contig is the real sequence (human chrX 0-70 Mb)")
    p.add_argument("--window", help="START:END of the real contig to use [all]")
    p.add_argument("--split", type=int, default=60_000_000,
                   help="the real sequence is two contigs, split here; reads come from the second [60000000]")
    p.add_argument("--size", type=float, required=True, help="total bases, real + decoys (e.g. 3.1e9)")
    p.add_argument("--order", type=int, default=10, help="Markov order of the decoys [10]")
    p.add_argument("--contig-len", type=int, default=10_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path, help="FASTA to write (plain)")
    args = p.parse_args()
    window = tuple(int(x) for x in args.window.split(":")) if args.window else None
    real = load_real(args.real, window)
    info = build(real, int(args.size), args.out, min(args.split, real.size), args.order, args.contig_len, seed=args.seed,
                 offset=window[0] if window else 0)
    print(f"{args.out}: {info['total']:,} bp ({info['real']:,} real, {info['copies']} mutated copies, "
          f"{info['markov']:,} Markov) in {len(info['contigs'])} contigs")


if __name__ == "__main__":
    main()
