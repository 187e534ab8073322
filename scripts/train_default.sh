#!/usr/bin/env bash
# Retrain the bundled default encoder from scratch and install it at dnaesa/model/weights/default/.
#
#   scripts/train_default.sh GENOME_DIR [OUT_DIR]
#
# GENOME_DIR holds lambda_phage.fa.gz, ecoli_k12_mg1655.fa.gz, human_grch37_chrX_0-70Mb.fa.gz and
# saureus_col.fa.gz (see ../shared/genomes/README.md for where they come from). Held out of training:
# the whole of S. aureus and the last 10 Mb of the human chrX piece (the evaluator uses 2 Mb of it).
# Re-running resumes from OUT_DIR/checkpoint. The model installed is OUT_DIR/best (best mean recall@16
# of the held-out evaluations); check it against the sketch with dnaesa.train.benchmark first.
set -euo pipefail
G=${1:?usage: scripts/train_default.sh GENOME_DIR [OUT_DIR]}
OUT=${2:-runs/default}
cd "$(dirname "$0")/.."
python -m dnaesa.train \
  --ref "$G/lambda_phage.fa.gz" "$G/ecoli_k12_mg1655.fa.gz" "$G/human_grch37_chrX_0-70Mb.fa.gz:0-60000000" \
  --eval-ref "$G/saureus_col.fa.gz" "$G/human_grch37_chrX_0-70Mb.fa.gz:60000000-62000000" \
  --config configs/train/default.yaml --out "$OUT" --resume "${@:3}"
python -m dnaesa.train.benchmark --model "$OUT/best" \
  --eval-ref "$G/saureus_col.fa.gz" "$G/human_grch37_chrX_0-70Mb.fa.gz:60000000-62000000" | tee "$OUT/benchmark.jsonl"
mkdir -p dnaesa/model/weights/default
cp "$OUT/best/config.json" "$OUT/best/model.safetensors" "$OUT/best/tokenizer.json" dnaesa/model/weights/default/
echo "installed $OUT/best as dnaesa/model/weights/default" >&2
