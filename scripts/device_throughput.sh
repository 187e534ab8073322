#!/usr/bin/env bash
# Alignment throughput at scale on a lent GPU machine, dnaesa --device cuda against --device cpu and
# bwa mem on the same machine, all with 16 threads (bwa is this machine's Debian binary, copied to
# .bin/bwa). Prepare with scripts/device_prepare.sh, then:
#   run(command="bash scripts/device_throughput.sh", carry=[".whl", ".data", ".bin"], timeout_s=330)
# Each step appends to $OUT/scale.txt as it finishes. N_ECOLI 250 bp reads on E. coli, then N_HUMAN
# 150 bp reads on the 70 Mb human chrX piece; between them (SCALING=1, the default) E. coli again on
# one thread, for the scaling target of issue 12. DEVICE=cpu dry-runs it here.
set -u
N_ECOLI=${N_ECOLI:-200000}
N_HUMAN=${N_HUMAN:-100000}
THREADS=${THREADS:-16}
. "$(dirname "$0")/device_env.sh"
BWA=${BWA:-$PWD/.bin/bwa}
S="$OUT/scale.txt"
(date -u; nvidia-smi --query-gpu=name --format=csv,noheader 2>&1; echo "cores $(nproc)") >> "$S"
W=/tmp/scale; mkdir -p $W
one_genome() {  # NAME FASTA N LEN
  local name=$1 fa=$2 n=$3 len=$4
  python3 -m dnaesa simulate "$fa" -n "$n" -l "$len" -o $W/$name.fq 2>/dev/null
  zcat "$fa" > $W/$name.fa
  t "$name dnaesa index" python3 -m dnaesa index $W/$name.fa --index $W/$name.idx --device "$DEVICE" -t $THREADS 2>> $W/log
  for dev in "$DEVICE" cpu; do
    t "$name dnaesa align $n x $len bp --device $dev" python3 -m dnaesa align $W/$name.fq $W/$name.fa --index $W/$name.idx \
      --device $dev -t $THREADS -o $W/$name.$dev.sam 2>> $W/log
    python3 -m dnaesa evaluate $W/$name.$dev.sam 2>&1 | head -1 >> "$S"
  done
  t "$name bwa index" $BWA index $W/$name.fa 2>/dev/null
  t "$name bwa mem -t $THREADS $n x $len bp" sh -c "$BWA mem -t $THREADS $W/$name.fa $W/$name.fq > $W/$name.bwa.sam 2>/dev/null"
  python3 -m dnaesa evaluate $W/$name.bwa.sam 2>&1 | head -1 >> "$S"
}
one_genome ecoli .data/ecoli_k12_mg1655.fa.gz "$N_ECOLI" 250
if [ "${SCALING:-1}" = 1 ]; then  # issue 12: THREADS threads at least 12x one thread (E. coli, --device cpu)
  t "ecoli dnaesa align $N_ECOLI x 250 bp --device cpu -t 1" python3 -m dnaesa align $W/ecoli.fq $W/ecoli.fa \
    --index $W/ecoli.idx --device cpu -t 1 -o $W/ecoli.t1.sam 2>> $W/log
fi
one_genome human70 "${HUMAN_FA:-.data/human_grch37_chrX_0-70Mb.fa.gz}" "$N_HUMAN" 150
tail -n 3 $W/log >> "$S"
cat "$S"
