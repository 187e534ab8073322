#!/usr/bin/env bash
# Write the benchmark references (plain FASTA) from the project's genome collection.
#
#   benchmarks/prepare_genomes.sh SHARED_GENOMES_DIR OUTDIR
#
# SHARED_GENOMES_DIR holds the gzipped FASTA files below, all real public sequences (NCBI
# RefSeq/GenBank) taken from Debian's example-data packages
# (`apt-get download PACKAGE && dpkg-deb -x PACKAGE_*.deb DIR`):
#
#   ecoli_k12_mg1655.fa.gz          E. coli K-12 MG1655, 4,639,675 bp
#                                   ragout-examples: E.Coli/references/MG1655-K12.fasta.gz
#   saureus_col.fa.gz               S. aureus COL, NC_002951.2, ~2.8 Mbp
#                                   ragout-examples: S.Aureus/references/COL.fasta.gz
#   human_grch37_chrX_0-70Mb.fa.gz  H. sapiens GRCh37 chrX (NC_000023.10), first 69,999,930 bp
#                                   smalt-examples: test/data/hs37chrXtrunc.fa.gz
#
# Written to OUTDIR:
#   ecoli_k12.fa                 the E. coli K-12 MG1655 chromosome
#   saureus_col.fa               the S. aureus COL chromosome
#   human_chrX_60-70Mb.fa        held-out slice: the LAST 10 Mb of the 70 Mb piece, 0-based
#                                [60,000,000, 69,999,930), N runs kept; contig chrX_60000000
#   human_chrX_0-70Mb.fa         the whole 70 Mb piece; contig chrX
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 SHARED_GENOMES_DIR OUTDIR" >&2
    exit 2
fi
src=$1
out=$2
mkdir -p "$out"

# plain FASTA with a one-word header and 60 bases per line
rename_fasta() {  # NAME < fasta > fasta
    awk -v name="$1" 'NR == 1 { print ">" name; next } { print }'
}

zcat "$src/ecoli_k12_mg1655.fa.gz" | rename_fasta ecoli_k12_mg1655 > "$out/ecoli_k12.fa"
zcat "$src/saureus_col.fa.gz" | rename_fasta NC_002951.2 > "$out/saureus_col.fa"
zcat "$src/human_grch37_chrX_0-70Mb.fa.gz" | rename_fasta chrX > "$out/human_chrX_0-70Mb.fa"
samtools faidx "$out/human_chrX_0-70Mb.fa"
# samtools regions are 1-based inclusive: 60,000,001-69,999,930 = 0-based [60,000,000, 69,999,930)
samtools faidx "$out/human_chrX_0-70Mb.fa" chrX:60000001-69999930 \
    | rename_fasta chrX_60000000 > "$out/human_chrX_60-70Mb.fa"

for f in ecoli_k12 saureus_col human_chrX_60-70Mb human_chrX_0-70Mb; do
    samtools faidx "$out/$f.fa"
    awk -v f="$f" '{ printf "%s\t%s\t%d bp\n", f ".fa", $1, $2 }' "$out/$f.fa.fai"
done
