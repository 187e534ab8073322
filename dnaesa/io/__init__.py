"""Readers of FASTA/FASTQ (`fastx`) and the SAM/BAM writer (`sam`)."""
