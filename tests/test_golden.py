"""Golden output, as strobealign's tests/run.sh: committed reads aligned with the default encoder
give exactly the committed SAM (@PG, which holds the command line, left out).

Two runs: the bundled lambda example reads, and 3,100 reads of the first 500 kb of E. coli K-12
MG1655 (`tests/data/ecoli_500k.fa.gz`): 2,000 simulated 250 bp reads (`dnaesa simulate -n 2000
-l 250 --seed 1`), 400 at 6% and 200 at 15% divergence (seeds 2, 3), 200 of 150 bp with 1%
indels (seed 4), and 300 made by hand: reads with N, chimeras, adapter tails, 20-80 bp
deletions, contig ends and random sequence. Together they take every branch of the per-read path
(exact, gap-free, parasail, widened window, divergent scores, local alignment, split reads).

When a change is meant to alter alignments, regenerate the files and say why in the commit:
`python -m dnaesa align READS REF -o x.sam -t 2` then `grep -v '^@PG' x.sam | gzip -9n > GOLDEN`
(lambda: examples/reads.fq.gz, examples/lambda_phage.fa.gz, tests/data/golden_example.sam.gz;
E. coli: tests/data/golden_ecoli_reads.fq.gz, tests/data/ecoli_500k.fa.gz, tests/data/golden_ecoli.sam.gz)."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from dnaesa.cli import main

ROOT = Path(__file__).parent.parent
DATA = ROOT / "tests" / "data"

RUNS = {
    "lambda": (ROOT / "examples" / "reads.fq.gz", ROOT / "examples" / "lambda_phage.fa.gz", DATA / "golden_example.sam.gz"),
    "ecoli": (DATA / "golden_ecoli_reads.fq.gz", DATA / "ecoli_500k.fa.gz", DATA / "golden_ecoli.sam.gz"),
}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_reads_give_the_golden_sam(run, tmp_path):
    reads, reference, golden = RUNS[run]
    ref = tmp_path / reference.name  # the index is built beside it, in tmp
    shutil.copy(reference, ref)
    out = tmp_path / "out.sam"
    assert main(["-q", "align", str(reads), str(ref), "-o", str(out), "-t", "2"]) == 0
    got = [line for line in out.read_text().splitlines() if not line.startswith("@PG")]
    want = gzip.decompress(golden.read_bytes()).decode().splitlines()
    assert len(got) == len(want)
    differ = [(w, g) for w, g in zip(want, got) if w != g]
    assert not differ, f"{len(differ)} records differ from the golden SAM; first: {differ[0]}"
