"""The `Encoder` interface every embedding model implements, and `load_encoder` that picks one.

An encoder maps DNA sequences (reads of 100-500 bp, reference fragments of ~1.2 kb) to rows of an
L2-normalised float32 matrix, so that a read's vector has its largest inner product with the
fragment that contains it. Fragments are stored forward-strand only. For an encoder that is not
`strand_symmetric` the pipeline embeds each read and its reverse complement and searches both.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Sequence

import numpy as np

from dnaesa.errors import OptionsError
from dnaesa.runtime import resolve_device

#: bundled models, one directory each; `weights/default` is what `align` uses (MODEL.md)
BUNDLED_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL_DIR = BUNDLED_DIR / "default"


class Encoder(abc.ABC):
    """A batch of sequences -> (n, dim) float32, each row of unit L2 norm."""

    #: short name for logs and the CLI (`kmer`, `transformer`)
    name: str = "encoder"
    #: embedding width
    dim: int = 0
    #: torch device string the encoder runs on ("cpu" where it has none)
    device: str = "cpu"
    #: True when a sequence and its reverse complement get the same vector: then the pipeline
    #: searches once per read and aligns both orientations in each candidate window
    strand_symmetric: bool = False

    @abc.abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the embeddings would: kind, parameters, weights checksum.

        An index records it in its manifest; an index built by another identity is rebuilt."""

    @abc.abstractmethod
    def encode(self, seqs: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed `seqs` (upper or lower case ACGTN strings) -> (len(seqs), dim) float32, unit rows."""


def load_encoder(spec: str | None = None, device: str = "auto") -> Encoder:
    """Pick an encoder.

    `spec` is None or "default" for the bundled default model (`weights/default`; the k-mer
    sketch if a source checkout lacks it), "kmer" for the training-free k-mer sketch (parameters
    may follow: "kmer:k=8,dim=4096"), the name of another bundled model (a directory under
    `weights/`), or a directory saved by `save_pretrained` of a trained model. A model made of
    sketch channels only (no weight table, no context network; the default is one) runs as
    `SketchModelEncoder` in numpy, without importing torch or transformers; any other model as
    `TransformerEncoder`.
    """
    device = resolve_device(device)
    if spec in (None, "default"):
        spec = str(DEFAULT_MODEL_DIR) if (DEFAULT_MODEL_DIR / "config.json").exists() else "kmer"
    if spec == "kmer" or spec.startswith("kmer:"):
        from dnaesa.model.kmer import KmerSketchEncoder

        params = {}
        for item in filter(None, spec[5:].split(",")):
            key, _, value = item.partition("=")
            if key not in ("k", "dim", "seed") or not value.isdigit():
                raise OptionsError(f"{spec}: kmer parameters are k=, dim= and seed=, e.g. kmer:k=8,dim=4096")
            params[key] = int(value)
        return KmerSketchEncoder(device=device, **params)
    path = BUNDLED_DIR / spec if (BUNDLED_DIR / spec / "config.json").exists() else Path(spec)
    if not (path / "config.json").exists():
        bundled = sorted(d.name for d in BUNDLED_DIR.iterdir() if (d / "config.json").exists()) if BUNDLED_DIR.exists() else []
        raise OptionsError(f"{spec}: not an encoder name (default, kmer, {', '.join(bundled)}) nor a model directory with config.json")
    import json

    from dnaesa.model.kmer import SketchModelEncoder

    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") == "dnaesa-compact-sketch":  # compact encoder (numpy, no torch import)
        from dnaesa.model.compact import CompactSketchEncoder

        return CompactSketchEncoder(path, device=device)
    if config.get("model_type") == "dnaesa-compact-transformer":
        from dnaesa.model.compact_transformer import TinyTransformerEncoder

        return TinyTransformerEncoder.from_pretrained(path, device=device)
    if SketchModelEncoder.supports(config):
        return SketchModelEncoder(path, device=device)
    from dnaesa.model.transformer import TransformerEncoder

    return TransformerEncoder.from_pretrained(path, device=device)
