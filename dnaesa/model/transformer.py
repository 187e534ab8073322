"""The trained encoder: a hashed k-mer sketch whose per-k-mer weights a small Transformer learns.

Why this shape (measured, see MODEL.md): a transformer trained from scratch on 2 CPU cores for
minutes retrieves ~20% of reads where an untrained hashed 12-mer sketch gets 97-100%. So the model
*starts as the sketch* and learns corrections that cannot make it worse at step 0:

    ids (single bases) ─► for each seed pattern s (e.g. 12-mer, 8-mer): hashed bucket per position,
                          duplicates within the sequence dropped, as in `dnaesa.model.kmer`
                       ─► conv stem (stride `stride`) + Transformer layers over the short token
                          sequence ─► zero-initialised head: log-weight g[s, i] per k-mer position
    embedding = L2norm( sum_s scale_s * sum_i exp(g[s, i]) * R[bucket_s(i)] )

`R` is a fixed seeded +-1 table (rebuilt from `table_seed`, never stored: 2**hash_bits x dim).
With head = 0 and scale = (1, 0, ...) the output is exactly a dense random-projection sketch of the
distinct 12-mers (the project's first sketch baseline; `dnaesa.model.kmer` has since become a
strand-symmetric count sketch of canonical 8-mers at dim 4096, which this model does not reproduce). Training learns which k-mers to trust (low-complexity and repeated ones down) and how much
the shorter, divergence-tolerant seeds count. Pooling, weights and the sum are all inside
`DnaSketchModel`, so `save_pretrained` / `from_pretrained` round-trips the embeddings bit for bit.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import logging as transformers_logging

from dnaesa.model.base import Encoder
from dnaesa.model.tokenizer import PAD_ID, VOCAB, DnaTokenizer

#: uint64 golden-ratio multiplier (Fibonacci hashing) as a wrapping int64; bucket = top hash_bits bits
_GOLDEN_I64 = 0x9E3779B97F4A7C15 - (1 << 64)
#: salt added to the k-mer code of seed pattern s > 0, so patterns hash independently into one table
_PATTERN_SALT_SHIFT = 48
#: log-weights are clamped to this range (weights exp(-8)..exp(4)) to keep training stable
_LOG_WEIGHT_RANGE = (-8.0, 4.0)
#: config fields that change the embeddings (the identity hashes these and the weights)
_IDENTITY_KEYS = ("model_type", "dim", "hash_bits", "table_seed", "seed_patterns", "initial_scales", "d_model",
                  "n_layers", "n_heads", "ff_dim", "stem_kernel", "stride", "attention_window")


class DnaSketchConfig(PretrainedConfig):
    """Hyper-parameters of `DnaSketchModel`; `seed_patterns` are strings of 1 (used) and 0 (skipped)."""

    model_type = "dnaesa-sketch-transformer"

    def __init__(
        self,
        dim: int = 512,
        hash_bits: int = 16,
        table_seed: int = 0,
        seed_patterns: Sequence[str] = ("111111111111", "11111111"),
        initial_scales: Sequence[float] = (1.0, 0.0),
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        ff_dim: int = 128,
        stem_kernel: int = 16,
        stride: int = 8,
        attention_window: int = 32,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(seed_patterns) != len(initial_scales):
            raise ValueError(f"seed_patterns ({len(seed_patterns)}) and initial_scales ({len(initial_scales)}) differ in length")
        for p in seed_patterns:
            if set(p) - {"0", "1"} or not 4 <= p.count("1") <= 16 or p[0] != "1" or p[-1] != "1":
                raise ValueError(f"seed pattern {p!r}: use 0/1, start and end with 1, 4-16 ones")
        if not 8 <= hash_bits <= 24:
            raise ValueError(f"hash_bits must be in [8, 24], got {hash_bits}")
        if stem_kernel < stride or (stem_kernel - stride) % 2:
            raise ValueError(f"stem_kernel ({stem_kernel}) must be >= stride ({stride}) with an even difference")
        self.dim, self.hash_bits, self.table_seed = dim, hash_bits, table_seed
        self.seed_patterns, self.initial_scales = list(seed_patterns), [float(x) for x in initial_scales]
        self.d_model, self.n_layers, self.n_heads, self.ff_dim = d_model, n_layers, n_heads, ff_dim
        self.stem_kernel, self.stride, self.attention_window = stem_kernel, stride, attention_window


def sign_table(hash_bits: int, dim: int, seed: int) -> torch.Tensor:
    """The +-1 bucket table: row b is the random vector of hash bucket b."""
    rng = np.random.Generator(np.random.PCG64(seed))
    signs = rng.integers(0, 2, size=(1 << hash_bits, dim), dtype=np.int8) * 2 - 1
    return torch.from_numpy(signs.astype(np.float32))


def hashed_kmers(codes: torch.Tensor, pattern: str, hash_bits: int, salt: int) -> torch.Tensor:
    """(B, L) base codes 0-3 (-1 = N or padding) -> (B, L) bucket of the seed starting at each
    position, -1 where the seed runs off the end or covers an N (Fibonacci hash of the 2-bit code)."""
    span = len(pattern)
    b, length = codes.shape
    out = torch.full_like(codes, -1)
    if length < span:
        return out
    n = length - span + 1
    clipped = codes.clamp(min=0)
    kmer = torch.zeros(b, n, dtype=torch.int64, device=codes.device)
    for off, used in enumerate(pattern):
        if used == "1":
            kmer = (kmer << 2) | clipped[:, off : off + n]
    bad = F.pad((codes < 0).to(torch.int32).cumsum(1), (1, 0))
    valid = (bad[:, span:] - bad[:, :-span]) == 0
    bucket = ((kmer + salt) * _GOLDEN_I64 >> (64 - hash_bits)) & ((1 << hash_bits) - 1)
    out[:, :n] = torch.where(valid, bucket, torch.full_like(bucket, -1))
    return out


def first_occurrence(buckets: torch.Tensor) -> torch.Tensor:
    """(B, L) buckets (-1 = none) -> bool mask keeping the first position of each distinct bucket."""
    sorted_b, order = torch.sort(buckets, dim=1, stable=True)
    first = torch.ones_like(sorted_b, dtype=torch.bool)
    first[:, 1:] = sorted_b[:, 1:] != sorted_b[:, :-1]
    first &= sorted_b >= 0
    return torch.zeros_like(first).scatter(1, order, first)


def sinusoidal_positions(length: int, width: int, device: torch.device) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    pe = torch.zeros(length, width, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class DnaSketchModel(PreTrainedModel):
    """input_ids (B, L) of `DnaTokenizer` -> (B, dim) unit-norm embeddings (see module docstring)."""

    config_class = DnaSketchConfig
    base_model_prefix = "dna_sketch"
    main_input_name = "input_ids"

    def __init__(self, config: DnaSketchConfig):
        super().__init__(config)
        c = config
        n_seeds = len(c.seed_patterns)
        self.stem = nn.Conv1d(4, c.d_model, c.stem_kernel, stride=c.stride, padding=(c.stem_kernel - c.stride) // 2)
        layer = nn.TransformerEncoderLayer(
            c.d_model, c.n_heads, c.ff_dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.stride * n_seeds)
        self.scales = nn.Parameter(torch.tensor(c.initial_scales, dtype=torch.float32))
        self._table: torch.Tensor | None = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Zero head (all k-mer weights 1) and the configured seed scales: step 0 is the sketch."""
        if module is self.head:
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
        elif module is self:
            with torch.no_grad():
                self.scales.copy_(torch.tensor(self.config.initial_scales, dtype=torch.float32))

    def table(self, device: torch.device) -> torch.Tensor:
        """The fixed +-1 table, rebuilt from `table_seed` on first use (not a parameter, not saved)."""
        if self._table is None or self._table.device != device:
            with torch.inference_mode(False):  # built under `encode` too, and must serve training later
                    self._table = sign_table(self.config.hash_bits, self.config.dim, self.config.table_seed).to(device)
        return self._table

    def log_weights(self, codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, L) base codes, (B,) true lengths -> (B, L, n_seeds) log-weight of the seed at each position."""
        c = self.config
        b, length = codes.shape
        onehot = F.one_hot(codes.clamp(min=0), 4).to(self.stem.weight.dtype) * (codes >= 0)[..., None]
        onehot = F.pad(onehot.transpose(1, 2), (0, -length % c.stride))  # whole tokens cover every base
        x = F.gelu(self.stem(onehot)).transpose(1, 2)  # (B, T, d_model), T = ceil(L / stride)
        t = x.shape[1]
        x = x + sinusoidal_positions(t, c.d_model, x.device).to(x.dtype)
        token_start = torch.arange(t, device=codes.device) * c.stride
        pad = token_start[None, :] >= lengths[:, None]
        x = self.windowed_layers(x, pad)
        g = self.head(self.norm(x)).view(b, t * c.stride, len(c.seed_patterns))[:, :length]
        return g.clamp(*_LOG_WEIGHT_RANGE)

    def windowed_layers(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Transformer layers with attention inside non-overlapping windows of `attention_window`
        tokens: cost linear in length (full attention over a fragment's 157 tokens was 3/4 of the
        encode time), and a k-mer's weight depends on its neighbourhood only."""
        b, t, d = x.shape
        w = min(self.config.attention_window, t)
        extra = -t % w
        x = F.pad(x, (0, 0, 0, extra)).reshape(-1, w, d)
        pad = F.pad(pad, (0, extra), value=True).reshape(-1, w)
        pad[:, 0] = False  # a window that is all padding would give NaN; its outputs are never used
        return self.layers(x, src_key_padding_mask=pad).reshape(b, t + extra, d)[:, :t]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        codes = torch.where((input_ids >= VOCAB["A"]) & (input_ids <= VOCAB["T"]), input_ids - VOCAB["A"], -1)
        if attention_mask is None:
            attention_mask = input_ids != PAD_ID
        g = self.log_weights(codes, attention_mask.sum(1))
        ids, weights = [], []
        for s, pattern in enumerate(c.seed_patterns):
            buckets = hashed_kmers(codes, pattern, c.hash_bits, s << _PATTERN_SALT_SHIFT)
            keep = first_occurrence(buckets)
            ids.append(buckets.clamp(min=0))
            weights.append(torch.exp(g[:, :, s]) * keep * self.scales[s])
        table = self.table(input_ids.device).to(g.dtype)
        emb = F.embedding_bag(torch.cat(ids, 1), table, per_sample_weights=torch.cat(weights, 1), mode="sum")
        return F.normalize(emb.float(), dim=1)


