"""Encoder and search throughput on this machine's CPU and, where there is one, its GPU.

    python benchmarks/throughput.py REF.fa [--model DIR|kmer] [--reads 20000] [--device auto|cpu|cuda]
    python benchmarks/throughput.py REF.fa --per-read [--reads 20000] [--index DIR]

Embeds 250 bp reads cut from REF (reads/s) and all 1,250 bp fragments (fragments/s), then searches
the reads against the fragments (queries/s) with each search backend available on the device:
FAISS, torch bf16 on CPU, torch fp16 on CUDA. Prints one line per measurement and checks that the
backends agree on the top hit.

`--per-read` (issue 12): the CPU time of each stage of aligning simulated 250 bp reads (1%
substitutions, 0.1% indels) in one process: `Aligner(REF)` with its index built, embedding and
search, the per-read path (windows -> placements -> SAM text) with the compiled kernels and on the
pure-Python path (and whether their SAM text is the same), and `Aligner.map` of one read.
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
    p.add_argument("--per-read", action="store_true", help="time the stages of aligning reads instead")
    p.add_argument("--index", default=None, help="index folder for --per-read (default: beside REF)")
    args = p.parse_args(argv)
    if args.per_read:
        return per_read(args)
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


def per_read(args) -> int:
    import hashlib

    from dnaesa.align import fast
    from dnaesa.engine.local import format_reads
    from dnaesa.io.sam import SamFormatter
    from dnaesa.pipeline import Aligner
    from dnaesa.simulate import simulate_reads

    t0 = time.perf_counter()
    aligner = Aligner(args.reference, model=args.model, index=args.index, device="cpu", threads=1)
    print(f"Aligner(ref), index built: {time.perf_counter() - t0:.2f} s wall")
    contigs = list(zip(aligner.reference.names, aligner.reference.seqs))
    seqs = [r.seq for r in simulate_reads(contigs, args.reads, 250, seed=1)]
    names = [f"r{i}" for i in range(len(seqs))]
    quals = ["I" * len(s) for s in seqs]
    step = aligner.options.batch_size
    aligner.find_candidates(seqs[:256])  # warm-up
    c0 = time.process_time()
    batches = [(lo, aligner.find_candidates(seqs[lo : lo + step])) for lo in range(0, len(seqs), step)]
    cpu = time.process_time() - c0
    print(f"embed + search + windows: {cpu / len(seqs) * 1e6:.0f} us CPU a read ({len(seqs):,} reads of 250 bp)")
    formatter = SamFormatter(aligner.reference.names)
    default = fast.warm_up()  # on only with DNAESA_NUMBA=1
    compiled = fast.warm_up(force=True)
    digests = {}
    for label, on in (("compiled kernels", True), ("pure Python", False)) if compiled else (("pure Python", False),):
        fast.COMPILED = on
        refiner = type(aligner.refiner)(aligner.reference, aligner.options)  # empty caches, as a worker's
        digest = hashlib.md5()
        c0 = time.process_time()
        for lo, cands in batches:
            hi = lo + step
            text, _ = format_reads(refiner, formatter, names[lo:hi], seqs[lo:hi], quals[lo:hi], cands)
            digest.update(text.encode())
        cpu = time.process_time() - c0
        digests[label] = digest.hexdigest()
        print(f"per-read path ({label}): {cpu / len(seqs) * 1e6:.0f} us CPU a read")
    fast.COMPILED = default
    if len(digests) == 2:
        print(f"SAM text of the two paths {'the same' if len(set(digests.values())) == 1 else 'DIFFERENT'}")
    calls = seqs[:500]
    for seq in calls[:20]:
        aligner.map(seq)
    c0 = time.process_time()
    for seq in calls:
        aligner.map(seq)
    path = "compiled kernels" if default else "pure Python"
    print(f"Aligner.map of one 250 bp read ({path}): {(time.process_time() - c0) / len(calls) * 1e3:.2f} ms CPU a call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
