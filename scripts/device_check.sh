#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (prepare with scripts/device_prepare.sh, see there):
#  1. three encoder training runs side by side on CUDA for TRAIN_SECONDS each, resuming from
#     runs/gpu_VARIANT/checkpoint where present: configs/train/mined_{table,conv,context}.yaml
#     (InfoNCE with mined genome-wide hard negatives). Logs, metrics, checkpoints and best models
#     come back in $OUT/runs_gpu.tgz: unpack it here (tar xzf) to resume next time;
#  2. the GPU tests; 3. encoder and search throughput, CPU and CUDA (sketch and spaced model);
#  4. the same reads aligned with --device cuda and --device cpu, compared record by record.
# DEVICE=cpu runs the same steps on a machine without a GPU (a dry run of this script; use a small
# TRAIN_SECONDS).
set -u
TRAIN_SECONDS=${1:-300}
VARIANTS=${VARIANTS:-"table conv context"}
NREADS=${NREADS:-20000}
. "$(dirname "$0")/device_env.sh"
(date -u; nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1; nproc
 python3 -c "import torch, transformers; print('torch', torch.__version__, torch.cuda.is_available(), 'transformers', transformers.__version__)") | tee "$OUT/machine.txt"
D=.data
mkdir -p runs
for v in $VARIANTS; do
  timeout $((TRAIN_SECONDS + 120)) python3 -m dnaesa train \
    --ref $D/lambda_phage.fa.gz $D/ecoli_k12_mg1655.fa.gz $D/human_grch37_chrX_0-70Mb.fa.gz:0-60000000 \
    --eval-ref $D/saureus_col.fa.gz $D/human_grch37_chrX_0-70Mb.fa.gz:60000000-62000000 \
    --config configs/train/mined_$v.yaml --out runs/gpu_$v --resume --device "$DEVICE" \
    --time-limit "$TRAIN_SECONDS" > runs/train_$v.log 2>&1 &
done
wait
for v in $VARIANTS; do echo "== $v"; tail -c 400 runs/train_$v.log; echo; done | tee "$OUT/train_tail.txt"
tar czf "$OUT/runs_gpu.tgz" runs/gpu_* runs/train_*.log
python3 -m pytest -q -m gpu tests/ > "$OUT/gpu_tests.log" 2>&1; echo "gpu tests exit $?" >> "$OUT/gpu_tests.log"
for m in default kmer; do
  python3 benchmarks/throughput.py $D/ecoli_k12_mg1655.fa.gz --model $m --device "$DEVICE" >> "$OUT/throughput.txt" 2>&1
done
python3 -m dnaesa simulate $D/ecoli_k12_mg1655.fa.gz -n "$NREADS" -l 250 -o /tmp/dev_reads.fq
for dev in "$DEVICE" cpu; do
  TIMEFORMAT="align --device $dev: wall %R s"
  { time python3 -m dnaesa align /tmp/dev_reads.fq $D/ecoli_k12_mg1655.fa.gz \
    --index /tmp/dev_idx_$dev --device $dev -t 16 -o /tmp/dev_$dev.sam 2>> "$OUT/align.log"; } 2>> "$OUT/align.log"
done
DEVICE=$DEVICE python3 - >> "$OUT/align.log" <<'PY'
import os, pysam
dev = os.environ.get("DEVICE", "cuda")
a = {r.query_name: (r.reference_start, r.is_reverse, r.cigarstring, r.mapping_quality) for r in pysam.AlignmentFile(f"/tmp/dev_{dev}.sam")}
b = {r.query_name: (r.reference_start, r.is_reverse, r.cigarstring, r.mapping_quality) for r in pysam.AlignmentFile("/tmp/dev_cpu.sam")}
print(f"{dev} vs cpu: {sum(a[k] == b[k] for k in b)} of {len(b)} records identical (position, strand, CIGAR, MAPQ)")
PY
python3 -m dnaesa evaluate /tmp/dev_$DEVICE.sam /tmp/dev_cpu.sam >> "$OUT/align.log" 2>&1
cat "$OUT"/machine.txt "$OUT"/throughput.txt "$OUT"/align.log; tail -n 5 "$OUT/gpu_tests.log"
