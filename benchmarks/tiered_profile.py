"""Where a tiered store's search time goes, per read: the two encoders, the coarse tier's top C and
the exact tier's re-rank (with and without its prefilter), and the coarse top C through the sieve
(`--sieve K`; also: how many reads' coarse top C it changed), in CPU ms a read on one thread; and the
matrix-product rates that decide the coarse search on this CPU (int8 `torch._int_mm`, float32,
bfloat16) at the coarse tier's block shape.

    python benchmarks/tiered_profile.py INDEX_DIR READS.fq [--max-reads 1024] [--candidates 2048] [--prefilter 256] [--sieve 8192]

Set `DNAESA_INT8_PRODUCTS=1` (or 0) to force the coarse tier's integer (or float32) products.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def _rate(torch, a, b, n=10) -> float:
    a @ b.T if a.dtype != torch.int8 else torch._int_mm(a, b.T)
    t = time.process_time()  # CPU time: steadier than wall time on a shared machine
    for _ in range(n):
        a @ b.T if a.dtype != torch.int8 else torch._int_mm(a, b.T)
    return 2 * a.shape[0] * b.shape[0] * a.shape[1] * n / (time.process_time() - t) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("index")
    p.add_argument("reads")
    p.add_argument("--max-reads", dest="n", type=int, default=1024)
    p.add_argument("--candidates", type=int, default=2048)
    p.add_argument("--prefilter", type=int, default=256)
    p.add_argument("--sieve", type=int, default=8192)
    args = p.parse_args()
    import faiss
    import pysam
    import torch

    from dnaesa.model.base import load_encoder
    from dnaesa.runtime import cpu_has_fast_int8
    from dnaesa.store.index_dir import load_index

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    q = torch.randint(-100, 100, (512, 256), dtype=torch.int8)
    block = torch.randint(-100, 100, (2048, 256), dtype=torch.int8)
    print(f"products (512 x 256) x (256 x 2048), 1 thread, GOPS a CPU second: int8 _int_mm {_rate(torch, q, block):.1f} GOPS, "
          f"float32 {_rate(torch, q.float(), block.float()):.1f}, bfloat16 {_rate(torch, q.bfloat16(), block.bfloat16(), 3):.1f}; "
          f"int8 products used: {cpu_has_fast_int8()}")
    index = load_index(Path(args.index))
    index.store.open_shards()
    with pysam.FastxFile(args.reads) as fh:
        seqs = [r.sequence for _, r in zip(range(args.n), fh)]
    encoder, coarse, tier = load_encoder("default", "cpu"), index.coarse_encoder, index.coarse
    tier.search(coarse.encode(seqs[:4]), 16)  # compile and page in

    def timed(label, f):
        t = time.process_time()
        out = f()
        print(f"{label}: {1000 * (time.process_time() - t) / len(seqs):.2f} CPU ms a read", flush=True)
        return out

    vectors = timed("sketch encode", lambda: encoder.encode(seqs))
    compact = timed("compact encode", lambda: coarse.encode(seqs))
    picked = timed(f"coarse top {args.candidates} of {tier.ntotal:,}", lambda: tier.search(compact, args.candidates))
    full = timed(f"re-rank all {args.candidates}", lambda: index.store.rerank(vectors, picked, 16))
    pre = timed(f"re-rank, prefilter {args.prefilter}", lambda: index.store.rerank(vectors, picked, 16, args.prefilter))
    print(f"top hit changed by the prefilter: {(pre[1][:, 0] != full[1][:, 0]).sum()} of {len(seqs)} reads")
    if tier.sieve is not None:
        sieved = timed(f"coarse top {args.candidates} among the sieve's {args.sieve}",
                       lambda: tier.search(compact, args.candidates, args.sieve))
        same = [len(set(a) & set(b)) / len(a) for a, b in zip(picked, sieved)]
        print(f"coarse top {args.candidates} through the sieve: {sum(s == 1 for s in same)} of {len(seqs)} reads the "
              f"same set, {100 * sum(same) / len(same):.2f}% of the ids in common")


if __name__ == "__main__":
    main()
