"""Encoder benchmark: recall@K on held-out regions and encode throughput, model vs k-mer sketch.

    python -m dnaesa.train.benchmark --model DIR [DIR ...] --eval-ref S_AUREUS.fa HUMAN.fa:60000000-62000000 \
        [--divergences 0.01 0.10 0.15] [--read-lens 250 100] [--reads 1000] [--threads 1]

Prints one JSON line per (encoder, region, read length, divergence) with recall@1/8/16, and one per
(encoder, threads) with reads/s (250 bp) and fragments/s (1250 bp) on random sequence. Encoders
compared: the sketch baseline (`KmerSketchEncoder()` defaults; its name carries k and dim) and each
model (fp32; `--bf16` adds CPU bf16 autocast of a model's context network).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dnaesa.model.base import Encoder
from dnaesa.model.kmer import KmerSketchEncoder
from dnaesa.model.transformer import TransformerEncoder
from dnaesa.train.data import MutationProfile, Region
from dnaesa.train.evaluate import RecallEvaluator


class Bf16Encoder(Encoder):
    """A `TransformerEncoder` run under CPU bf16 autocast (the k-mer sum stays fp32)."""

    name = "transformer-bf16"
    strand_symmetric = True

    def __init__(self, inner: TransformerEncoder):
        self.inner, self.dim = inner, inner.dim

    def identity(self) -> str:
        return self.inner.identity() + ":bf16"

    def encode(self, seqs, batch_size: int = 256) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.inner.encode(seqs, batch_size)


def throughput(encoder: Encoder, length: int, n: int, batch_size: int = 256) -> float:
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]
    encoder.encode(seqs[:batch_size], batch_size)  # warm-up
    start = time.perf_counter()
    encoder.encode(seqs, batch_size)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", required=True, help="saved model directories")
    parser.add_argument("--eval-ref", nargs="+", required=True, metavar="FASTA[:START-END]")
    parser.add_argument("--divergences", nargs="+", type=float, default=[0.01, 0.10, 0.15])
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--read-lens", nargs="+", type=int, default=[250, 100])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast of each model")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timing rounds, encoders interleaved; the best of each is reported (shared CPUs)")
    parser.add_argument("--skip-recall", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sketch = KmerSketchEncoder()
    encoders: dict[str, Encoder] = {f"kmer-k{sketch.k}-d{sketch.dim}": sketch}
    for path in args.model:
        encoders[f"model:{Path(path).parent.name}/{Path(path).name}"] = TransformerEncoder.from_pretrained(path)
    if not args.skip_recall:
        for spec in args.eval_ref:
            region = Region.load(spec)
            for read_len in args.read_lens:
                for div in args.divergences:
                    ev = RecallEvaluator(region, MutationProfile.divergence(div), n_reads=args.reads, read_len=read_len)
                    for name, enc in encoders.items():
                        print(json.dumps({"encoder": name, "region": spec.split("/")[-1], "read_len": read_len,
                                          "divergence": div, **{k: round(v, 4) for k, v in ev(enc).items()}}),
                              flush=True)
    if args.bf16:
        for name in [n for n in encoders if n.startswith("model:")]:
            encoders[name + ":bf16"] = Bf16Encoder(encoders[name])
    for threads in args.threads:
        torch.set_num_threads(threads)
        best: dict[str, list[float]] = {name: [0.0, 0.0] for name in encoders}
        for _ in range(max(1, args.rounds)):
            for name, enc in encoders.items():
                best[name][0] = max(best[name][0], throughput(enc, 250, 4096))
                best[name][1] = max(best[name][1], throughput(enc, 1250, 1024))
        for name, (reads, frags) in best.items():
            print(json.dumps({"encoder": name, "threads": threads, "reads_per_s": round(reads),
                              "fragments_per_s": round(frags), "rounds": args.rounds}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
