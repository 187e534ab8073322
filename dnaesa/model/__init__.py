"""Encoders: a batch of DNA sequences -> L2-normalised float32 vectors (see `base.Encoder`)."""
from dnaesa.model.base import Encoder, load_encoder

__all__ = ["Encoder", "load_encoder"]
