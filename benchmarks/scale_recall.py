"""Recall@K and search speed of a built index on simulated reads (truth in their names).

Loads the index as `dnaesa align` does (any store kind), embeds the reads with the index's encoder,
searches them in batches and counts the reads whose top K hold a fragment that wholly contains the
read's true span (same contig, fragment start <= read start, fragment end >= read end). Prints one
TSV line: index, kind, fragments, bytes/fragment (shard files), reads, recall@1/8/16, search
queries/s (embedding excluded, one process, torch threads as set).

    python benchmarks/scale_recall.py REF.fa INDEX_DIR reads.fq [--store auto] [--threads 2] [--max-reads N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnaesa.io.fastx import read_batches  # noqa: E402
from dnaesa.model.base import load_encoder  # noqa: E402
from dnaesa.options import IndexOptions  # noqa: E402
from dnaesa.pipeline import set_threads  # noqa: E402
from dnaesa.reference import Reference  # noqa: E402
from dnaesa.simulate import parse_truth  # noqa: E402
from dnaesa.store.index_dir import open_index  # noqa: E402

KS = (1, 8, 16)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ref")
    p.add_argument("index")
    p.add_argument("reads")
    p.add_argument("--encoder", default="default")
    p.add_argument("--store", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--max-reads", type=int, default=0, help="stop after this many reads (0: all)")
    args = p.parse_args()
    set_threads(args.threads)
    encoder = load_encoder(args.encoder, "cpu")
    reference = Reference.load(args.ref)
    index = open_index(reference, encoder, IndexOptions(index_kind=args.store), args.index)
    store = index.store.to("cpu", "auto", keep_faiss=False)
    contig_of = {name: i for i, name in enumerate(reference.names)}
    hits = {k: 0 for k in KS}
    n, search_s = 0, 0.0
    for batch in read_batches(args.reads, args.batch):
        truth = [parse_truth(r.name) for r in batch]
        queries = encoder.encode([r.seq for r in batch])
        t0 = time.perf_counter()
        _, ids = store.search(queries, max(KS))
        search_s += time.perf_counter() - t0
        frags = index.fragments[np.maximum(ids, 0)]
        contig = np.array([contig_of[t.contig] for t in truth])[:, None]
        left = np.array([t.start for t in truth])[:, None]
        right = np.array([t.end for t in truth])[:, None]
        ok = (ids >= 0) & (frags[:, :, 0] == contig) & (frags[:, :, 1] <= left) & (frags[:, :, 2] >= right)
        for k in KS:
            hits[k] += int(ok[:, :k].any(axis=1).sum())
        n += len(batch)
        if args.max_reads and n >= args.max_reads:
            break
    shard_bytes = sum((Path(args.index) / name).stat().st_size for name in index.manifest["shards"])
    print("\t".join(map(str, [args.index, store.kind, store.ntotal, round(shard_bytes / store.ntotal), n,
                              *(f"{100 * hits[k] / n:.2f}" for k in KS), f"{n / search_s:.1f}"])))


if __name__ == "__main__":
    main()
