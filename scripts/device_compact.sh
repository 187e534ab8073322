#!/usr/bin/env bash
# The compact encoder's training on a lent GPU machine (issue 10), the first device call of a
# session (prepare with scripts/device_prepare.sh, then):
#   run(command="bash scripts/device_compact.sh 170", timeout_s=560, carry=[".data", ".whl/faiss...",
#       ".whl/pysam...", ".whl/edlib..."])   (see scripts/device_prepare.sh for what fits a call)
# Two runs side by side on CUDA for TRAIN_SECONDS each, each resuming from its folder where present:
#  - runs/gpu_compact_z: the shipped model's recipe (configs/train/compact_d256_z.yaml: linear map of
#    k-mer counts, PCA start, z-score loss) for its whole 1,500-step schedule and on, which the CPU
#    never finished (the shipped compact256 stopped at 1,000);
#  - runs/gpu_compact_tf: the compact Transformer (configs/train/compact_transformer_gpu.yaml), from
#    scratch; on the CPU it never left chance (MODEL.md).
# Then each run's best model is benchmarked against the training-free baselines (compact_bench, the
# 66 k-window human space of MODEL.md, 200 reads a cell; at most 150 s). Each run's best model,
# metrics and log come back in $OUT/RUN.tgz (`tar xzf` here); copy a winner's best/ into
# dnaesa/model/weights/ only after MODEL.md's tables say it wins.
# DEVICE=cpu dry-runs it here (a small TRAIN_SECONDS; STEPS caps the schedules; RUNS picks runs).
set -u
TRAIN_SECONDS=${1:-300}
. "$(dirname "$0")/device_env.sh"
D=${DATA:-.data}
STEPS=${STEPS:-}
(date -u; nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1; nproc
 python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())") | tee "$OUT/machine.txt"
RUNS=${RUNS:-"gpu_compact_z gpu_compact_tf"}
mkdir -p runs
# each run's numpy/BLAS threads: its share of the cores (unset, every process takes them all)
export OMP_NUM_THREADS=$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))
export OPENBLAS_NUM_THREADS=$OMP_NUM_THREADS MKL_NUM_THREADS=$OMP_NUM_THREADS
train() {  # NAME CONFIG
  timeout $((TRAIN_SECONDS + 200)) python3 -m dnaesa.train.compact \
    --ref $D/ecoli_k12_mg1655.fa.gz $D/human_grch37_chrX_0-70Mb.fa.gz:0-60000000 \
    --eval-ref $D/saureus_col.fa.gz $D/human_grch37_chrX_0-70Mb.fa.gz:60000000-62000000 \
    --config "$2" --out runs/$1 --resume --device "$DEVICE" --time-limit "$TRAIN_SECONDS" \
    ${STEPS:+--steps $STEPS} > runs/$1.log 2>&1
  echo "$1: training exit $?" >> "$OUT/train.txt"
}
declare -A CONFIG=([gpu_compact_z]=configs/train/compact_d256_z.yaml [gpu_compact_tf]=configs/train/compact_transformer_gpu.yaml)
for r in $RUNS; do train $r "${CONFIG[$r]}" & done
wait
for r in $RUNS; do echo "== $r"; tail -c 600 runs/$r.log; echo; done >> "$OUT/train.txt"
# what comes back (a lease returns files of at most 16 MB): each run's best model, metrics and log.
# Its checkpoint (the optimizer's state with it: 54 MB for gpu_compact_z) stays on that machine, so
# a later lease starts these runs afresh (2026-12-04: the whole folder in one archive was too large)
for r in $RUNS; do tar czf "$OUT/$r.tgz" runs/$r/best runs/$r/metrics.jsonl runs/$r.log 2>/dev/null; done
models=$(for r in $RUNS; do [ -f runs/$r/best/config.json ] && echo runs/$r/best; done)
if [ -n "$models" ]; then
  timeout 150 python3 -m dnaesa.train.compact_bench --dims 256 --model $models \
    --eval-ref $D/human_grch37_chrX_0-70Mb.fa.gz:60000000-62000000 \
    --decoys $D/human_grch37_chrX_0-70Mb.fa.gz:62000000-70000000 $D/human_grch37_chrX_0-70Mb.fa.gz:0-60000000 \
    --pca-ref $D/ecoli_k12_mg1655.fa.gz $D/human_grch37_chrX_0-70Mb.fa.gz:30000000-34000000 \
    --reads 200 --read-lens 250 --out "$OUT/bench_compact.jsonl" > "$OUT/bench_compact.log" 2>&1
  echo "bench exit $?" >> "$OUT/bench_compact.log"
fi
cat "$OUT/machine.txt" "$OUT/train.txt"; tail -n 30 "$OUT/bench_compact.log" 2>/dev/null
