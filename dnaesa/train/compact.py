"""Training the compact encoder (`DnaCompactModel`, D = 128-512) by InfoNCE with mined negatives.

    python -m dnaesa.train.compact --ref TRAIN.fa [...] --eval-ref HELD_OUT.fa[:S-E] [...] \\
        --config configs/train/compact_d256.yaml --out runs/compact_d256 [--resume] [--time-limit S]

Each step: `batch_size` (fragment, read) pairs from the training regions (`PairSampler`: reads
100-500 bp, half of them 0-`max_divergence` divergent, all with sequencing errors, half of the
pairs reverse-complemented), a neighbour fragment per pair (overlapping the read without containing
it), `extra_negatives` random fragments, and `mined_negatives` per read drawn from its `mine_pool`
nearest windows of a bank of training windows (the store's grid) encoded by the current model every
`mine_every` steps. Fragments that contain the read are masked (not negatives). Loss: InfoNCE
(`dnaesa.train.loss`), reads -> fragments unless `symmetric_loss`.

Output: OUT/checkpoint (model + trainer_state.pt; `--resume` continues exactly), OUT/best (best
mean held-out recall), OUT/model (last), OUT/metrics.jsonl. Runs on CPU or CUDA (`--device`).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml

from dnaesa.model.compact import DEFAULT_CHANNELS, channel_means, compact_features
from dnaesa.model.compact_hf import CompactTorchEncoder, DnaCompactConfig, DnaCompactModel
from dnaesa.reference import fragment_windows
from dnaesa.train.data import MutationProfile, PairSampler, Region, containment_mask
from dnaesa.train.evaluate import RecallEvaluator
from dnaesa.train.loop import lr_factor, read_trainer_state, run_training, write_checkpoint
from dnaesa.train.loss import InfoNCELoss, ZScoreLoss


@dataclass
class CompactTrainOptions:
    channels: list = field(default_factory=lambda: [dict(c) for c in DEFAULT_CHANNELS])
    dim: int = 256
    arch: str = "sketch"  # sketch (DnaCompactModel) | transformer (DnaTinyTransformerModel, from scratch)
    transformer: dict = field(default_factory=dict)  # DnaTinyTransformerConfig keyword arguments
    init: str = "random"  # random (projection) | pca (top principal axes of training windows' features)
    #: a saved DnaCompactModel with the same channels: its weight fills the first columns (and its
    #: channel means are kept); the remaining columns start as init says, scaled by init_extra_scale
    init_from: str = ""
    init_extra_scale: float = 0.1
    steps: int = 1000
    batch_size: int = 256
    extra_negatives: int = 512
    neighbour_negatives: bool = True
    mined_negatives: int = 2
    mine_pool: int = 16
    mine_every: int = 100
    bank_windows: int = 20000
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    grad_clip: float = 1.0
    temperature: float = 0.05
    learn_temperature: bool = True
    symmetric_loss: bool = False
    loss: str = "infonce"  # infonce | zscore (per-read standardised similarities, dnaesa.train.loss)
    zscore_tau: float = 1.0
    seed: int = 0
    fragment_len: int = 1250
    fragment_stride: int = 1000
    read_len_min: int = 100
    read_len_max: int = 500
    error_rate: float = 0.01
    max_divergence: float = 0.2
    divergent_share: float = 0.6
    mean_windows: int = 4000
    checkpoint_every: int = 50
    eval_every: int = 100
    log_every: int = 10
    eval_reads: int = 300
    eval_read_lens: tuple = (250,)
    eval_divergences: tuple = (0.01, 0.10, 0.15)
    eval_ks: tuple = (1, 8, 16)
    eval_decoy_windows: int = 0  # bank windows added to each held-out search space (0 = none)
    threads: int = 1

    @classmethod
    def from_yaml(cls, path, **overrides) -> "CompactTrainOptions":
        data = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown options {sorted(unknown)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("eval_read_lens", "eval_divergences", "eval_ks"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


class CompactTrainer:
    def __init__(self, opts: CompactTrainOptions, train_specs, eval_specs, out, device: str = "cpu"):
        self.opts, self.out, self.device = opts, Path(out), device
        torch.manual_seed(opts.seed)
        o = opts
        self.sampler = PairSampler([Region.load(s) for s in train_specs], o.fragment_len, o.read_len_min,
                                   o.read_len_max, o.error_rate, o.max_divergence, o.divergent_share)
        seqs = self.sampler.contigs
        windows = fragment_windows([len(s) for s in seqs], o.fragment_len, o.fragment_stride)
        frags = [seqs[c][s:e] for c, s, e in windows]
        keep = np.flatnonzero([f.count("N") <= self.sampler.max_n_fraction * len(f) for f in frags])
        rng = np.random.default_rng(o.seed)
        if o.bank_windows and keep.size > o.bank_windows:
            keep = np.sort(rng.choice(keep, o.bank_windows, replace=False))
        self.bank_windows = windows[keep]
        self.bank_fragments = [frags[i] for i in keep]
        self.model = self._new_model()
        self.model.to(device)
        decoys = []
        if o.eval_decoy_windows:
            pick = rng.choice(len(self.bank_fragments), min(o.eval_decoy_windows, len(self.bank_fragments)), replace=False)
            decoys = [self.bank_fragments[i] for i in np.sort(pick)]
        self.evaluators = [
            RecallEvaluator(Region.load(spec), MutationProfile.divergence(div), n_reads=o.eval_reads, read_len=rl,
                            fragment_len=o.fragment_len, stride=o.fragment_stride, ks=o.eval_ks, decoys=decoys,
                            name=f"{Path(spec.split(':')[0]).name.split('.')[0]}/len{rl}/div{div:g}")
            for spec in eval_specs for rl in o.eval_read_lens for div in o.eval_divergences
        ]
        if o.loss == "zscore":
            self.loss = ZScoreLoss(o.zscore_tau).to(device)
        elif o.loss == "infonce":
            self.loss = InfoNCELoss(o.temperature, learnable=o.learn_temperature, symmetric=o.symmetric_loss).to(device)
        else:
            raise ValueError(f"loss must be infonce or zscore, got {o.loss!r}")
        self.step, self.best = 0, -1.0
        self.bank, self.bank_step = None, -1
        self._make_optimizer()

    def _new_model(self, path=None):
        if self.opts.arch == "transformer":
            from dnaesa.model.compact_transformer import DnaTinyTransformerConfig, DnaTinyTransformerModel

            if path:
                return DnaTinyTransformerModel.from_pretrained(str(path))
            return DnaTinyTransformerModel(DnaTinyTransformerConfig(dim=self.opts.dim, **self.opts.transformer))
        if self.opts.arch != "sketch":
            raise ValueError(f"arch must be sketch or transformer, got {self.opts.arch!r}")
        model = (DnaCompactModel.from_pretrained(str(path)) if path
                 else DnaCompactModel(DnaCompactConfig(channels=self.opts.channels, dim=self.opts.dim)))
        model.mu.requires_grad_(False)  # fixed channel means (from_pretrained makes every parameter trainable)
        return model

    def _trainable(self) -> list:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _make_optimizer(self) -> None:
        o = self.opts
        params = [{"params": self._trainable(), "weight_decay": o.weight_decay, "lr": o.lr}]
        if self.loss.log_temperature.requires_grad:
            params.append({"params": [self.loss.log_temperature], "weight_decay": 0.0, "lr": o.lr})
        self.optimizer = torch.optim.AdamW(params, lr=o.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lambda s: lr_factor(s, o.warmup_steps, o.steps))

    def initialise(self) -> None:
        """Channel means from `mean_windows` bank windows; with init=pca, W = top principal axes of
        the centred, per-channel-normalised features (a training-free start)."""
        o = self.opts
        if o.arch != "sketch":
            return
        rng = np.random.default_rng(o.seed + 1)
        pick = np.sort(rng.choice(len(self.bank_fragments), min(o.mean_windows, len(self.bank_fragments)), replace=False))
        X, totals = compact_features([self.bank_fragments[i] for i in pick], self.model.config.channels)
        mu = channel_means(X, totals, self.model.config.channels)
        self.model.set_means(mu)
        if o.init_from:
            src = DnaCompactModel.from_pretrained(o.init_from)
            if src.config.channels != self.model.config.channels or src.config.dim > o.dim:
                raise ValueError(f"init_from {o.init_from}: other channels or a larger dim")
            with torch.no_grad():
                w = self.model.weight.detach().clone() * o.init_extra_scale
                w[:, : src.config.dim] = src.weight.detach()
                self.model.weight.copy_(w)
                self.model.mu.copy_(src.mu.detach())
            return
        if o.init == "pca":
            from dnaesa.model.compact import channel_offsets

            offsets = channel_offsets(self.model.config.channels)
            Xc = X - np.repeat(totals, np.diff(offsets), axis=1) * mu
            scale = np.ones(X.shape[1], np.float32)
            for lo, hi in zip(offsets[:-1], offsets[1:]):
                scale[lo:hi] = 1.0 / np.sqrt(max(float((Xc[:, lo:hi] ** 2).sum(1).mean()), 1e-9))
            Z = (Xc * scale).astype(np.float64)
            _, _, vt = np.linalg.svd(Z - Z.mean(0), full_matrices=False)
            with torch.no_grad():
                self.model.weight.copy_(torch.from_numpy((vt[: o.dim].T * scale[:, None]).astype(np.float32)))

    # --- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        write_checkpoint(self, CompactTorchEncoder(self.model, device=self.device))
        self.model.train()

    def resume(self) -> bool:
        ckpt = self.out / "checkpoint"
        if not (ckpt / "trainer_state.pt").exists():
            return False
        self.model = self._new_model(ckpt).to(self.device)
        state = read_trainer_state(ckpt, self.device)
        self.loss.load_state_dict(state["loss"])
        self._make_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best = state["step"], state["best"]
        return True

    def log(self, record: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def evaluate(self) -> dict[str, float]:
        encoder = CompactTorchEncoder(self.model, device=self.device)
        encoder.identity = lambda: f"compact-step{self.step}"  # noqa: E731 (cache key per step)
        metrics: dict[str, float] = {}
        cache: dict = {}
        for ev in self.evaluators:
            metrics.update(ev(encoder, batch_size=512, cache=cache))
        self.model.train()
        if metrics:
            metrics["primary"] = float(np.mean(list(metrics.values())))
            if metrics["primary"] > self.best:
                self.best = metrics["primary"]
                CompactTorchEncoder(self.model, device=self.device).save_pretrained(self.out / "best")
                self.model.train()
        self.log({"step": self.step, "eval": metrics, "temperature": self.loss.temperature})
        return metrics

    # --- mining -----------------------------------------------------------------------------
    @torch.no_grad()
    def refresh_bank(self) -> None:
        t0 = time.time()
        vecs = CompactTorchEncoder(self.model, device=self.device).encode(self.bank_fragments, batch_size=512)
        self.model.train()
        self.bank = torch.from_numpy(vecs).to(self.device)
        self.bank_step = self.step
        self.log({"step": self.step, "bank_windows": len(self.bank_fragments), "bank_s": round(time.time() - t0, 1)})

    @torch.no_grad()
    def mine(self, read_emb: torch.Tensor, spans: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        o = self.opts
        if self.bank is None or self.step - self.bank_step >= o.mine_every:
            self.refresh_bank()
        depth = min(o.mine_pool + 4, self.bank.shape[0])
        top = (read_emb @ self.bank.T).topk(depth, dim=1).indices.cpu().numpy()
        win = self.bank_windows[top]
        contains = ((win[..., 0] == spans[:, None, 0]) & (win[..., 1] <= spans[:, None, 1])
                    & (win[..., 1] + o.fragment_len >= spans[:, None, 2]))
        picked = []
        for row, bad in zip(top, contains):
            pool = row[~bad][: o.mine_pool]
            picked.append(rng.choice(pool, size=min(o.mined_negatives, len(pool)), replace=False))
        return np.concatenate(picked).astype(np.int64)

    def train_step(self) -> tuple[float, float]:
        o = self.opts
        rng = np.random.Generator(np.random.PCG64([o.seed, self.step]))
        frags, reads, mask, spans = self.sampler.located_batch(o.batch_size, o.extra_negatives, rng,
                                                               o.neighbour_negatives, with_spans=True)
        self.model.train()
        read_emb = self.model.embed(reads)
        if o.mined_negatives:
            mined = self.mine(read_emb.detach(), spans, rng)
            frags = frags + [self.bank_fragments[j] for j in mined]
            mask = np.concatenate([mask, containment_mask(spans, self.bank_windows[mined, :2], o.fragment_len)], 1)
        frag_emb = self.model.embed(frags)
        maskt = torch.from_numpy(mask).to(self.device)
        loss = self.loss(read_emb, frag_emb, maskt)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self._trainable(), o.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.item(), self.loss.accuracy(read_emb.detach(), frag_emb.detach(), maskt)

    def fit(self, time_limit: float = 0.0) -> dict[str, float]:
        o = self.opts
        t0 = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        metrics: dict[str, float] = {}
        if self.step == 0:
            self.initialise()
            if self.evaluators:
                metrics = self.evaluate()
        while self.step < o.steps:
            if time_limit and time.time() - t0 > time_limit:
                self.log({"step": self.step, "stopped": "time_limit"})
                if self.evaluators and self.step % o.eval_every:
                    metrics = self.evaluate()
                self.save_checkpoint()
                break
            loss, acc = self.train_step()
            if self.step % o.log_every == 0:
                self.log({"step": self.step, "loss": round(loss, 4), "acc": round(acc, 4),
                          "t": round(self.loss.temperature, 4), "lr": self.scheduler.get_last_lr()[0],
                          "elapsed_s": round(time.time() - t0, 1)})
            if self.evaluators and (self.step % o.eval_every == 0 or self.step == o.steps):
                metrics = self.evaluate()
            if self.step % o.checkpoint_every == 0 or self.step == o.steps:
                self.save_checkpoint()
        CompactTorchEncoder(self.model, device=self.device).save_pretrained(self.out / "model")
        return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", nargs="+", required=True)
    parser.add_argument("--eval-ref", nargs="*", default=[])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--time-limit", type=float, default=0.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    return run_training(args, CompactTrainOptions.from_yaml,
                        lambda opts, out, device: CompactTrainer(opts, args.ref, args.eval_ref, out, device=device))


if __name__ == "__main__":
    raise SystemExit(main())
