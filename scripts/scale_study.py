"""Why InfoNCE drives the spaced-seed scale to 0 while genome-wide recall prefers ~1.5 (MODEL.md, issue 10).

    python scripts/scale_study.py --ref $G/ecoli_k12_mg1655.fa.gz:0-2000000 --out runs/scale_study.jsonl

The default model's embedding is L2norm(A + s B): A the 8-mer count sketch, B the spaced-seed
(11011011011) sketch, both 4,096-dim. A and B are computed once per sequence, so every scale s is
cheap. For each s it measures, on training sequence:
  * genome-wide recall@1/16 of 250 bp reads (1%, 10%, 15%) against every window of the region;
  * the positive cosine (read vs its containing window): mean and 5th percentile, and the best
    genome-wide negative cosine (the threshold a positive must beat);
  * InfoNCE as the trainer computes it (training-distribution batches: 128 pairs, neighbour
    negatives, 1,024 random fragments, containment mask) at several temperatures, split into its
    parts: -pos/t and the log-sum-exp; and the same loss with all windows of the region as negatives.
One JSON line per (s, measurement).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from dnaesa.model.kmer import canonical_kmers, canonical_spaced_kmers, sketch_coordinates
from dnaesa.reference import fragment_windows, reverse_complement
from dnaesa.train.data import MutationProfile, PairSampler, Region, mutate

PATTERN = "11011011011"


def channels(seqs, dim=4096):
    seqs = list(seqs)
    out = []
    for kind in ("kmer", "spaced"):
        if kind == "kmer":
            si, code = canonical_kmers(seqs, 8)
            coord, sign = sketch_coordinates(code, dim, 0)
        else:
            si, code = canonical_spaced_kmers(seqs, PATTERN)
            coord, sign = sketch_coordinates(code, dim, 1)
        m = np.zeros(len(seqs) * dim, np.float32)
        np.add.at(m, si * dim + coord, sign)
        out.append(m.reshape(len(seqs), dim))
    return out


def embed(A, B, s):
    e = A + s * B
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def logsumexp(x, axis):
    m = x.max(axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis, keepdims=True))).squeeze(axis)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ref", required=True)
    p.add_argument("--scales", nargs="+", type=float, default=[0, 0.5, 1.0, 1.5, 2.0])
    p.add_argument("--temps", nargs="+", type=float, default=[0.005, 0.01, 0.02, 0.05])
    p.add_argument("--reads", type=int, default=600)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    sink = open(args.out, "a") if args.out else None

    def emit(rec):
        print(json.dumps(rec), flush=True)
        if sink:
            sink.write(json.dumps(rec) + "\n")

    region = Region.load(args.ref)
    seq = region.seqs[0]
    win = fragment_windows([len(seq)], 1250, 1000)
    frags = [seq[s:e] for _, s, e in win]
    FA, FB = channels(frags)
    rng = np.random.default_rng(0)
    # genome-wide: reads at three divergences
    for div in (0.01, 0.10, 0.15):
        starts = rng.integers(0, len(seq) - 250, args.reads)
        reads = [mutate(seq[s:s + 250], MutationProfile.divergence(div), rng) for s in starts]
        reads = [reverse_complement(r) if rng.random() < 0.5 else r for r in reads]
        RA, RB = channels(reads)
        true = (win[None, :, 1] <= starts[:, None]) & (win[None, :, 2] >= starts[:, None] + 250)
        for s in args.scales:
            R, F = embed(RA, RB, s), embed(FA, FB, s)
            sims = R @ F.T
            pos = np.where(true, sims, -np.inf).max(1)
            neg = np.where(true, -np.inf, sims)
            rank = (neg > pos[:, None]).sum(1)
            # genome-wide InfoNCE (all windows as negatives) at each temperature
            gw = {f"t{t:g}": float(np.mean(logsumexp(np.concatenate([pos[:, None], neg], 1) / t, 1) - pos / t))
                  for t in args.temps}
            emit({"part": "genome", "div": div, "s": s, "recall@1": float(np.mean(rank < 1)),
                  "recall@16": float(np.mean(rank < 16)), "pos_mean": float(pos.mean()),
                  "pos_p5": float(np.percentile(pos, 5)), "pos_std": float(pos.std()),
                  "neg_max_mean": float(np.max(neg, 1).mean()), "neg_std": float(np.std(neg[np.isfinite(neg)])),
                  "margin_mean": float(np.mean(pos - neg.max(1))),
                  "z_margin_mean": float(np.mean((pos - neg.max(1)) / np.nanstd(np.where(true, np.nan, sims), 1))),
                  "z_pos_mean": float(np.mean((pos - np.nanmean(np.where(true, np.nan, sims), 1))
                                              / np.nanstd(np.where(true, np.nan, sims), 1))),
                  "infonce_all_windows": gw})
    # training-distribution batches, as the trainer builds them
    sampler = PairSampler([region], 1250, 100, 500, 0.01, 0.15, 0.5)
    parts = {s: {t: [] for t in args.temps} for s in args.scales}
    zparts = {s: [] for s in args.scales}
    for b in range(args.batches):
        brng = np.random.Generator(np.random.PCG64([0, b]))
        bfr, brd, mask, spans = sampler.located_batch(128, 1024, brng, True, with_spans=True)
        RA, RB = channels(brd)
        FA2, FB2 = channels(bfr)
        for s in args.scales:
            sims = embed(RA, RB, s) @ embed(FA2, FB2, s).T
            n = sims.shape[0]
            m = mask.copy()
            m[np.arange(n), np.arange(n)] = False
            pos = sims[np.arange(n), np.arange(n)]
            nb = sims[:, n:n + (sims.shape[1] - n - 1024)]
            negs = np.where(m | np.eye(n, sims.shape[1], dtype=bool), np.nan, sims)
            z = (sims - np.nanmean(negs, 1, keepdims=True)) / np.nanstd(negs, 1, keepdims=True)
            zl = np.where(m, -np.inf, z)
            zparts[s].append(float(np.mean(logsumexp(zl, 1) - z[np.arange(n), np.arange(n)])))
            for t in args.temps:
                logits = np.where(m, -np.inf, sims / t)
                lse = logsumexp(logits, 1)
                rnd = logsumexp(np.where(m[:, -1024:], -np.inf, sims[:, -1024:] / t), 1)
                parts[s][t].append((float(np.mean(lse - pos / t)), float(np.mean(pos)), float(np.mean(nb.max(1)) if nb.size else 0),
                                    float(np.mean(rnd))))
    for s in args.scales:
        for t in args.temps:
            arr = np.array(parts[s][t])
            emit({"part": "batch", "s": s, "t": t, "infonce": float(arr[:, 0].mean()), "pos_mean": float(arr[:, 1].mean()),
                  "neighbour_max_mean": float(arr[:, 2].mean()), "lse_random_over_t": float(arr[:, 3].mean())})
        emit({"part": "batch", "s": s, "zscore_loss_tau1": float(np.mean(zparts[s]))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
