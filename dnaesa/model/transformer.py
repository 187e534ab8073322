"""The trained encoder: the canonical k-mer count sketch with learned per-k-mer weights.

Why this shape (measured, see MODEL.md): a transformer trained from scratch on 2 CPU cores for
minutes retrieves ~20% of reads where an untrained k-mer sketch gets 97-100%, and a learned model
at a narrower width than the sketch never caught up with the sketch's width. So this model *is* the
project's sketch (`dnaesa.model.kmer.KmerSketchEncoder`, same canonical k-mers, same coordinate and
sign per k-mer, computed by kmer.py's own functions) with one change: each distinct canonical k-mer
of a sequence is summed with a learned positive weight instead of 1:

    embedding = L2norm( sum over distinct canonical k-mers x of the sequence:
                        exp( a[x] + g(x) ) * sign(x) * e_coord(x)
                      + sum over spaced-seed channels j, distinct canonical seeds y:
                        scale_j * sign_j(y) * e_coord_j(y) )

* `a` is a table of one log-weight per k-mer code (4**k entries; only canonical codes are used, so
  it is strand-symmetric by construction), initialised to 0. It can learn IDF-like down-weighting of
  frequent, low-complexity and repeat k-mers.
* `g` (optional, `context_layers >= 0`) is a small network over the sequence: one-hot bases -> conv
  stem with stride -> `context_layers` pre-LN Transformer layers with attention inside windows ->
  zero-initialised Linear giving a log-weight per base. It is made strand-symmetric by the
  "post-hoc conjoined" trick: the log-weight of a k-mer occurrence is the mean of g at its start on
  the sequence and g at its start on the reverse complement (position-mirrored); a k-mer that occurs
  several times takes the largest of its occurrences' values (order-free, so exact). A read and its
  reverse complement therefore get the same vector, and `strand_symmetric = True`.

* Spaced-seed channels (optional, `spaced_seeds`, e.g. "11011011011": 8 bases read across 11, so one
  mismatch breaks fewer seeds than 8-mers at the same selectivity) are count-sketched into the same
  coordinates with their own hash (kmer.py's `sketch_coordinates` with seed sketch_seed + 1 + j) and a
  learned scale. Patterns must be palindromes so the canonical seed is strand-free.

At initialisation (a = 0, zero head, spaced scales 0) every k-mer weight is exp(0) = 1 and the
embedding is bit for bit `KmerSketchEncoder(k, dim, seed)` (tests check it). The weighted sum is a torch `index_add_`, so
gradients reach both `a` and `g`. Everything that shapes the output lives in `DnaKmerWeightModel`, so
`save_pretrained` / `from_pretrained` round-trips the embeddings bit for bit; the coordinate and
sign tables are rebuilt from (k, dim, sketch_seed) by kmer.py, not stored.
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
from dnaesa.model.kmer import (
    SketchModelEncoder,
    canonical_kmer_occurrences,
    canonical_kmers,
    canonical_spaced_kmers,
    sketch_coordinates,
)
from dnaesa.model.tokenizer import PAD_ID, VOCAB, DnaTokenizer
from dnaesa.reference import reverse_complement

#: log-weights are clamped to this range (weights exp(-8)..exp(4)) to keep training stable
_LOG_WEIGHT_RANGE = (-8.0, 4.0)
#: config fields that change the embeddings (the identity hashes these and the weights)
_IDENTITY_KEYS = SketchModelEncoder.IDENTITY_KEYS
_ID_TO_CHAR = np.frombuffer(b"-ACGTN", dtype=np.uint8)


class DnaKmerWeightConfig(PretrainedConfig):
    """Hyper-parameters of `DnaKmerWeightModel`.

    `context_layers`: -1 = no context network (table only); 0 = conv stem + head; n > 0 = stem +
    n windowed Transformer layers + head."""

    model_type = "dnaesa-weighted-kmer-sketch"

    def __init__(
        self,
        k: int = 8,
        dim: int = 4096,
        sketch_seed: int = 0,
        use_table: bool = True,
        context_layers: int = -1,
        d_model: int = 32,
        n_heads: int = 2,
        ff_dim: int = 64,
        stem_kernel: int = 16,
        stride: int = 8,
        attention_window: int = 32,
        spaced_seeds: Sequence[str] = (),
        spaced_scales: Sequence[float] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        spaced_seeds = list(spaced_seeds)
        spaced_scales = [0.0] * len(spaced_seeds) if spaced_scales is None else [float(x) for x in spaced_scales]
        if len(spaced_scales) != len(spaced_seeds):
            raise ValueError(f"spaced_seeds ({len(spaced_seeds)}) and spaced_scales ({len(spaced_scales)}) differ in length")
        for p in spaced_seeds:
            if set(p) - {"0", "1"} or p[0] != "1" or p != p[::-1] or not 4 <= p.count("1") <= 10:
                raise ValueError(f"spaced seed {p!r}: use 0/1, start and end with 1, 4-10 ones, and be a palindrome "
                                 "(so that the canonical seed is strand-symmetric)")
        if not 4 <= k <= 11:
            raise ValueError(f"k must be in [4, 11] (the weight table has 4**k entries), got {k}")
        if dim < 16 or dim & (dim - 1):
            raise ValueError(f"dim must be a power of two >= 16, got {dim}")
        if context_layers < -1:
            raise ValueError(f"context_layers must be -1 (none), 0 (conv only) or more, got {context_layers}")
        if stem_kernel < stride or (stem_kernel - stride) % 2:
            raise ValueError(f"stem_kernel ({stem_kernel}) must be >= stride ({stride}) with an even difference")
        self.k, self.dim, self.sketch_seed = k, dim, sketch_seed
        self.use_table, self.context_layers = bool(use_table), context_layers
        self.d_model, self.n_heads, self.ff_dim = d_model, n_heads, ff_dim
        self.stem_kernel, self.stride, self.attention_window = stem_kernel, stride, attention_window
        self.spaced_seeds, self.spaced_scales = spaced_seeds, spaced_scales


def sinusoidal_positions(length: int, width: int, device: torch.device) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    pe = torch.zeros(length, width, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class DnaKmerWeightModel(PreTrainedModel):
    """Sequences (or input_ids of `DnaTokenizer`) -> (B, dim) unit-norm embeddings; see the module docstring."""

    config_class = DnaKmerWeightConfig
    base_model_prefix = "dna_kmer_weight"
    main_input_name = "input_ids"

    def __init__(self, config: DnaKmerWeightConfig):
        super().__init__(config)
        c = config
        self.log_weight = nn.Parameter(torch.zeros(4 ** c.k)) if c.use_table else None
        self.spaced_scale = (nn.Parameter(torch.tensor(c.spaced_scales, dtype=torch.float32))
                             if c.spaced_seeds else None)
        if c.context_layers >= 0:
            self.stem = nn.Conv1d(4, c.d_model, c.stem_kernel, stride=c.stride,
                                  padding=(c.stem_kernel - c.stride) // 2)
            layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.ff_dim, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.layers = (nn.TransformerEncoder(layer, c.context_layers, enable_nested_tensor=False)
                           if c.context_layers > 0 else None)
            self.norm = nn.LayerNorm(c.d_model)
            self.head = nn.Linear(c.d_model, c.stride)
        self._tables: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.post_init()

    def sketch_tables(self, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(coord int64, sign float32) of every code] for the k-mers, then each spaced seed (hashed
        with sketch_seed + 1 + j), from kmer.py's `sketch_coordinates`; rebuilt on first use (not
        parameters, not saved: `from_pretrained` builds the model on the meta device)."""
        if self._tables is None or self._tables[0][0].device != torch.device(device):
            c = self.config
            sizes = [c.k] + [p.count("1") for p in c.spaced_seeds]
            tables = []
            with torch.inference_mode(False):
                for j, k in enumerate(sizes):
                    coord, sign = sketch_coordinates(np.arange(4 ** k, dtype=np.uint64), c.dim, c.sketch_seed + j)
                    tables.append((torch.from_numpy(coord).to(device), torch.from_numpy(sign).to(device)))
            self._tables = tables
        return self._tables

    @property
    def device_(self) -> torch.device:
        return next(self.parameters()).device if any(True for _ in self.parameters()) else torch.device("cpu")

    def _init_weights(self, module: nn.Module) -> None:
        """Zero table and zero head: every k-mer weight is 1 and step 0 is the count sketch."""
        if module is self and self.log_weight is not None:
            with torch.no_grad():
                self.log_weight.zero_()
        if module is self and self.spaced_scale is not None:
            with torch.no_grad():
                self.spaced_scale.copy_(torch.tensor(self.config.spaced_scales, dtype=torch.float32))
        if self.config.context_layers >= 0 and module is getattr(self, "head", None):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def has_context(self) -> bool:
        return self.config.context_layers >= 0

    # --- features ---------------------------------------------------------------------------
    def features(self, seqs: Sequence[str]) -> dict[str, torch.Tensor]:
        """Strings -> the k-mer index tensors `forward` needs (computed by kmer.py in numpy).

        seq, kmer: the distinct canonical k-mers of each sequence (the order of `canonical_kmers`);
        with a context network also occ_seq, occ_pos (start of each occurrence on the forward
        strand), occ_rc_pos (its start on the reverse complement) and occ_group (its distinct k-mer)."""
        k = self.config.k
        seqs = list(seqs)
        spaced = {}
        for j, pattern in enumerate(self.config.spaced_seeds):
            seq_index, code = canonical_spaced_kmers(seqs, pattern)
            spaced[f"spaced{j}_seq"] = torch.from_numpy(seq_index)
            spaced[f"spaced{j}_kmer"] = torch.from_numpy(code.astype(np.int64))
        if not self.has_context:
            seq_index, kmer = canonical_kmers(seqs, k)
            return {"n": torch.tensor(len(seqs)), "seq": torch.from_numpy(seq_index),
                    "kmer": torch.from_numpy(kmer.astype(np.int64)), **spaced}
        occ_seq, occ_pos, occ_kmer = canonical_kmer_occurrences(seqs, k)
        keys = (occ_seq.astype(np.int64) << (2 * k)) | occ_kmer.astype(np.int64)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        first = np.concatenate([sorted_keys[:1] == sorted_keys[:1], sorted_keys[1:] != sorted_keys[:-1]])
        uniq = sorted_keys[first]
        group = np.empty_like(order)
        group[order] = np.cumsum(first) - 1
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        return {"n": torch.tensor(len(seqs)), "seq": torch.from_numpy(uniq >> (2 * k)),
                "kmer": torch.from_numpy(uniq & ((1 << (2 * k)) - 1)),
                "occ_seq": torch.from_numpy(occ_seq), "occ_pos": torch.from_numpy(occ_pos),
                "occ_rc_pos": torch.from_numpy(lengths[occ_seq] - k - occ_pos),
                "occ_group": torch.from_numpy(group.reshape(-1).astype(np.int64)), **spaced}

    def embed(self, seqs: Sequence[str], tokenizer: DnaTokenizer | None = None,
              out: torch.Tensor | None = None) -> torch.Tensor:
        """Strings -> (B, dim) embeddings (the path the encoder and the trainer use)."""
        seqs = list(seqs)
        device = self.device_
        feats = {k: v.to(device) for k, v in self.features(seqs).items()}
        ids = None
        if self.has_context:
            tok = tokenizer or DnaTokenizer()
            both = seqs + [reverse_complement(s) for s in seqs]
            ids = torch.from_numpy(tok.encode_batch(both)[0]).to(device)
        return self(input_ids=ids, features=feats, out=out)

    # --- the context network ----------------------------------------------------------------
    def base_log_weights(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, L) log-weight of the k-mer starting at each base."""
        c = self.config
        codes = torch.where((input_ids >= VOCAB["A"]) & (input_ids <= VOCAB["T"]), input_ids - VOCAB["A"], -1)
        b, length = codes.shape
        onehot = F.one_hot(codes.clamp(min=0), 4).to(self.stem.weight.dtype) * (codes >= 0)[..., None]
        onehot = F.pad(onehot.transpose(1, 2), (0, -length % c.stride))
        x = F.gelu(self.stem(onehot)).transpose(1, 2)  # (B, T, d_model), T = ceil(L / stride)
        t = x.shape[1]
        if self.layers is not None:
            x = x + sinusoidal_positions(t, c.d_model, x.device).to(x.dtype)
            pad = torch.arange(t, device=x.device)[None, :] * c.stride >= (input_ids != PAD_ID).sum(1)[:, None]
            x = self.windowed_layers(x, pad)
        return self.head(self.norm(x)).reshape(b, t * c.stride)[:, :length]

    def windowed_layers(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Transformer layers with attention inside non-overlapping windows of `attention_window` tokens."""
        b, t, d = x.shape
        w = min(self.config.attention_window, t)
        extra = -t % w
        x = F.pad(x, (0, 0, 0, extra)).reshape(-1, w, d)
        pad = F.pad(pad, (0, extra), value=True).reshape(-1, w)
        pad[:, 0] = False  # a window that is all padding would give NaN; its outputs are never used
        return self.layers(x, src_key_padding_mask=pad).reshape(b, t + extra, d)[:, :t]

    def kmer_log_weights(self, features: dict[str, torch.Tensor], input_ids: torch.Tensor | None) -> torch.Tensor:
        """Log-weight of each distinct k-mer: a[x] (table) + the largest conjoined g over its occurrences."""
        kmer = features["kmer"]
        logw = torch.zeros(kmer.shape[0], device=kmer.device)
        if self.log_weight is not None:
            logw = logw + self.log_weight[kmer]
        if self.has_context:
            n = int(features["n"])
            g = self.base_log_weights(input_ids).float()  # bfloat16 under CUDA autocast
            occ_seq = features["occ_seq"]
            conj = 0.5 * (g[occ_seq, features["occ_pos"]] + g[occ_seq + n, features["occ_rc_pos"]])
            per_kmer = torch.full_like(logw, -torch.inf).scatter_reduce(
                0, features["occ_group"], conj, reduce="amax", include_self=True)
            logw = logw + per_kmer
        return logw

    # --- forward ----------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                features: dict[str, torch.Tensor] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """`features` from `features(seqs)`; with a context network `input_ids` holds the B sequences
        followed by their B reverse complements. Given only `input_ids` (B sequences), both are derived."""
        if features is None:
            if input_ids is None:
                raise ValueError("give input_ids or features")
            seqs = [_ID_TO_CHAR[row[row != PAD_ID]].tobytes().decode("ascii") for row in input_ids.cpu().numpy()]
            return self.embed(seqs)
        n, seq, kmer = int(features["n"]), features["seq"], features["kmer"]
        tables = self.sketch_tables(kmer.device)
        coord, sign = tables[0]
        if self.log_weight is None and not self.has_context:
            weight = sign[kmer]  # every k-mer weight is exp(0) = 1
        else:
            weight = torch.exp(self.kmer_log_weights(features, input_ids).clamp(*_LOG_WEIGHT_RANGE)) * sign[kmer]
        index = seq * self.config.dim + coord[kmer]
        if self.spaced_scale is not None:  # spaced-seed channels, each summed with a learned scale
            weights, indexes = [weight], [index]
            for j in range(len(self.config.spaced_seeds)):
                s_seq, s_kmer = features[f"spaced{j}_seq"], features[f"spaced{j}_kmer"]
                s_coord, s_sign = tables[j + 1]
                weights.append(self.spaced_scale[j] * s_sign[s_kmer])
                indexes.append(s_seq * self.config.dim + s_coord[s_kmer])
            weight, index = torch.cat(weights), torch.cat(indexes)
        if out is not None:  # inference: accumulate and normalise in place in the caller's buffer
            flat = out.view(-1)
            flat.index_add_(0, index, weight)
            out /= torch.sqrt((out * out).sum(1, keepdim=True)).clamp_min_(1e-12)
            return out
        flat = torch.zeros(n * self.config.dim, device=weight.device, dtype=weight.dtype).index_add(0, index, weight)
        emb = flat.view(n, self.config.dim)
        norm = torch.sqrt((emb * emb).sum(1, keepdim=True))
        return emb / norm.clamp_min(1e-12)


class TransformerEncoder(Encoder):
    """`Encoder` over a saved `DnaKmerWeightModel` directory (config.json, model.safetensors, tokenizer.json)."""

    name = "transformer"
    strand_symmetric = True

    def __init__(self, model: DnaKmerWeightModel, tokenizer: DnaTokenizer | None = None, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer or DnaTokenizer()
        self.device = device
        self.dim = model.config.dim
        self._identity: str | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> "TransformerEncoder":
        if not (Path(path) / "config.json").exists():
            raise ValueError(f"{path}: not a model directory (no config.json); train one with `python -m dnaesa train`")
        kind = json.loads((Path(path) / "config.json").read_text()).get("model_type")
        if kind != DnaKmerWeightConfig.model_type:  # loading would start the missing weights afresh
            raise ValueError(f"{path}: a {kind!r} model, not a {DnaKmerWeightConfig.model_type!r} one: "
                             "load it with dnaesa.model.base.load_encoder")
        transformers_logging.disable_progress_bar()
        model = DnaKmerWeightModel.from_pretrained(str(path))
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
            self._identity = f"transformer:k={self.model.config.k}:dim={self.dim}:{h.hexdigest()[:16]}"
        return self._identity

    @torch.inference_mode()
    def encode(self, seqs: Sequence[str], batch_size: int = 256) -> np.ndarray:
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        if not self.model.has_context:  # no padding involved: batches in input order, written in place
            for lo in range(0, len(seqs), batch_size):
                hi = min(lo + batch_size, len(seqs))
                if self.device == "cpu":
                    self.model.embed(seqs[lo:hi], self.tokenizer, out=torch.from_numpy(out[lo:hi]))
                else:
                    out[lo:hi] = self.model.embed(seqs[lo:hi], self.tokenizer).cpu().numpy()
            return out
        order = np.argsort([len(s) for s in seqs], kind="stable")  # similar lengths share a batch
        for lo in range(0, len(seqs), batch_size):
            idx = order[lo : lo + batch_size]
            out[idx] = self.model.embed([seqs[i] for i in idx], self.tokenizer).cpu().numpy()
        return out
