"""What pruning candidates costs: accuracy and time for several candidate_ratio / max_candidates.

    python benchmarks/pruning.py REF.fa READS.fq INDEX_DIR

READS must carry their truth in their names (wgsim or `dnaesa simulate`). Prints a markdown row per
setting: candidate_ratio, max_candidates, % correct, wrong/mapped at MAPQ >= 20, alignment seconds.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dnaesa.evaluate import evaluate_sam  # noqa: E402
from dnaesa.pipeline import Aligner  # noqa: E402

SETTINGS = [(0.6, 16), (0.0, 16), (0.6, 4), (0.8, 16), (0.6, 2)]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    ref, reads, index = argv
    out = Path(tempfile.mkdtemp()) / "pruning.sam"
    for ratio, most in SETTINGS:
        aligner = Aligner(ref, index=index, threads=2, candidate_ratio=ratio, max_candidates=most)
        t0 = time.perf_counter()
        aligner.align_file(reads, str(out))
        seconds = time.perf_counter() - t0
        report = evaluate_sam(str(out))
        q20 = next(r for r in report.rows if r.threshold == 20)
        print(f"| {ratio} | {most} | {report.percent_correct:.2f} | {q20.wrong}/{q20.mapped} | {seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
