"""Training the encoder: `python -m dnaesa train --ref A.fa [B.fa ...] --config configs/train/NAME.yaml --out DIR`.

`add_arguments(parser)` declares the subcommand's options; `run(args)` trains and returns an exit
code. Modules: `data` (regions, mutation, pair sampling with neighbour hard negatives and the
false-negative mask), `loss` (InfoNCE), `evaluate` (recall@K genome-wide on both strands), `loop`
(options, scale search, optimizer, checkpoints, resume), `export` (drop an all-zero weight table
before shipping), `benchmark` (recall and throughput against the count sketch).
"""
from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--ref", nargs="+", required=True, metavar="FASTA[:START-END]",
                      help="training sequence: FASTA files, optionally sliced (same slice of every contig)")
    data.add_argument("--eval-ref", nargs="*", default=[], metavar="FASTA[:START-END]",
                      help="held-out sequence for the recall evaluator (keep it out of --ref)")
    data.add_argument("--select-ref", nargs="*", default=[], metavar="FASTA[:START-END]",
                      help="training sequence on which the config's scale_search is scored (part of --ref)")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--config", required=True, help="training options, e.g. configs/train/default.yaml")
    run_group.add_argument("--out", required=True, help="output directory (checkpoint/, best/, model/, metrics.jsonl)")
    run_group.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if present")
    run_group.add_argument("--steps", type=int, default=None, help="override the config's total steps")
    run_group.add_argument("--time-limit", type=float, default=0.0, metavar="SECONDS",
                           help="stop training after this long (evaluate, checkpoint; resume later with --resume)")
    run_group.add_argument("--device", default="auto", help="auto, cpu or cuda")
    run_group.add_argument("--threads", type=int, default=None, help="torch CPU threads (config default 1)")


def run(args: argparse.Namespace) -> int:
    from dnaesa.train.loop import Trainer, TrainOptions, run_training

    return run_training(args, TrainOptions.from_yaml,
                        lambda opts, out, device: Trainer(opts, args.ref, args.eval_ref, out, device=device,
                                                          select_specs=args.select_ref))


def main(argv: list[str] | None = None) -> int:
    """`python -m dnaesa.train ...` until the CLI wires the subcommand."""
    parser = argparse.ArgumentParser(prog="dnaesa train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