class TransformerEncoder(Encoder):
    """`Encoder` over a saved `DnaSketchModel` directory (config.json, model.safetensors, tokenizer.json)."""

    name = "transformer"

    def __init__(self, model: DnaSketchModel, tokenizer: DnaTokenizer | None = None, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer or DnaTokenizer()
        self.device = device
        self.dim = model.config.dim
        self._identity: str | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> "TransformerEncoder":
        if not (Path(path) / "config.json").exists():
            raise ValueError(f"{path}: not a model directory (no config.json); train one with `python -m dnaesa train`")
        transformers_logging.disable_progress_bar()
        model = DnaSketchModel.from_pretrained(str(path))
        return cls(model, DnaTokenizer.from_pretrained(path), device=device)

    def save_pretrained(self, path: str | Path) -> None:
        transformers_logging.disable_progress_bar()
        self.model.save_pretrained(str(path), safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    def identity(self) -> str:
        if self._identity is None:
            config = {k: getattr(self.model.config, k) for k in _IDENTITY_KEYS}
            h = hashlib.sha1(json.dumps(config, sort_keys=True).encode())
            for key, tensor in sorted(self.model.state_dict().items()):
                h.update(key.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._identity = f"transformer:dim={self.dim}:{h.hexdigest()[:16]}"
        return self._identity

    @torch.inference_mode()
    def encode(self, seqs: Sequence[str], batch_size: int = 256) -> np.ndarray:
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        order = np.argsort([len(s) for s in seqs], kind="stable")  # similar lengths share a batch
        for lo in range(0, len(seqs), batch_size):
            idx = order[lo : lo + batch_size]
            ids, _ = self.tokenizer.encode_batch([seqs[i] for i in idx])
            out[idx] = self.model(torch.from_numpy(ids).to(self.device)).cpu().numpy()
        return out
