"""A compact model beside a fixed count sketch: does a training-free 8-mer channel restore the
recall of reads close to the reference that the trained D = 256 vector gives up (issue 10)?

    python benchmarks/compact_hybrid.py --buckets 256 --alpha 0.5 1 2 --out DIR

Writes one model directory per alpha (`DIR/hybrid_d{256+B}_a{alpha}`): the shipped `compact256`
weights in the first 256 columns and, in the next B, a B-bucket count sketch of its 8-mer channel
(each of that channel's 4,096 hashed bins sent to one bucket with a random sign), scaled so that the
sketch part's mean norm over 1,000 human windows (chrX 30-31 Mb, training sequence) is alpha times
the trained part's. The result is an ordinary compact model (same format, linear in the counts), so
`python -m dnaesa.train.compact_bench --model DIR/...` measures it like any other.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from dnaesa.model.compact import channel_offsets, compact_features, normalize_channels
from dnaesa.train.compact_bench import region_windows

SHIPPED = Path(__file__).resolve().parent.parent / "dnaesa" / "model" / "weights" / "compact256"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHIPPED), help="the trained compact model [compact256]")
    parser.add_argument("--buckets", type=int, default=256, help="sketch buckets added beside it")
    parser.add_argument("--alpha", type=float, nargs="+", default=[1.0], help="sketch norm / trained norm")
    parser.add_argument("--channel", type=int, default=3, help="the model's channel sketched (3: 8-mers)")
    parser.add_argument("--windows", default="../shared/genomes/human_grch37_chrX_0-70Mb.fa.gz:30000000-31000000")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    src = Path(args.model)
    config = json.loads((src / "config.json").read_text())
    tensors = load_file(str(src / "model.safetensors"))
    weight, mu = tensors["weight"], tensors["mu"]
    channels = normalize_channels(config["channels"])
    offsets = channel_offsets(channels)

    def norms(w: np.ndarray, x: np.ndarray, totals: np.ndarray) -> float:
        center = np.stack([mu[lo:hi] @ w[lo:hi] for lo, hi in zip(offsets[:-1], offsets[1:])])
        return float(np.linalg.norm(x @ w - totals @ center, axis=1).mean())

    x, totals = compact_features(region_windows([args.windows], limit=1000), channels, config.get("sketch_seed", 0))
    trained = norms(weight, x, totals)
    rng = np.random.default_rng(7)
    lo, hi = offsets[args.channel], offsets[args.channel + 1]
    sketch = np.zeros((weight.shape[0], args.buckets), np.float32)
    sketch[np.arange(lo, hi), rng.integers(0, args.buckets, hi - lo)] = rng.choice([-1.0, 1.0], hi - lo)
    sketch /= norms(sketch, x, totals)
    for alpha in args.alpha:
        out = Path(args.out) / f"hybrid_d{weight.shape[1] + args.buckets}_a{alpha:g}"
        shutil.copytree(src, out, dirs_exist_ok=True)
        (out / "config.json").write_text(json.dumps({**config, "dim": weight.shape[1] + args.buckets}, indent=2))
        save_file({"weight": np.hstack([weight, alpha * trained * sketch]).astype(np.float32), "mu": mu},
                  str(out / "model.safetensors"))
        print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
