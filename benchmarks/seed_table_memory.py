"""Time and peak memory of making a lean index's seed table from its packed bases (issue 9).

    python benchmarks/seed_table_memory.py INDEX_DIR [--out DIR]

Loads the index's packed bases as `align` does (memory-mapped), runs `seeds.build`, saves the two
arrays to --out (a temporary folder by default, removed after), and prints the entries, seconds,
peak RSS of this process and whether the files equal the index's own seed files (md5).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from dnaesa.store import seeds, sequence_file  # noqa: E402


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("index")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    directory = Path(args.index)
    manifest = json.loads((directory / "manifest.json").read_text())
    packed = sequence_file.load_packed(directory, manifest["sequence"], [int(n) for _, n in manifest["contigs"]])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    t0 = time.time()
    keys, positions = seeds.build(packed, seeds.SEED_PARAMS)
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        np.save(Path(tmp) / "keys.npy", keys)
        np.save(Path(tmp) / "positions.npy", positions)
        seconds = time.time() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        files = manifest.get("seeds", {}).get("files", [])  # [keys, positions]
        same = {name: md5(Path(tmp) / f"{name}.npy") == md5(directory / own)
                for name, own in zip(("keys", "positions"), files)}
    print(f"{len(keys):,} entries, {seconds:.1f} s, peak RSS {peak:.2f} GB ({before:.2f} GB before the build); "
          f"the same as the index's files: {same or 'not compared (no seed files in the manifest)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
