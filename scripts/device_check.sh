#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (prepare with scripts/device_prepare.sh, see there):
#  1. resume the encoder's training run on CUDA for TRAIN_SECONDS (checkpoint and best model come
#     back in $OUT/runs_gpu.tgz: unpack it into runs/gpu here to resume next time);
#  2. the GPU tests; 3. encoder and search throughput, CPU and CUDA; 4. the same reads aligned with
#  --device cuda and --device cpu, compared record by record.
# DEVICE=cpu runs the same steps on a machine without a GPU (a dry run of this script).
set -u
TRAIN_SECONDS=${1:-400}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
if [ -d .whl ] && [ "$DEVICE" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1; python3 -c "import torch; print(torch.__version__, torch.cuda.is_available())") | tee "$OUT/machine.txt"
D=.data
timeout "$TRAIN_SECONDS" python3 -m dnaesa train \
  --ref $D/lambda_phage.fa.gz $D/ecoli_k12_mg1655.fa.gz $D/human_grch37_chrX_0-70Mb.fa.gz:0-60000000 \
  --eval-ref $D/saureus_col.fa.gz $D/human_grch37_chrX_0-70Mb.fa.gz:60000000-62000000 \
  --select-ref $D/ecoli_k12_mg1655.fa.gz:0-2000000 $D/human_grch37_chrX_0-70Mb.fa.gz:30000000-32000000 \
  --config configs/train/default.yaml --out runs/gpu --resume --device "$DEVICE" > "$OUT/train.log" 2>&1
echo "train exit $?" >> "$OUT/train.log"
tar czf "$OUT/runs_gpu.tgz" runs/gpu
python3 -m pytest -q -m gpu tests/ > "$OUT/gpu_tests.log" 2>&1; echo "gpu tests exit $?" >> "$OUT/gpu_tests.log"
python3 benchmarks/throughput.py $D/ecoli_k12_mg1655.fa.gz --device "$DEVICE" > "$OUT/throughput.txt" 2>&1
python3 -m dnaesa simulate $D/ecoli_k12_mg1655.fa.gz -n 20000 -l 250 -o /tmp/dev_reads.fq
for dev in "$DEVICE" cpu; do
  python3 -m dnaesa align /tmp/dev_reads.fq $D/ecoli_k12_mg1655.fa.gz --index /tmp/dev_idx --device $dev -t 16 -o /tmp/dev_$dev.sam 2>> "$OUT/align.log"
done
python3 - >> "$OUT/align.log" <<'PY'
import os, pysam
dev = os.environ.get("DEVICE", "cuda")
a = {r.query_name: (r.reference_start, r.is_reverse, r.cigarstring) for r in pysam.AlignmentFile(f"/tmp/dev_{dev}.sam")}
b = {r.query_name: (r.reference_start, r.is_reverse, r.cigarstring) for r in pysam.AlignmentFile("/tmp/dev_cpu.sam")}
print(f"{dev} vs cpu: {sum(a[k] == b[k] for k in b)} of {len(b)} records place identically")
PY
python3 -m dnaesa evaluate /tmp/dev_$DEVICE.sam /tmp/dev_cpu.sam >> "$OUT/align.log" 2>&1
cat "$OUT"/*.txt "$OUT"/align.log; tail -n 5 "$OUT/train.log" "$OUT/gpu_tests.log"
