"""Encoder and search throughput on this machine's CPU and, where there is one, its GPU.

    python benchmarks/throughput.py REF.fa [--model DIR|kmer] [--reads 20000] [--device auto|cpu|cuda]

Embeds 250 bp reads cut from REF (reads/s) and all 1,250 bp fragments (fragments/s), then searches
the reads against the fragments (queries/s) with each search backend available on the device:
FAISS, torch bf16 on CPU, torch fp16 on CUDA. Prints one line per measurement and checks that the
backends agree on the top hit.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from dnaesa.model.base import load_encoder, resolve_device  # noqa: E402
from dnaesa.options import IndexOptions  # noqa: E402
from dnaesa.reference import Reference  # noqa: E402
from dnaesa.runtime import cpu_has_fast_bf16  # noqa: E402
from dnaesa.store.vector_store import VectorStore  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reference")
    p.add_argument("--model", default="default")
    p.add_argument("--reads", type=int, default=20000)
    p.add_argument("--device", default="auto")
    p.add_argument("--top-k", type=int, default=16)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    ref = Reference.load(args.reference)
    opts = IndexOptions()
    frags = [ref.fetch(c, s, e) for c, s, e in ref.fragments(opts.fragment_len, opts.stride)]
    rng = random.Random(0)
    reads = []
    for _ in range(args.reads):
        ci = rng.randrange(len(ref.seqs))
        st = rng.randrange(max(len(ref.seqs[ci]) - 250, 1))
        reads.append(ref.seqs[ci][st : st + 250])
    encoder = load_encoder(args.model, device)
    encoder.encode(reads[:256])  # warm-up
    q, t = timed(lambda: encoder.encode(reads))
    print(f"encode {encoder.identity()} on {device}: {len(reads) / t:,.0f} reads/s (250 bp)")
    f, t = timed(lambda: encoder.encode(frags))
    print(f"encode {encoder.identity()} on {device}: {len(frags) / t:,.0f} fragments/s (1,250 bp)")
    store = VectorStore(encoder.dim)
    store.add(f)
    backends = [("cpu", "faiss")] + ([("cpu", "torch-bf16")] if cpu_has_fast_bf16() else [])
    backends += [("cuda", "torch")] if device == "cuda" else []
    first = None
    for dev, backend in backends:
        store.to(dev, backend)
        store.search(q[:256], args.top_k)
        (scores, ids), t = timed(lambda: store.search(q, args.top_k))
        same = "" if first is None else f", top hit as faiss for {100 * np.mean(ids[:, 0] == first[:, 0]):.2f}%"
        first = ids if first is None else first
        print(f"search {backend} on {dev}: {len(q) / t:,.0f} queries/s against {store.ntotal:,} fragments{same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
