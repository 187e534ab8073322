#!/usr/bin/env bash
# Prepare, on this machine, what a lent GPU machine needs for scripts/device_check.sh: Python 3.12
# wheels of the packages it lacks (faiss-cpu, pysam, parasail, edlib, pyyaml, tqdm) in .whl/ and the
# training/benchmark genomes in .data/ (both git-ignored through .git/info/exclude; ~60 MiB, under
# the device tool's 64 MiB limit). Then, with the device tool, first the compact encoder's training
# (issue 10; its two run folders start empty and come back in runs_compact.tgz to resume from):
#   run(command="bash scripts/device_compact.sh 300", timeout_s=590,
#       carry=[".whl", ".data", "runs/gpu_compact_z", "runs/gpu_compact_tf"])
# and, with what is left of the session's device time, one of:
#   run(command="bash scripts/device_check.sh 300", timeout_s=590,
#       carry=[".whl", ".data", "runs/gpu_table", "runs/gpu_conv", "runs/gpu_context"])   # resumes those runs
#   run(command="bash scripts/device_throughput.sh", carry=[".whl", ".data", ".bin"], timeout_s=370)
# (.bin/bwa: this machine's bwa, for the comparison on the same machine.) The 2026-11-27 H100 lease
# used about 440 s for the first and 290 s for the second, start-up included. The three run
# directories add ~3 MB: with .whl and .data that is close to the 64 MiB a call can carry.
#
#   scripts/device_prepare.sh GENOME_DIR     # the folder of ../shared/genomes/README.md
set -euo pipefail
G=${1:?usage: scripts/device_prepare.sh GENOME_DIR}
cd "$(dirname "$0")/.."
for p in /.whl/ /.data/ /.bin/; do grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude; done
mkdir -p .whl .data .bin
cp "$(command -v bwa)" .bin/ 2>/dev/null || echo "no bwa here: the bwa steps of device_throughput.sh will fail"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  faiss-cpu==1.15.1 pysam==0.24.1 parasail==1.3.4 edlib==1.3.9.post1 pyyaml==6.0.4 tqdm==4.70.1
cp "$G"/lambda_phage.fa.gz "$G"/ecoli_k12_mg1655.fa.gz "$G"/saureus_col.fa.gz "$G"/human_grch37_chrX_0-70Mb.fa.gz .data/
du -sh .whl .data
