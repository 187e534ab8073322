"""A small Transformer over k-mer tokens with D output dimensions (issue 10: "report at least one").

    tokens: the sequence's bases -> overlapping 4-mer codes at stride `stride` (each token embedded,
            plus the conv-free 4-mer identity: no subword vocabulary) -> + sinusoidal positions
    -> `layers` pre-LN Transformer layers (d_model, heads) -> masked mean pool -> Linear(d_model, D)
    embedding = L2norm( f(seq) + f(reverse_complement(seq)) )   ("post-hoc conjoined": strand-free)

Trained from scratch by the same loop as the compact sketch model (`dnaesa.train.compact`,
`arch: transformer`). Saved as a transformers model (config.json + model.safetensors + tokenizer).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import logging as transformers_logging

from dnaesa.model.compact_hf import CompactTorchEncoder
from dnaesa.model.kmer import BASE_CODE
from dnaesa.reference import reverse_complement


class DnaTinyTransformerConfig(PretrainedConfig):
    model_type = "dnaesa-compact-transformer"

    def __init__(self, dim: int = 256, k: int = 4, stride: int = 2, d_model: int = 64, n_heads: int = 4,
                 ff_dim: int = 128, layers: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.k, self.stride, self.d_model = dim, k, stride, d_model
        self.n_heads, self.ff_dim, self.layers = n_heads, ff_dim, layers


def _positions(length: int, width: int, device) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    pe = torch.zeros(length, width, device=device)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


class DnaTinyTransformerModel(PreTrainedModel):
    config_class = DnaTinyTransformerConfig
    base_model_prefix = "dna_tiny_transformer"

    def __init__(self, config: DnaTinyTransformerConfig):
        super().__init__(config)
        c = config
        self.tok = nn.Embedding(4 ** c.k + 1, c.d_model, padding_idx=4 ** c.k)  # last id: padding / N
        layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.ff_dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model)
        self.out = nn.Linear(c.d_model, c.dim)
        self.post_init()

    def tokens(self, seqs: Sequence[str]) -> torch.Tensor:
        c = self.config
        n_tok = [max(0, (len(s) - c.k) // c.stride + 1) for s in seqs]
        width = max(n_tok + [1])
        ids = np.full((len(seqs), width), 4 ** c.k, dtype=np.int64)
        for i, s in enumerate(seqs):
            if n_tok[i] == 0:
                continue
            codes = BASE_CODE[np.frombuffer(s.encode("ascii", "replace"), dtype=np.uint8)].astype(np.int64)
            m = len(codes) - c.k + 1
            code = np.zeros(m, np.int64)
            bad = np.zeros(m, bool)
            for j in range(c.k):
                code = code * 4 + np.maximum(codes[j:j + m], 0)
                bad |= codes[j:j + m] < 0
            code[bad] = 4 ** c.k
            ids[i, :n_tok[i]] = code[::c.stride][:n_tok[i]]
        return torch.from_numpy(ids).to(self.out.weight.device)

    def _one_strand(self, seqs: Sequence[str]) -> torch.Tensor:
        ids = self.tokens(seqs)
        pad = ids == 4 ** self.config.k
        x = self.tok(ids) + _positions(ids.shape[1], self.config.d_model, ids.device)
        key_pad = pad.clone()
        key_pad[:, 0] = False  # an all-padding row would give NaN
        x = self.encoder(x, src_key_padding_mask=key_pad)
        keep = (~pad).float()[..., None]
        pooled = (self.norm(x) * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return self.out(pooled)

    def embed(self, seqs: Sequence[str]) -> torch.Tensor:
        seqs = list(seqs)
        y = self._one_strand(seqs) + self._one_strand([reverse_complement(s) for s in seqs])
        return F.normalize(y, dim=1)


class TinyTransformerEncoder(CompactTorchEncoder):
    """`Encoder` over a saved `DnaTinyTransformerModel` directory (what `load_encoder` gives for one),
    with an identity made from its config and weights, for an index's manifest."""

    name = "compact-transformer"

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> "TinyTransformerEncoder":
        transformers_logging.disable_progress_bar()
        return cls(DnaTinyTransformerModel.from_pretrained(str(path)), device=device)

    def identity(self) -> str:
        h = hashlib.sha1(self.model.config.to_json_string(use_diff=False).encode())
        for key, tensor in sorted(self.model.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return f"compact-transformer:k={self.model.config.k}:dim={self.dim}:{h.hexdigest()[:16]}"

    def encode(self, seqs: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Batches of 64: attention over a 1,250 bp fragment's 600-odd tokens costs memory as their square."""
        return super().encode(seqs, batch_size)
