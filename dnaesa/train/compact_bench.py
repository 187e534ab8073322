"""Recall of compact encoders at D dimensions against the training-free baselines of the same D.

    python -m dnaesa.train.compact_bench --dims 256 --model runs/compact/best \\
        --eval-ref $G/saureus_col.fa.gz $G/human_grch37_chrX_0-70Mb.fa.gz:60000000-62000000 \\
        --decoys $G/human_grch37_chrX_0-70Mb.fa.gz:62000000-70000000 \\
        --pca-ref $G/ecoli_k12_mg1655.fa.gz $G/human_grch37_chrX_0-70Mb.fa.gz:30000000-32000000

Encoders: the 4,096-dim 8-mer count sketch (reference), and for each D a random projection of it
(`rp`), its PCA fitted on --pca-ref windows (`pca`), the D-bucket count sketch of 8-mers and of
k-mers with --bucket-ks (`sketchK-dD`), and each --model directory (`load_encoder`). Recall@1/8/16
genome-wide on both strands (`RecallEvaluator`), the region's windows plus --decoys windows (never
true) as the search space. One JSON line per (encoder, region, read length, divergence); with
--throughput, reads/s (250 bp) and fragments/s (1,250 bp) of each encoder, best of --rounds.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dnaesa.model.base import Encoder, load_encoder
from dnaesa.model.compact import ProjectedSketchEncoder
from dnaesa.model.kmer import KmerSketchEncoder
from dnaesa.reference import fragment_windows
from dnaesa.train.data import MutationProfile, Region
from dnaesa.train.evaluate import RecallEvaluator


def region_windows(specs, fragment_len: int = 1250, stride: int = 1000, limit: int = 0, seed: int = 0) -> list[str]:
    frags = []
    for spec in specs:
        region = Region.load(spec)
        windows = fragment_windows([len(s) for s in region.seqs], fragment_len, stride)
        frags += [f for f in (region.seqs[c][s:e] for c, s, e in windows) if f.count("N") < 0.05 * len(f)]
    if limit and len(frags) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(len(frags), limit, replace=False))
        frags = [frags[i] for i in idx]
    return frags


def throughput(encoder: Encoder, length: int, n: int) -> float:
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]
    encoder.encode(seqs[:256])
    start = time.perf_counter()
    encoder.encode(seqs)
    return n / (time.perf_counter() - start)


def two_tier(ev: RecallEvaluator, coarse: Encoder, fine: Encoder, candidates: int, cache: dict) -> dict[str, float]:
    """Recall@K when `coarse` (compact) picks `candidates` windows per read and `fine` (the exact
    4,096-dim sketch) re-ranks them; both encoders strand-symmetric (one search per read)."""
    import faiss

    vecs = {}
    for enc in (coarse, fine):
        key = (enc.identity(), ev.region.spec, ev.fragment_len, ev.stride, len(ev.decoys))
        if key not in cache:
            cache[key] = enc.encode(list(ev.fragments) + list(ev.decoys), batch_size=1024)
        vecs[enc] = cache[key]
    index = faiss.IndexFlatIP(coarse.dim)
    index.add(np.ascontiguousarray(vecs[coarse]))
    _, ids = index.search(np.ascontiguousarray(coarse.encode(ev.reads, batch_size=1024)), candidates)
    fine_reads = fine.encode(ev.reads, batch_size=1024)
    hits = {k: 0 for k in ev.ks}
    for i in range(len(ev.reads)):
        cand = ids[i][ids[i] >= 0]
        order = cand[np.argsort(-(vecs[fine][cand] @ fine_reads[i]), kind="stable")]
        ranked = order.copy()
        ranked[ranked >= len(ev.fragments)] = -1
        true = ev._is_true(i, ranked) & (ranked >= 0)
        first = int(np.argmax(true)) if true.any() else None
        for k in ev.ks:
            hits[k] += first is not None and first < k
    return {f"recall@{k}": hits[k] / len(ev.reads) for k in ev.ks}


def build_encoders(args) -> dict[str, Encoder]:
    encoders: dict[str, Encoder] = {}
    if not args.no_reference:
        encoders["sketch-k8-d4096"] = KmerSketchEncoder()
    pca_frags = region_windows(args.pca_ref, limit=args.pca_windows) if args.pca_ref else []
    for d in args.dims:
        if "rp" in args.baselines:
            encoders[f"rp-d{d}"] = ProjectedSketchEncoder.random(d)
        if "pca" in args.baselines and pca_frags:
            encoders[f"pca-d{d}"] = ProjectedSketchEncoder.pca(pca_frags, d)
        if "bucket" in args.baselines:
            for k in args.bucket_ks:
                encoders[f"sketch-k{k}-d{d}"] = KmerSketchEncoder(k=k, dim=d)
    for path in args.model:
        encoders[f"model:{Path(path).parent.name}/{Path(path).name}"] = load_encoder(path, device="cpu")
    return encoders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", nargs="*", type=int, default=[256])
    parser.add_argument("--model", nargs="*", default=[])
    parser.add_argument("--baselines", nargs="*", default=["rp", "pca", "bucket"])
    parser.add_argument("--bucket-ks", nargs="*", type=int, default=[8])
    parser.add_argument("--no-reference", action="store_true", help="leave out the 4,096-dim sketch")
    parser.add_argument("--eval-ref", nargs="+", required=True, metavar="FASTA[:START-END]")
    parser.add_argument("--decoys", nargs="*", default=[], metavar="FASTA[:START-END]")
    parser.add_argument("--decoy-windows", type=int, default=0, help="at most this many decoy windows (0 = all)")
    parser.add_argument("--pca-ref", nargs="*", default=[], metavar="FASTA[:START-END]")
    parser.add_argument("--pca-windows", type=int, default=8000)
    parser.add_argument("--divergences", nargs="+", type=float, default=[0.01, 0.10, 0.15])
    parser.add_argument("--read-lens", nargs="+", type=int, default=[150, 250])
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--two-tier", type=int, default=0, metavar="C",
                        help="also score each --model as the coarse tier: its top C windows re-ranked by the 4,096-dim sketch")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    encoders = build_encoders(args)
    sink = open(args.out, "a") if args.out else None

    def emit(record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        if sink:
            sink.write(line + "\n")
            sink.flush()

    if not args.skip_recall:
        decoys = region_windows(args.decoys, limit=args.decoy_windows) if args.decoys else []
        for spec in args.eval_ref:
            region = Region.load(spec)
            cache: dict = {}
            for read_len in args.read_lens:
                for div in args.divergences:
                    ev = RecallEvaluator(region, MutationProfile.divergence(div), n_reads=args.reads,
                                         read_len=read_len, seed=args.seed, decoys=decoys)
                    for name, enc in encoders.items():
                        t0 = time.time()
                        m = ev(enc, batch_size=1024, cache=cache)
                        emit({"encoder": name, "dim": enc.dim, "region": spec.split("/")[-1], "read_len": read_len,
                              "divergence": div, "decoys": len(decoys), "fragments": len(ev.fragments),
                              **{k: round(v, 4) for k, v in m.items()}, "s": round(time.time() - t0, 1)})
                    if args.two_tier and "sketch-k8-d4096" in encoders:
                        for name in [n for n in encoders if n.startswith("model:")]:
                            t0 = time.time()
                            m = two_tier(ev, encoders[name], encoders["sketch-k8-d4096"], args.two_tier, cache)
                            emit({"encoder": f"{name}+rerank{args.two_tier}", "dim": encoders[name].dim,
                                  "region": spec.split("/")[-1], "read_len": read_len, "divergence": div,
                                  "decoys": len(decoys), "fragments": len(ev.fragments),
                                  **{k: round(v, 4) for k, v in m.items()}, "s": round(time.time() - t0, 1)})
    if args.throughput:
        best = {name: [0.0, 0.0] for name in encoders}
        for _ in range(max(1, args.rounds)):
            for name, enc in encoders.items():
                best[name][0] = max(best[name][0], throughput(enc, 250, 8192))
                best[name][1] = max(best[name][1], throughput(enc, 1250, 2048))
        for name, (r, f) in best.items():
            emit({"encoder": name, "reads_per_s": round(r), "fragments_per_s": round(f), "rounds": args.rounds})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
