"""Store options side by side on real vectors: bytes a vector, recall@16 and queries/s.

Vectors come from an `int8` index (whose codes are the default encoder's sketch exactly): every
fragment of the read region plus a random sample of the others, so the true fragments are always
present. Each option indexes the same vectors and searches the same reads (top 16, one process,
`--threads` threads). recall@16: share of reads with a fragment wholly containing the read among
the 16 hits; `same@16`: share of the exact search's top-16 ids found again.

    python benchmarks/scale_store_options.py scale_300m.fa idx_300m_int8 reads.fq --sample 100000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnaesa.io.fastx import read_batches  # noqa: E402
from dnaesa.model.base import load_encoder  # noqa: E402
from dnaesa.simulate import parse_truth  # noqa: E402
from dnaesa.store.codes import code_norms, quantize, search_code_shards  # noqa: E402

K = 16


def load_sample(index: Path, contig_names: list[str], read_contig: str, sample: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(float32 unit vectors, fragment rows) of every read-contig fragment plus random others."""
    manifest = json.loads((index / "manifest.json").read_text())
    fragments = np.load(index / "fragments.npy")
    ci = contig_names.index(read_contig)
    must = np.flatnonzero(fragments[:, 0] == ci)
    others = np.setdiff1d(np.arange(len(fragments)), must)
    rows = np.sort(np.concatenate([must, rng.choice(others, max(sample - len(must), 0), replace=False)]))
    size = manifest["options"]["shard_size"]
    out = np.empty((len(rows), manifest["dim"]), dtype=np.float32)
    for s, name in enumerate(manifest["shards"]):
        lo, hi = np.searchsorted(rows, [s * size, (s + 1) * size])
        if hi > lo:
            codes = np.load(index / name, mmap_mode="r")[rows[lo:hi] - s * size].view(np.int8).astype(np.float32)
            out[lo:hi] = codes / np.maximum(np.linalg.norm(codes, axis=1, keepdims=True), 1e-12)
    return out, fragments[rows]


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ref_json", help="the stand-in's .json (contig names)")
    p.add_argument("index", type=Path, help="an int8 index of the stand-in")
    p.add_argument("reads")
    p.add_argument("--sample", type=int, default=100_000)
    p.add_argument("--reads-n", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-pq", action="store_true", help="no IVF-PQ (its training is slow at 4,096 dims)")
    p.add_argument("--options", default="torch,codes,sq,ivf", help="which groups to run (ivf: IVF, PQ, folds, HNSW)")
    p.add_argument("--hnsw-sample", type=int, default=30_000, help="HNSW is built on this many of the vectors")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    names = [c[0] for c in json.loads(Path(args.ref_json).read_text())["contigs"]]
    reads = next(iter(read_batches(args.reads, args.reads_n)))
    truth = [parse_truth(r.name) for r in reads]
    x, frags = load_sample(args.index, names, truth[0].contig, args.sample, rng)
    q = load_encoder("default", "cpu").encode([r.seq for r in reads])
    ci = names.index(truth[0].contig)
    left = np.array([t.start for t in truth])[:, None]
    right = np.array([t.end for t in truth])[:, None]

    def recall(ids, subset=None):
        f = (frags if subset is None else frags[subset])[np.maximum(ids, 0)]
        ok = (ids >= 0) & (f[:, :, 0] == ci) & (f[:, :, 1] <= left) & (f[:, :, 2] >= right)
        return 100 * ok[:, :K].any(axis=1).mean()

    exact_ids = np.argsort(-(q @ x.T), axis=1)[:, :K]

    def rerank(cand):
        """The K best of each read's candidates by the exact vectors (an upper bound for int4 codes)."""
        out = np.empty((len(cand), K), dtype=np.int64)
        for lo in range(0, len(cand), 50):
            c = np.maximum(cand[lo : lo + 50], 0)
            exact = np.einsum("nd,nkd->nk", q[lo : lo + 50], x[c])
            exact[cand[lo : lo + 50] < 0] = -np.inf
            out[lo : lo + 50] = np.take_along_axis(c, np.argsort(-exact, axis=1)[:, :K], 1)
        return out

    def report(name, bytes_per, ids, search_s, build_s=0.0, subset=None):
        same = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids[:, :K], exact_ids)]) * 100 if subset is None else float("nan")
        print(f"{name}\t{bytes_per}\t{recall(ids, subset):.2f}\t{same:.1f}\t{len(q) / search_s:.0f}\t{build_s:.1f}", flush=True)

    print(f"# {len(x)} vectors of {x.shape[1]} dims, {len(q)} reads, {args.threads} threads")
    print("option\tbytes/vector\trecall@16\tsame@16\tqueries/s\tbuild s")
    d = x.shape[1]
    xt = torch.from_numpy(x)
    for dtype, nbytes, label in ((torch.float32, 4 * d, "exact float32 (torch)"),
                                 (torch.bfloat16, 2 * d, "flat bfloat16 (torch, the flat store's search)")):
        if "torch" not in args.options:
            break
        matrix = xt.to(dtype)
        (_, ids), t = timed(lambda m, dt: torch.topk(torch.from_numpy(q).to(dt) @ m.T, K, 1), matrix, dtype)
        report(label, nbytes, ids.numpy(), t)
    for kind in ("int8", "int4") if "codes" in args.options else ():
        codes = quantize(x, kind)[0]
        inv = 1.0 / np.maximum(code_norms(codes, kind, d), 1e-12)
        shards = [torch.from_numpy(codes[i : i + 16384]) for i in range(0, len(codes), 16384)]
        invs = [torch.from_numpy(inv[i : i + 16384].astype(np.float32)) for i in range(0, len(codes), 16384)]
        (_, ids), t = timed(search_code_shards, q, shards, invs, kind, d, K, "cpu")
        report(f"{kind} codes, shard by shard (exact int8 products)", codes.shape[1], ids, t)
    for qtype, label, nbytes in ((faiss.ScalarQuantizer.QT_fp16, "FAISS SQfp16", 2 * d),
                                 (faiss.ScalarQuantizer.QT_8bit, "FAISS SQ8", d), (faiss.ScalarQuantizer.QT_4bit, "FAISS SQ4", d // 2)):
        if "sq" not in args.options:
            break
        index = faiss.IndexScalarQuantizer(d, qtype, faiss.METRIC_INNER_PRODUCT)
        t0 = time.perf_counter()
        index.train(x[:20000])
        index.add(x)
        build = time.perf_counter() - t0
        (_, ids), t = timed(index.search, q, K)
        report(label, nbytes, ids, t, build)
    nlist = max(16, min(1024, len(x) // 64))
    if "ivf" not in args.options:
        return
    t0 = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x[rng.choice(len(x), 40 * nlist, replace=False)])
    ivf.add(x)
    build = time.perf_counter() - t0
    for nprobe in (8, 32, 128):
        ivf.nprobe = nprobe
        (_, ids), t = timed(ivf.search, q, K)
        report(f"IVF-Flat nlist {nlist} nprobe {nprobe}", 4 * d + 8, ids, t, build)
    if not args.skip_pq:
        t0 = time.perf_counter()
        pq = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, 256, 8, faiss.METRIC_INNER_PRODUCT)
        pq.train(x[rng.choice(len(x), 30 * nlist, replace=False)])
        pq.add(x)
        build = time.perf_counter() - t0
        for nprobe in (32, 128):
            pq.nprobe = nprobe
            t0 = time.perf_counter()
            ids = rerank(pq.search(q, 256)[1])
            report(f"IVF-PQ 256x8 bit, nprobe {nprobe}, 256 re-ranked exactly", 256 + 8, ids, time.perf_counter() - t0, build)
    for fold in (256, 1024):
        signs = np.where(rng.random(d) < 0.5, -1.0, 1.0).astype(np.float32)
        low = (x * signs).reshape(len(x), d // fold, fold).sum(axis=1)
        low /= np.maximum(np.linalg.norm(low, axis=1, keepdims=True), 1e-12)
        qlow = (q * signs).reshape(len(q), d // fold, fold).sum(axis=1)
        low_matrix = torch.from_numpy(low).to(torch.bfloat16)
        t0 = time.perf_counter()
        ids = rerank(torch.topk(torch.from_numpy(qlow).to(torch.bfloat16) @ low_matrix.T, 256, dim=1)[1].numpy())
        report(f"two-tier: {fold}-dim signed fold (bf16) picks 256, exact re-rank", 2 * fold + d // 2, ids,
               time.perf_counter() - t0)
    in_region = frags[:, 0] == ci
    n_other = max(args.hnsw_sample - int(in_region.sum()), 0)
    sub = np.sort(np.concatenate([np.flatnonzero(in_region), rng.choice(np.flatnonzero(~in_region), n_other, replace=False)]))
    hnsw = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 40
    _, build = timed(hnsw.add, x[sub])
    for ef in (64, 256):
        hnsw.hnsw.efSearch = ef
        (_, ids), t = timed(hnsw.search, q, K)
        report(f"HNSW M16 efSearch {ef} (on {len(sub)} vectors)", 4 * d + 128, ids, t, build, subset=sub)

if __name__ == "__main__":
    main()
