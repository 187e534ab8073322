#!/usr/bin/env bash
# Genome scale end to end on a lent GPU machine (issue 9): the SIZE stand-in of
# benchmarks/make_scale_reference.py (default 300 Mb; 3.1 Gb does not fit a lease: its bwa index
# alone takes about 1.75 h), its dnaesa index (`auto`: lean from 100 Mb) and bwa's, then N 250 bp
# reads from the held-out chrX 60-70 Mb aligned by dnaesa --device cuda and --device cpu and by
# bwa mem, all with THREADS threads. Prepare with scripts/device_prepare.sh, then:
#   run(command="bash scripts/device_scale.sh", carry=[".data", ".bin", ".whl/faiss_cpu-...whl",
#       ".whl/pysam-...whl", ".whl/parasail-...whl", ".whl/edlib-...whl"], timeout_s=580)
# (the wheel names in full). Each step appends to $OUT/scale_gpu.txt as it finishes; the bwa steps
# come last, so a run cut short still has dnaesa's; run again on the still-warm machine (within 30 s),
# it skips the steps whose files are there (/tmp survives between calls; the carried paths must be
# named again). Estimated for 300 Mb on 16 cores: stand-in 1 min, dnaesa index 1-2 min, aligning
# 1 min, bwa index 4-7 min. The stand-in always holds the real chrX 0-70 Mb, so SIZE below 7e7
# gives that alone. DEVICE=cpu SIZE=7e7 N=2000 THREADS=2 dry-runs it here (1.5 min).
set -u
SIZE=${SIZE:-3e8}
N=${N:-100000}
THREADS=${THREADS:-16}
. "$(dirname "$0")/device_env.sh"
BWA=${BWA:-$PWD/.bin/bwa}
S="$OUT/scale_gpu.txt"
(date -u; nvidia-smi --query-gpu=name --format=csv,noheader 2>&1; echo "cores $(nproc), stand-in $SIZE bases") >> "$S"
W=/tmp/scale_gpu; mkdir -p $W
[ -s $W/ref.fa.reads-region.fa ] || t "stand-in" python3 benchmarks/make_scale_reference.py \
  --real .data/human_grch37_chrX_0-70Mb.fa.gz --size "$SIZE" --out $W/ref.fa 2>> $W/log
[ -s $W/reads.fq ] || python3 -m dnaesa simulate $W/ref.fa.reads-region.fa -n "$N" -l 250 --seed 12 -o $W/reads.fq 2>> $W/log
[ -s $W/ref.idx/manifest.json ] || t "dnaesa index -t $THREADS" python3 -m dnaesa index $W/ref.fa --index $W/ref.idx \
  --device "$DEVICE" -t $THREADS 2>> $W/log
du -sh $W/ref.idx >> "$S"
for dev in "$DEVICE" cpu; do
  t "dnaesa align $N x 250 bp --device $dev -t $THREADS" python3 -m dnaesa align $W/reads.fq $W/ref.fa --index $W/ref.idx \
    --device $dev -t $THREADS -o $W/dnaesa.$dev.sam 2>> $W/log
  python3 -m dnaesa evaluate $W/dnaesa.$dev.sam 2>&1 | head -1 >> "$S"
done
[ -s $W/ref.fa.sa ] || t "bwa index" $BWA index $W/ref.fa 2>/dev/null
t "bwa mem -t $THREADS $N x 250 bp" sh -c "$BWA mem -t $THREADS $W/ref.fa $W/reads.fq > $W/bwa.sam 2>/dev/null"
python3 -m dnaesa evaluate $W/bwa.sam 2>&1 | head -1 >> "$S"
tail -n 3 $W/log >> "$S"
cat "$S"
