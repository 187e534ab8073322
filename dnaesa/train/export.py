"""Export a trained model directory for shipping: drop parts that do nothing.

    python -m dnaesa.train.export --model OUT/best --out OUT/export

A weight table that is still all zeros (every k-mer weight exp(0) = 1, e.g. when the best checkpoint
is the scale-searched start) is removed (`use_table: false`), which takes the fast path of
`DnaKmerWeightModel.forward` (no exp, no table gather). The exported model must give bit-identical
embeddings on a random and an N-containing test set, or nothing is written.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from dnaesa.model.transformer import DnaKmerWeightConfig, DnaKmerWeightModel, TransformerEncoder


def export(src: str, dst: str) -> TransformerEncoder:
    enc = TransformerEncoder.from_pretrained(src)
    model = enc.model
    config = model.config.to_dict()
    keep = {k: config[k] for k in ("k", "dim", "sketch_seed", "use_table", "context_layers", "d_model", "n_heads",
                                   "ff_dim", "stem_kernel", "stride", "attention_window", "spaced_seeds")}
    if model.spaced_scale is not None:
        keep["spaced_scales"] = [float(x) for x in model.spaced_scale.detach()]
    prune = model.log_weight is not None and not model.has_context and not bool(model.log_weight.detach().any())
    if prune:
        keep["use_table"] = False
    out = TransformerEncoder(DnaKmerWeightModel(DnaKmerWeightConfig(**keep)))
    with torch.no_grad():
        state = {k: v for k, v in model.state_dict().items() if not (prune and k == "log_weight")}
        out.model.load_state_dict(state)
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGTN"), int(n), p=[0.24, 0.24, 0.24, 0.24, 0.04]))
            for n in rng.integers(0, 1500, 300)]
    if not np.array_equal(out.encode(seqs), enc.encode(seqs)):
        raise ValueError(f"{src}: the exported model's embeddings differ; not written")
    out.save_pretrained(dst)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        enc = export(args.model, args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {args.model} -> {args.out} ({enc.identity()})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
