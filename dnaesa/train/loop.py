"""The training loop: options, AdamW + warm-up/cosine, clipping, checkpoints, `--resume`, evaluation.

Output directory layout:
    OUT/checkpoint/   latest state: model (save_pretrained), tokenizer, trainer_state.pt (optimizer,
                      scheduler, loss temperature, step); written to a temp dir and renamed
    OUT/best/         the model with the best primary metric seen so far (mean of every recall@K of
                      every held-out evaluation, so recall@1 counts as much as recall@16)
    OUT/model/        the model at the last step
    OUT/metrics.jsonl one JSON line per evaluation (and per `log_every` steps of training loss)
Data for step s is drawn from a generator seeded by (seed, s), so a resumed run sees exactly the
batches an uninterrupted one would.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from dnaesa.model.tokenizer import DnaTokenizer
from dnaesa.model.transformer import DnaKmerWeightConfig, DnaKmerWeightModel, TransformerEncoder
from dnaesa.reference import fragment_windows
from dnaesa.train.data import MutationProfile, PairSampler, Region, containment_mask
from dnaesa.train.evaluate import RecallEvaluator
from dnaesa.train.loss import InfoNCELoss


@dataclass
class TrainOptions:
    """Everything a training run needs besides its data paths; read from configs/train/*.yaml."""

    model: dict = field(default_factory=dict)  # DnaKmerWeightConfig keyword arguments
    steps: int = 2000
    batch_size: int = 64
    extra_negatives: int = 64
    neighbour_negatives: bool = True  # add a fragment overlapping each read without containing it
    lr: float = 1e-3  # context network
    table_lr: float = 0.01  # per-k-mer log-weight table (no weight decay)
    scale_lr: float = 0.0  # spaced-seed channel scales (no weight decay; 0 = frozen after scale_search:
    # InfoNCE pulls them back to 0, against genome-wide recall, see MODEL.md)
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    temperature: float = 0.05
    learn_temperature: bool = True
    #: also score each fragment against the batch's reads (CLIP-style); False = reads -> fragments
    #: only, the direction the store is searched in
    symmetric_loss: bool = True
    seed: int = 0
    fragment_len: int = 1250
    fragment_stride: int = 1000
    read_len_min: int = 100
    read_len_max: int = 500
    error_rate: float = 0.01
    max_divergence: float = 0.15
    divergent_share: float = 0.5
    checkpoint_every: int = 100
    eval_every: int = 200
    log_every: int = 10
    eval_reads: int = 500
    eval_read_len: int = 250
    eval_divergences: tuple = (0.01, 0.10)
    eval_ks: tuple = (1, 8, 16)
    #: candidate spaced-seed scales tried at step 0 on the --select-ref regions (training sequence),
    #: scored by genome-wide recall like the evaluator; the best is kept before InfoNCE starts.
    #: InfoNCE alone cannot find it: at scale 0 the gradient is noise (s and -s give the same
    #: similarities) and the loss prefers 0 where recall prefers ~1-1.5 (MODEL.md).
    scale_search: tuple = ()
    select_reads: int = 400
    select_read_lens: tuple = (250,)
    #: mined hard negatives (ANCE-style): every `mine_every` steps all training windows (fragment_len
    #: at fragment_stride, as the store cuts them) are encoded with the current model into a bank;
    #: each read then gets `mined_negatives` of the `mine_pool` bank windows nearest to it that do not
    #: contain it, re-encoded with gradients. These are the fragments genome-wide search confuses
    #: the read with, which in-batch random negatives almost never are. 0 = off.
    mined_negatives: int = 0
    mine_pool: int = 16
    mine_every: int = 200
    #: bfloat16 autocast of the forward pass on CUDA (the context network's convolutions, attention and
    #: linear layers; the k-mer sums are index_add, which autocast leaves in float32). No effect on CPU.
    autocast: bool = True
    threads: int = 1

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "TrainOptions":
        data = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown training options {sorted(unknown)}; known: {sorted(known)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("eval_divergences", "eval_ks", "scale_search", "select_read_lens"):
            if key in data:
                data[key] = tuple(data[key])
        opts = cls(**data)
        if opts.batch_size < 2 or opts.steps < 1:
            raise ValueError(f"{path}: batch_size must be >= 2 and steps >= 1")
        return opts


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """Owns model, loss, optimizer, scheduler, data and evaluators of one run in `out`."""

    def __init__(self, opts: TrainOptions, train_specs: list[str], eval_specs: list[str], out: Path, device: str = "cpu",
                 select_specs: list[str] | None = None):
        self.opts, self.out, self.device = opts, Path(out), device
        if opts.scale_search and not select_specs:
            raise ValueError("scale_search needs --select-ref regions (training sequence) to score the scales on")
        torch.manual_seed(opts.seed)
        self.sampler = PairSampler(
            [Region.load(s) for s in train_specs], opts.fragment_len, opts.read_len_min, opts.read_len_max,
            opts.error_rate, opts.max_divergence, opts.divergent_share,
        )
        self.evaluators = [
            RecallEvaluator(Region.load(spec), MutationProfile.divergence(div), n_reads=opts.eval_reads,
                            read_len=opts.eval_read_len, fragment_len=opts.fragment_len,
                            stride=opts.fragment_stride, ks=opts.eval_ks,
                            name=f"{Path(spec.split(':')[0]).name.split('.')[0]}/div{div:g}")
            for spec in eval_specs for div in opts.eval_divergences
        ]
        self.selectors = [
            RecallEvaluator(region, MutationProfile.divergence(div), n_reads=opts.select_reads,
                            read_len=read_len, fragment_len=opts.fragment_len,
                            stride=opts.fragment_stride, ks=opts.eval_ks, seed=2,
                            name=f"{Path(region.spec.split(':')[0]).name.split('.')[0]}/len{read_len}/div{div:g}")
            for region in [Region.load(spec) for spec in (select_specs or [])]
            for read_len in opts.select_read_lens for div in opts.eval_divergences
        ]
        self.model = DnaKmerWeightModel(DnaKmerWeightConfig(**opts.model)).to(device)
        if opts.scale_search and self.model.spaced_scale is None:
            raise ValueError("scale_search needs model.spaced_seeds")
        self.loss = InfoNCELoss(opts.temperature, learnable=opts.learn_temperature,
                                 symmetric=opts.symmetric_loss).to(device)
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=opts.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, opts.warmup_steps, opts.steps)
        )
        self.tokenizer = DnaTokenizer()
        self.step = 0
        self.best = -1.0
        self.bank: torch.Tensor | None = None
        self.bank_step = -1
        if opts.mined_negatives:
            seqs = self.sampler.contigs
            windows = fragment_windows([len(s) for s in seqs], opts.fragment_len, opts.fragment_stride)
            frags = [seqs[c][s:e] for c, s, e in windows]
            keep = np.array([f.count("N") <= self.sampler.max_n_fraction * len(f) for f in frags], dtype=bool)
            self.bank_windows = windows[keep]
            self.bank_fragments = [f for f, k in zip(frags, keep) if k]
            if len(self.bank_fragments) <= opts.mine_pool:
                raise ValueError(f"mined_negatives needs more than mine_pool={opts.mine_pool} training windows")

    def _param_groups(self) -> list[dict]:
        table = [self.model.log_weight] if self.model.log_weight is not None else []
        scales = [self.model.spaced_scale] if self.model.spaced_scale is not None else []
        for p in scales:
            p.requires_grad_(self.opts.scale_lr > 0)
        ids = {id(p) for p in table + scales}
        context = [p for p in self.model.parameters() if id(p) not in ids]
        groups = [{"params": context, "weight_decay": self.opts.weight_decay, "lr": self.opts.lr},
                  {"params": table, "weight_decay": 0.0, "lr": self.opts.table_lr},
                  {"params": scales if self.opts.scale_lr > 0 else [], "weight_decay": 0.0, "lr": self.opts.scale_lr},
                  {"params": [p for p in [self.loss.log_temperature] if p.requires_grad], "weight_decay": 0.0,
                   "lr": self.opts.lr}]
        return [g for g in groups if g["params"]]

    # --- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        write_checkpoint(self, TransformerEncoder(self.model, device=self.device))

    def resume(self) -> bool:
        """Load OUT/checkpoint if there is one; False when starting fresh."""
        ckpt = self.out / "checkpoint"
        if not (ckpt / "trainer_state.pt").exists():
            return False
        self.model = DnaKmerWeightModel.from_pretrained(str(ckpt)).to(self.device)
        state = read_trainer_state(ckpt, self.device)
        self.loss.load_state_dict(state["loss"])
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=self.opts.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.opts.warmup_steps, self.opts.steps)
        )
        # after the scheduler is built (which resets the lr to its step-0 value): restores the lr too
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best = state["step"], state["best"]
        return True

    # --- evaluation and logging --------------------------------------------------------------
    def log(self, record: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        encoder = TransformerEncoder(self.model, device=self.device)
        metrics: dict[str, float] = {}
        for ev in self.evaluators:
            metrics.update(ev(encoder))
        self.model.train()
        primary = [v for k, v in metrics.items() if "/recall@" in k or k.startswith("recall@")]
        if primary:
            metrics["primary"] = float(np.mean(primary))
            if metrics["primary"] > self.best:
                self.best = metrics["primary"]
                encoder.save_pretrained(self.out / "best")
        record = {"step": self.step, "eval": metrics, "temperature": self.loss.temperature}
        if self.model.log_weight is not None:
            w = self.model.log_weight.detach()
            record["log_weight"] = {"min": float(w.min()), "max": float(w.max()), "std": float(w.std())}
        if self.model.spaced_scale is not None:
            record["spaced_scale"] = self.model.spaced_scale.tolist()
        self.log(record)
        return metrics

    @torch.no_grad()
    def search_scale(self) -> float:
        """Try each `scale_search` value for every spaced-seed channel on the selection regions;
        keep the best mean recall (ties: the smaller scale). Logged as {"scale_search": ...}."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.model.eval()
        scores = {}
        for scale in self.opts.scale_search:
            self.model.spaced_scale.fill_(float(scale))
            encoder = TransformerEncoder(self.model, device=self.device)
            metrics = {}
            for ev in self.selectors:
                metrics.update(ev(encoder))
            scores[float(scale)] = float(np.mean(list(metrics.values())))
            self.log({"step": 0, "scale_search": float(scale), "select": metrics, "mean": scores[float(scale)]})
        best = max(scores, key=lambda s: (scores[s], -abs(s)))
        self.model.spaced_scale.fill_(best)
        self.model.train()
        self.log({"step": 0, "scale_search_best": best, "scores": scores})
        return best

    # --- mined hard negatives ----------------------------------------------------------------
    @torch.no_grad()
    def refresh_bank(self) -> None:
        """Encode every training window with the current model (float16 on CUDA, bfloat16 on CPUs
        with native bfloat16: only the ranking of the mined windows depends on it)."""
        started = time.time()
        encoder = TransformerEncoder(self.model, device=self.device)
        vecs = torch.from_numpy(encoder.encode(self.bank_fragments, batch_size=1024))
        self.model.train()
        if str(self.device).startswith("cuda"):
            dtype = torch.float16
        else:  # the mining product is the trainer's largest on CPU; bfloat16 where the CPU has it natively
            from dnaesa.runtime import cpu_has_fast_bf16

            dtype = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
        self.bank = vecs.to(self.device, dtype=dtype)
        self.bank_step = self.step
        self.log({"step": self.step, "bank_windows": len(self.bank_fragments), "bank_s": round(time.time() - started, 2)})

    @torch.no_grad()
    def mine(self, read_emb: torch.Tensor, spans: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each read, `mined_negatives` bank indices drawn from its `mine_pool` nearest windows
        that do not contain it (flattened, read by read)."""
        o = self.opts
        if self.bank is None or self.step - self.bank_step >= o.mine_every:
            self.refresh_bank()
        depth = min(o.mine_pool + 4, self.bank.shape[0])  # a read lies wholly inside 1-2 windows
        top = (read_emb.to(self.bank.dtype) @ self.bank.T).topk(depth, dim=1).indices.cpu().numpy()
        win = self.bank_windows[top]  # (reads, depth, 3): each read against its own hits only
        contains = ((win[..., 0] == spans[:, None, 0]) & (win[..., 1] <= spans[:, None, 1])
                    & (win[..., 1] + o.fragment_len >= spans[:, None, 2]))
        picked = []
        for row, bad in zip(top, contains):
            pool = row[~bad][: o.mine_pool]
            picked.append(rng.choice(pool, size=min(o.mined_negatives, len(pool)), replace=False))
        return np.concatenate(picked)

    # --- the loop ----------------------------------------------------------------------------
    def train_step(self) -> tuple[float, float]:
        o = self.opts
        rng = np.random.Generator(np.random.PCG64([o.seed, self.step]))
        frags, reads, mask, spans = self.sampler.located_batch(o.batch_size, o.extra_negatives, rng,
                                                               o.neighbour_negatives, with_spans=True)
        self.model.train()
        cuda = str(self.device).startswith("cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and o.autocast):
            read_emb = self.model.embed(reads, self.tokenizer)
            if o.mined_negatives:
                mined = self.mine(read_emb.detach(), spans, rng)
                frags = frags + [self.bank_fragments[j] for j in mined]
                mask = np.concatenate([mask, containment_mask(spans, self.bank_windows[mined, :2], o.fragment_len)], 1)
            frag_emb = self.model.embed(frags, self.tokenizer)
        read_emb, frag_emb = read_emb.float(), frag_emb.float()
        mask = torch.from_numpy(mask).to(self.device)
        loss = self.loss(read_emb, frag_emb, mask)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.model.parameters()) + list(self.loss.parameters()), o.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.item(), self.loss.accuracy(read_emb.detach(), frag_emb.detach(), mask)

    def fit(self, time_limit: float = 0.0) -> dict[str, float]:
        """Train to `opts.steps`, or until `time_limit` seconds of training have passed (0 = no
        limit; the run then stops at a step boundary with an evaluation and a checkpoint, and
        `--resume` continues it)."""
        o = self.opts
        t0 = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        self.model.train()
        metrics: dict[str, float] = {}
        if self.step == 0 and self.evaluators:
            metrics = self.evaluate()  # the count sketch itself (step 0, scales as configured)
        if self.step == 0 and self.opts.scale_search:
            self.search_scale()
            if self.evaluators:
                self.best = -1.0  # the searched start competes for best/ from here on
                metrics = self.evaluate()
        bar = tqdm(total=o.steps, initial=self.step, desc="train", dynamic_ncols=True)
        started = time.time()
        while self.step < o.steps:
            if time_limit and time.time() - t0 > time_limit:
                self.log({"step": self.step, "stopped": "time_limit", "elapsed_s": round(time.time() - started, 1)})
                if self.evaluators and self.step % o.eval_every:
                    metrics = self.evaluate()
                if self.step % o.checkpoint_every:
                    self.save_checkpoint()
                break
            loss, acc = self.train_step()
            bar.update(1)
            postfix = {"loss": f"{loss:.3f}", "acc": f"{acc:.2f}", "t": f"{self.loss.temperature:.3f}"}
            if self.step % o.log_every == 0:
                record = {"step": self.step, "loss": loss, "acc": acc, "lr": self.scheduler.get_last_lr()[0],
                          "elapsed_s": round(time.time() - started, 1)}
                if self.model.spaced_scale is not None:
                    record["spaced_scale"] = [round(x, 4) for x in self.model.spaced_scale.tolist()]
                self.log(record)
            if self.evaluators and (self.step % o.eval_every == 0 or self.step == o.steps):
                metrics = self.evaluate()
                postfix["recall"] = f"{metrics.get('primary', 0):.3f}"
            bar.set_postfix(postfix)
            if self.step % o.checkpoint_every == 0 or self.step == o.steps:
                self.save_checkpoint()
        bar.close()
        TransformerEncoder(self.model, device=self.device).save_pretrained(self.out / "model")
        return metrics


def write_checkpoint(trainer, encoder) -> None:
    """OUT/checkpoint of a trainer (its `out`, `step`, `best`, `optimizer`, `scheduler`, `loss` and
    `opts`): the model saved by `encoder.save_pretrained` and the trainer's state, written to a
    temporary folder first and renamed into place, so an interruption leaves the last one whole."""
    tmp = trainer.out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    encoder.save_pretrained(tmp)
    torch.save({"step": trainer.step, "best": trainer.best, "optimizer": trainer.optimizer.state_dict(),
                "scheduler": trainer.scheduler.state_dict(), "loss": trainer.loss.state_dict(),
                "options": asdict(trainer.opts)}, tmp / "trainer_state.pt")
    final = trainer.out / "checkpoint"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def read_trainer_state(checkpoint: Path, device: str) -> dict:
    """The trainer state `write_checkpoint` saved in `checkpoint`."""
    return torch.load(checkpoint / "trainer_state.pt", map_location=device, weights_only=False)


def run_training(args, load_options, make_trainer) -> int:
    """The command line's run of a trainer: options from `load_options(config, steps, threads)`, a
    trainer from `make_trainer(opts, out, device)`; refuses to overwrite OUT/checkpoint without
    --resume; a bad option or input is one error line, exit 2."""
    from dnaesa.runtime import resolve_device

    try:
        opts = load_options(args.config, steps=args.steps, threads=args.threads)
        torch.set_num_threads(opts.threads)
        out = Path(args.out)
        if (out / "checkpoint").exists() and not args.resume:
            print(f"error: {out}/checkpoint exists; pass --resume to continue it or choose a new --out",
                  file=sys.stderr)
            return 2
        trainer = make_trainer(opts, out, resolve_device(args.device))
        if args.resume and trainer.resume():
            print(f"resumed from {out}/checkpoint at step {trainer.step}", file=sys.stderr)
        metrics = trainer.fit(time_limit=args.time_limit)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items())
    print(f"trained {trainer.step} steps -> {out}/model (best: {out}/best) {summary}", file=sys.stderr)
    return 0
