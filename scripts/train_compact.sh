#!/usr/bin/env bash
# Train a compact encoder (issue 10; MODEL.md "Compact encoders") and benchmark it against the
# training-free baselines of the same D.
#
#   scripts/train_compact.sh GENOME_DIR [CONFIG] [OUT_DIR] [extra `python -m dnaesa.train.compact` options]
#
# Training sequence: E. coli K-12 and human chrX 0-60 Mb. Held out: S. aureus COL and human chrX
# 60-70 Mb (evaluated on 60-62 Mb; 62-70 Mb serve as decoy windows in the benchmark's search space).
# Re-running resumes from OUT_DIR/checkpoint (--resume). CPU: run under `nice`, one torch thread;
# CUDA: add --device cuda.
set -euo pipefail
G=${1:?usage: scripts/train_compact.sh GENOME_DIR [CONFIG] [OUT_DIR]}
CONFIG=${2:-configs/train/compact_d256.yaml}
OUT=${3:-runs/compact_d256}
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
python -m dnaesa.train.compact \
  --ref "$G/ecoli_k12_mg1655.fa.gz" "$G/human_grch37_chrX_0-70Mb.fa.gz:0-60000000" \
  --eval-ref "$G/saureus_col.fa.gz" "$G/human_grch37_chrX_0-70Mb.fa.gz:60000000-62000000" \
  --config "$CONFIG" --out "$OUT" --resume "${@:4}"
python -m dnaesa.train.compact_bench --dims 256 --bucket-ks 6 8 --model "$OUT/best" \
  --eval-ref "$G/saureus_col.fa.gz" "$G/human_grch37_chrX_0-70Mb.fa.gz:60000000-62000000" \
  --decoys "$G/human_grch37_chrX_0-70Mb.fa.gz:62000000-70000000" \
  --pca-ref "$G/ecoli_k12_mg1655.fa.gz" "$G/human_grch37_chrX_0-70Mb.fa.gz:30000000-34000000" \
  --reads 500 --read-lens 250 150 --out "$OUT/bench.jsonl"
