"""The compiled per-read kernels (`dnaesa.align.fast`, issue 12; on with DNAESA_NUMBA=1) give what
the pure path gives, and asked for without numba the aligner falls back to the pure path with one
warning line."""
from __future__ import annotations

import gzip
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dnaesa import compiled
from dnaesa.align import fast, refine
from dnaesa.dna import reverse_complement

ROOT = Path(__file__).parent.parent
DATA = ROOT / "tests" / "data"

needs_numba = pytest.mark.skipif(not fast.warm_up(force=True),
                                 reason=f"compiled kernels unavailable: {fast.UNAVAILABLE}")


def _mutated(rng: random.Random, seq: str, rate: float, alphabet: str) -> str:
    out = []
    for base in seq:
        r = rng.random()
        if r < 0.7 * rate:
            out.append(rng.choice(alphabet))
        elif r < 0.85 * rate:
            continue
        elif r < rate:
            out.append(base + rng.choice(alphabet))
        else:
            out.append(base)
    return "".join(out) or "A"


def _cases(n: int, seed: int):
    """Reads (exact, mutated or foreign; some with N) against windows (random, low-complexity,
    tandem repeats; some with N), of lengths around the 64-base blocks, with limits below the read."""
    rng = random.Random(seed)
    for _ in range(n):
        alphabet = rng.choice(["ACGT", "ACGT", "ACGT", "ACGTN", "AC", "A"])
        length = rng.choice([30, 63, 64, 65, 200, 500, 1782])
        window = "".join(rng.choice(alphabet) for _ in range(length))
        if rng.random() < 0.3:
            unit = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))
            window = (unit * (length // len(unit) + 1))[:length]
        qlen = rng.choice([10, 30, 63, 64, 65, 100, 129, 150, 250])
        if qlen < length and rng.random() < 0.7:
            at = rng.randrange(length - qlen + 1)
            query = _mutated(rng, window[at : at + qlen], rng.choice([0.0, 0.01, 0.05, 0.2]), alphabet)
        else:
            query = "".join(rng.choice(alphabet) for _ in range(qlen))
        if rng.random() < 0.5:
            query = reverse_complement(query)
        limit = min(rng.choice([0, 1, 3, 12, 25, 50, 64, 105]), len(query) - 1)
        yield query, window, limit, rng.random() < 0.5


@needs_numba
def test_compiled_infix_hits_equal_edlib():
    differ = [(q, w, k) for q, w, k, rev in _cases(1500, seed=12)
              if fast.infix_hits(q, w, k, rev) != refine._edlib_hits_pure(q, w, k, rev)]
    assert not differ, f"{len(differ)} of 1500 differ; first: {differ[0]}"


@needs_numba
def test_compiled_infix_hits_find_reads_in_ecoli():
    """Real windows: a read found where it was taken from, in both paths alike."""
    genome = "".join(gzip.open(DATA / "ecoli_500k.fa.gz", "rt").read().split("\n", 1)[1].split())
    rng = random.Random(3)
    for _ in range(200):
        at = rng.randrange(len(genome) - 2000)
        window = genome[at : at + 1782]
        read = _mutated(rng, window[700:950], 0.02, "ACGT")
        hits = fast.infix_hits(read, window, 25, False)
        assert hits == refine._edlib_hits_pure(read, window, 25, False)
        assert hits and abs(hits[0][1] - 700) <= 5


@needs_numba
def test_golden_sam_with_the_compiled_kernels(tmp_path, monkeypatch):
    """The E. coli golden run with the compiled kernels on (in this process and the forked
    workers) gives the same SAM."""
    monkeypatch.setattr(fast, "COMPILED", True)
    from dnaesa.cli import main

    ref = tmp_path / "ecoli_500k.fa.gz"
    shutil.copy(DATA / "ecoli_500k.fa.gz", ref)
    out = tmp_path / "out.sam"
    assert main(["-q", "align", str(DATA / "golden_ecoli_reads.fq.gz"), str(ref), "-o", str(out), "-t", "2"]) == 0
    got = [line for line in out.read_text().splitlines() if not line.startswith("@PG")]
    assert got == gzip.decompress((DATA / "golden_ecoli.sam.gz").read_bytes()).decode().splitlines()


def test_without_numba_one_warning_line_and_the_same_sam(tmp_path):
    """Kernels asked for, numba unimportable: the run succeeds, says so in one line, and writes
    the golden SAM."""
    ref = tmp_path / "lambda_phage.fa.gz"
    shutil.copy(ROOT / "examples" / "lambda_phage.fa.gz", ref)
    out = tmp_path / "out.sam"
    code = ("import sys; sys.modules['numba'] = None\n"
            "from dnaesa.cli import main\n"
            f"raise SystemExit(main(['-q', 'align', {str(ROOT / 'examples' / 'reads.fq.gz')!r}, {str(ref)!r}, "
            f"'-o', {str(out)!r}, '-t', '2']))")
    env = {**os.environ, fast.SWITCH: "1"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines()  # less an install without a C compiler's own line
             if line.strip() and not line.startswith(compiled.MISSING_WARNING)]
    assert len(lines) == 1 and "numba" in lines[0] and "pure Python" in lines[0], run.stderr
    got = [line for line in out.read_text().splitlines() if not line.startswith("@PG")]
    assert got == gzip.decompress((DATA / "golden_example.sam.gz").read_bytes()).decode().splitlines()
