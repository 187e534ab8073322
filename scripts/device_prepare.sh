#!/usr/bin/env bash
# Prepare, on this machine, what a lent GPU machine needs for the device scripts: Python 3.12
# wheels of the packages it lacks (faiss-cpu, pysam, parasail, edlib; pyyaml and tqdm are on the
# H200 image already) in .whl/, the training/benchmark genomes in .data/ and this machine's bwa in
# .bin/ (all git-ignored through .git/info/exclude).
# A call carries at most 64 MiB with the tracked tree (15 MB), and .whl (38 MB) plus .data (22 MB)
# do not fit together: name single wheels. A call also removes, on a warm machine, the ignored
# paths it does not carry, so every call names all it needs. What the 2026-12-04 H200 lease ran:
#   run(command="bash scripts/device_compact.sh 170; export PYTHONPATH=/tmp/site:$PWD;
#                python3 benchmarks/gpu_search.py .data/human_grch37_chrX_0-70Mb.fa.gz --out $OUT/gpu_search.json",
#       timeout_s=560, carry=[".data", ".whl/faiss_cpu-*.whl", ".whl/pysam-*.whl", ".whl/edlib-*.whl"])   # 350 s
#   run(command="N_ECOLI=100000 bash scripts/device_throughput.sh", timeout_s=400,
#       carry=[".bin", ".data", ".whl/parasail-*.whl"])   # 196 s; the other wheels were still
#       # installed in /tmp/site from the first call (a warm machine): on a fresh one this fails
# (the wheel names in full: carry takes no patterns). Start-up and both calls used about 630 s of
# the 900 s lease. scripts/device_check.sh (the H100 runs of 2026-11-27) can take the rest.
# Prepared since for the next lease (issue 9, end to end at genome scale against bwa -t 16 on the
# same node): scripts/device_scale.sh, about 9 minutes at 300 Mb, resumable on a warm machine.
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
