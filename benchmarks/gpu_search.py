"""Exhaustive search of a human-sized int8 store on a GPU (issue 9): queries/s and planted recall.

    python benchmarks/gpu_search.py GENOME.fa.gz [--region 60000000-62000000] [--fragments 3100000]
        [--reads 20000] [--device cuda] [--out RESULT.json]

The store is what `dnaesa index --store int8` writes for the default encoder (4,096 int8
coordinates a fragment, 4 KB; 12.7 GB for the 3.1 M fragments of a human genome), held in
shards of 2^20 rows and searched by `VectorStore.search` (on CUDA: each shard unpacked to
float16 and multiplied by the reads, top 16 merged across shards).

Its rows:
- every fragment (1,250 bp, stride 1,000) of REGION of the first contig of GENOME (default
  human chrX 60-62 Mb, held out from training), embedded by the default encoder: the "planted"
  fragments, spread evenly over the store;
- filler up to `--fragments`: copies of those real codes with their coordinates rotated (one
  random shift per 65,536-row block, a random real row for each filler row; the sketch's
  coordinates are hashes, so a rotated copy is unrelated to every real fragment). They have real
  fragments' values and norms but point in unrelated directions, as unrelated fragments'
  sketches do. Their content does not change the cost of an exhaustive search.

Reads: `--reads` 250 bp reads simulated from REGION (1% substitutions, 0.1% indels), embedded on
the CPU by the same encoder. Printed and written to `--out`: the store's build time here, its
move to the device, queries/s at several batch sizes (after one warm-up batch), recall@16 of the
planted fragments (a read counts when a fragment wholly containing it is among its 16 hits). That
recall is an upper bound (the filler is no human decoy set; the CPU study on the 3.1 Gb stand-in
in benchmarks/RESULTS.md measures recall against one) and checks that the GPU search is sound. And
the top hit's score of 256 reads against the exact cosine of the same pair (float64, on the CPU).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnaesa.model.base import load_encoder  # noqa: E402
from dnaesa.options import IndexOptions  # noqa: E402
from dnaesa.reference import fragment_windows  # noqa: E402
from dnaesa.simulate import read_fasta, simulate_reads  # noqa: E402
from dnaesa.store.codes import quantize  # noqa: E402
from dnaesa.store.vector_store import VectorStore  # noqa: E402

BLOCK = 1 << 16


def build_codes(real: np.ndarray, n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """(shards of uint8 codes holding n rows, the rows where `real`'s rows were planted)."""
    planted = np.linspace(0, n - 1, len(real)).astype(np.int64)
    shards, shard_rows = [], 1 << 20
    for lo in range(0, n, shard_rows):
        shard = np.empty((min(shard_rows, n - lo), real.shape[1]), dtype=np.uint8)
        for b in range(0, len(shard), BLOCK):
            m = min(BLOCK, len(shard) - b)
            rolled = np.roll(real, int(rng.integers(1, real.shape[1])), axis=1)
            shard[b : b + m] = rolled[rng.integers(0, len(real), m)]
        inside = planted[(planted >= lo) & (planted < lo + len(shard))]
        shard[inside - lo] = real[np.searchsorted(planted, inside)]
        shards.append(shard)
    return shards, planted


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("genome")
    p.add_argument("--region", default="60000000-62000000")
    p.add_argument("--fragments", type=int, default=3_100_000)
    p.add_argument("--reads", type=int, default=20000)
    p.add_argument("--batches", default="1024,4096,16384")
    p.add_argument("--device", default="cuda")
    p.add_argument("--top-k", type=int, default=16)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    out: dict = {"fragments": args.fragments, "device": args.device}
    lo, hi = (int(x) for x in args.region.split("-"))
    name, seq = read_fasta(args.genome)[0]
    region = seq[lo:hi]
    encoder = load_encoder("default", device="cpu")
    opts = IndexOptions()
    windows = fragment_windows([len(region)], opts.fragment_len, opts.stride)
    t0 = time.perf_counter()
    real, clipped = quantize(encoder.encode([region[s:e] for _, s, e in windows]), "int8")
    reads = simulate_reads([(name, region)], args.reads, 250, seed=1)
    queries = encoder.encode([r.seq for r in reads])
    out["embed_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    shards, planted = build_codes(real, args.fragments, np.random.default_rng(0))
    store = VectorStore(encoder.dim, "int8", shard_size=1 << 20)
    store.shards = shards
    out["build_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    store.to(args.device)
    out["to_device_s"] = round(time.perf_counter() - t0, 2)
    print(f"{args.fragments:,} fragments x {encoder.dim} int8 ({sum(s.nbytes for s in shards) / 1e9:.1f} GB), "
          f"{len(real)} planted from {name}:{args.region} ({clipped} coordinates clipped); "
          f"build {out['build_s']} s, to {args.device} {out['to_device_s']} s", flush=True)

    def search(q):
        t0 = time.perf_counter()
        found = store.search(q, args.top_k)
        return found, time.perf_counter() - t0

    search(queries[: min(256, len(queries))])  # warm-up
    out["queries_per_s"] = {}
    for b in (int(x) for x in args.batches.split(",")):
        b = min(b, len(queries))
        _, secs = search(queries[:b])
        out["queries_per_s"][b] = round(b / secs, 1)
        print(f"batch {b}: {secs:.3f} s, {b / secs:,.0f} queries/s", flush=True)
    (scores, ids), secs = search(queries)
    out["all_reads_s"] = round(secs, 3)
    # recall@16: a hit is a planted fragment wholly containing the read
    row_of = {int(r): i for i, r in enumerate(planted)}
    hits = 0
    for read, row_ids in zip(reads, ids):
        for r in row_ids:
            w = row_of.get(int(r))
            if w is not None and windows[w, 1] <= read.start and read.end <= windows[w, 2]:
                hits += 1
                break
    out["recall_at_16"] = round(100 * hits / len(reads), 2)
    # the top hit's score against the exact cosine of the same pair
    sample = np.arange(min(256, len(reads)))
    top = ids[sample, 0]
    shard_of = top >> 20
    codes = np.stack([shards[s][r - (s << 20)] for s, r in zip(shard_of, top)]).view(np.int8).astype(np.float64)
    exact = (codes * queries[sample].astype(np.float64)).sum(1) / np.linalg.norm(codes, axis=1)
    out["max_score_error"] = float(np.abs(exact - scores[sample, 0]).max())
    print(f"all {len(queries)} reads: {secs:.2f} s ({len(queries) / secs:,.0f} queries/s); recall@16 of planted "
          f"fragments {out['recall_at_16']}%; top score vs exact cosine: max error {out['max_score_error']:.2e}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
