"""Golden output, as strobealign's tests/run.sh: the bundled example reads aligned with the default
encoder give exactly the committed SAM (@PG, which holds the command line, left out).

When a change is meant to alter alignments, regenerate the file and say why in the commit:
`python -m dnaesa align examples/reads.fq.gz examples/lambda_phage.fa.gz -o x.sam` then
`grep -v '^@PG' x.sam | gzip -9n > tests/data/golden_example.sam.gz`."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from dnaesa.cli import main

ROOT = Path(__file__).parent.parent


def test_example_reads_give_the_golden_sam(tmp_path, capsys):
    ref = tmp_path / "lambda_phage.fa.gz"
    shutil.copy(ROOT / "examples" / "lambda_phage.fa.gz", ref)
    out = tmp_path / "out.sam"
    assert main(["-q", "align", str(ROOT / "examples" / "reads.fq.gz"), str(ref), "-o", str(out), "-t", "2"]) == 0
    got = [line for line in out.read_text().splitlines() if not line.startswith("@PG")]
    want = gzip.decompress((ROOT / "tests" / "data" / "golden_example.sam.gz").read_bytes()).decode().splitlines()
    assert len(got) == len(want)
    differ = [(w, g) for w, g in zip(want, got) if w != g]
    assert not differ, f"{len(differ)} records differ from the golden SAM; first: {differ[0]}"
