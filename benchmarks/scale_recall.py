"""Recall@K and search speed of a built index on simulated reads (truth in their names).

Loads the index as `dnaesa align` does (any store kind), embeds the reads with the index's encoder,
searches them in batches and counts the reads whose top K hold a fragment that wholly contains the
read's true span (same contig, fragment start <= read start, fragment end >= read end). Prints one
TSV line: index, kind, fragments, bytes/fragment (shard files), reads, recall@1/8/16, search
queries/s (embedding excluded, one process, torch threads as set).

A tiered or lean index is searched as `dnaesa align` searches it (the coarse tier picks C
fragments, the exact tier scores them, or for a lean index the sequence tier; `--coarse-candidates C`, several allowed: one line each), and the line adds
the coarse tier's own recall@1/8/16 and recall@C (the share of reads whose true fragment is among
the C picked: what the exact tier can at best recover). `--prefilter P,...` re-ranks with the
prefilter of `dnaesa align --prefilter-candidates` (0: every candidate in full); `--sieve K,...`
narrows the coarse search with the sieve of `dnaesa align --coarse-sieve` (0: exhaustive); each
(K, C, P) triple is a line. The coarse search runs once per K for the widest C and is shared, so
only the first line of each K has its queries/s.

    python benchmarks/scale_recall.py REF.fa INDEX_DIR reads.fq [--store auto] [--threads 2] [--max-reads N]
        [--coarse-candidates 1024,2048] [--prefilter 0,256] [--sieve 0,4096]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnaesa.align.candidates import exact_rerank  # noqa: E402
from dnaesa.io.fastx import read_batches  # noqa: E402
from dnaesa.model.base import load_encoder  # noqa: E402
from dnaesa.options import IndexOptions, MapOptions  # noqa: E402
from dnaesa.pipeline import set_threads  # noqa: E402
from dnaesa.reference import Reference  # noqa: E402
from dnaesa.simulate import parse_truth  # noqa: E402
from dnaesa.store.index_dir import open_index  # noqa: E402
from dnaesa.store.sequence_tier import SequenceTier  # noqa: E402

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
    p.add_argument("--coarse-candidates", default="256", help="tiered: C values, comma-separated")
    p.add_argument("--prefilter", default="0", help="tiered: re-rank prefilter values (0: none), comma-separated")
    p.add_argument("--sieve", default="0", help="tiered: coarse sieve values (0: exhaustive), comma-separated")
    p.add_argument("--prefilter-ratio", type=float, default=MapOptions.prefilter_ratio,
                   help="lean: of the prefilter's picks, those scored from the sequence (as dnaesa align)")
    args = p.parse_args()
    set_threads(args.threads)
    encoder = load_encoder(args.encoder, "cpu")
    reference = Reference.load(args.ref)
    index = open_index(reference, encoder, IndexOptions(index_kind=args.store), args.index)
    if index.coarse is None:
        store = index.store.to("cpu", "auto", keep_faiss=False)
        counts = [_recall(args, index, reference, encoder, lambda q, seqs: store.search(q, max(KS))[1])]
        cs = [None]
    else:
        store = index.store
        store.open_shards()
        exact = None
        if index.manifest["options"]["index_kind"] == "lean":  # exact scores from the reference's sequence
            exact = SequenceTier(encoder, reference, index.fragments)
        runs = [(int(k), int(c), int(p)) for k in args.sieve.split(",") for c in args.coarse_candidates.split(",")
                for p in args.prefilter.split(",")]
        cs, counts, picked_for = [f"{c}, prefilter {p}, sieve {k}" for k, c, p in runs], [], {}
        widest = max(c for _, c, _ in runs)
        for sieve, c, prefilter in runs:
            def search(q, seqs, c=c, prefilter=prefilter, sieve=sieve):
                key = (sieve, len(seqs), seqs[0], seqs[-1])  # the coarse top C is a prefix of its widest top
                if key not in picked_for:
                    picked_for[key] = index.coarse.search(index.coarse_encoder.encode(seqs), widest, sieve)
                picked = picked_for[key][:, :c]
                options = MapOptions(top_k=max(KS), prefilter_candidates=prefilter, prefilter_ratio=args.prefilter_ratio)
                return exact_rerank(store, exact, q, picked, max(KS), options)[1], picked
            counts.append(_recall(args, index, reference, encoder, search))
    shard_bytes = sum((Path(args.index) / name).stat().st_size
                      for name in index.manifest["shards"] + index.manifest.get("coarse_shards", []))
    kind = index.manifest["options"]["index_kind"]
    for c, (hits, coarse_hits, n, search_s) in zip(cs, counts):
        extra = [] if c is None else [f"C={c}", *(f"{100 * coarse_hits[k] / n:.2f}" for k in (*KS, int(c.split(",")[0])))]
        extra += [f"sieve file {index.manifest.get('sieve_file')}"] if c is not None else []
        print("\t".join(map(str, [args.index, kind, store.ntotal, round(shard_bytes / store.ntotal), n,
                                  *(f"{100 * hits[k] / n:.2f}" for k in KS), f"{n / search_s:.1f}", *extra])))


def _recall(args, index, reference, encoder, search) -> tuple[dict, dict, int, float]:
    """Run `search(vectors, seqs) -> ids` (or (ids, coarse ids)) over the reads; count hits."""
    contig_of = {name: i for i, name in enumerate(reference.names)}
    hits, coarse_hits = {}, {}
    n, search_s = 0, 0.0
    for batch in read_batches(args.reads, args.batch):
        truth = [parse_truth(r.name) for r in batch]
        seqs = [r.seq for r in batch]
        queries = encoder.encode(seqs)
        t0 = time.perf_counter()
        found = search(queries, seqs)
        search_s += time.perf_counter() - t0
        contig = np.array([contig_of[t.contig] for t in truth])[:, None]
        left = np.array([t.start for t in truth])[:, None]
        right = np.array([t.end for t in truth])[:, None]
        for ids, counter in zip(found if isinstance(found, tuple) else (found,), (hits, coarse_hits)):
            frags = index.fragments[np.maximum(ids, 0)]
            ok = (ids >= 0) & (frags[:, :, 0] == contig) & (frags[:, :, 1] <= left) & (frags[:, :, 2] >= right)
            for k in dict.fromkeys((*KS, ids.shape[1])):
                counter[k] = counter.get(k, 0) + int(ok[:, :k].any(axis=1).sum())
        n += len(batch)
        if args.max_reads and n >= args.max_reads:
            break
    return hits, coarse_hits, n, search_s


if __name__ == "__main__":
    main()
