"""The trainable compact encoder as a `transformers` model (config.json + model.safetensors + tokenizer.json).

    embedding = L2norm( sum_c (x_c - n_c * mu_c) @ W_c )        (see dnaesa.model.compact)

`weight` (F, D) is learned by InfoNCE (dnaesa.train.compact); `mu` (F) is fixed, set from training
sequence before training. `CompactSketchEncoder` (numpy) reads the same directory and gives the
same embeddings (tests check it to 1e-5); `load_encoder(DIR)` picks it for this model type.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import logging as transformers_logging

from dnaesa.model.base import Encoder
from dnaesa.model.compact import (
    COMPACT_MODEL_TYPE,
    DEFAULT_CHANNELS,
    CompactSketchEncoder,
    channel_offsets,
    compact_features,
    normalize_channels,
)
from dnaesa.model.tokenizer import DnaTokenizer


class DnaCompactConfig(PretrainedConfig):
    model_type = COMPACT_MODEL_TYPE

    def __init__(self, channels: Sequence[dict] = DEFAULT_CHANNELS, dim: int = 256, sketch_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not 8 <= dim <= 4096:
            raise ValueError(f"dim must be in [8, 4096], got {dim}")
        self.channels = normalize_channels(channels)
        self.dim, self.sketch_seed = int(dim), int(sketch_seed)

    @property
    def n_features(self) -> int:
        return int(channel_offsets(self.channels)[-1])


class DnaCompactModel(PreTrainedModel):
    config_class = DnaCompactConfig
    base_model_prefix = "dna_compact"

    def __init__(self, config: DnaCompactConfig):
        super().__init__(config)
        f = config.n_features
        self.weight = nn.Parameter(torch.zeros(f, config.dim))
        self.mu = nn.Parameter(torch.zeros(f), requires_grad=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Random projection: each channel's rows N(0, 1 / (bins_c * D)) scaled so channels start even."""
        if module is not self:
            return
        gen = torch.Generator().manual_seed(0)
        offsets = channel_offsets(self.config.channels)
        with torch.no_grad():
            for lo, hi in zip(offsets[:-1], offsets[1:]):
                self.weight[lo:hi] = torch.randn(int(hi - lo), self.config.dim, generator=gen) / np.sqrt(self.config.dim)

    def set_means(self, mu: np.ndarray) -> None:
        with torch.no_grad():
            self.mu.copy_(torch.from_numpy(np.asarray(mu, dtype=np.float32)))

    def features(self, seqs: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        X, totals = compact_features(list(seqs), self.config.channels, self.config.sketch_seed)
        dev = self.weight.device
        return torch.from_numpy(X).to(dev), torch.from_numpy(totals).to(dev)

    def center_matrix(self) -> torch.Tensor:
        offsets = channel_offsets(self.config.channels)
        return torch.stack([self.mu[lo:hi] @ self.weight[lo:hi] for lo, hi in zip(offsets[:-1], offsets[1:])])

    def forward(self, X: torch.Tensor, totals: torch.Tensor) -> torch.Tensor:
        y = X @ self.weight - totals @ self.center_matrix()
        return y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def embed(self, seqs: Sequence[str]) -> torch.Tensor:
        return self(*self.features(seqs))


class CompactTorchEncoder(Encoder):
    """`Encoder` over an in-memory `DnaCompactModel` (training, evaluation); saves the shipped directory."""

    name = "compact-torch"
    strand_symmetric = True

    def __init__(self, model: DnaCompactModel, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.dim = model.config.dim
        self.device = device

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> "CompactTorchEncoder":
        transformers_logging.disable_progress_bar()
        return cls(DnaCompactModel.from_pretrained(str(path)), device=device)

    def save_pretrained(self, path: str | Path) -> None:
        transformers_logging.disable_progress_bar()
        self.model.save_pretrained(str(path), safe_serialization=True)
        DnaTokenizer().save_pretrained(path)

    def identity(self) -> str:
        return "compact-torch:" + str(id(self.model))

    @torch.inference_mode()
    def encode(self, seqs: Sequence[str], batch_size: int = 1024) -> np.ndarray:
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        for lo in range(0, len(seqs), batch_size):
            out[lo : lo + batch_size] = self.model.embed(seqs[lo : lo + batch_size]).float().cpu().numpy()
        return out


__all__ = ["DnaCompactConfig", "DnaCompactModel", "CompactTorchEncoder", "CompactSketchEncoder"]
