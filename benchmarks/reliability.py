"""Every bad input and fault of issue 8, tried against the installed dnaesa: a Markdown table.

    python benchmarks/reliability.py [--workdir DIR] > table.md

Each case runs in a fresh folder holding the lambda reference (`ref.fa.gz`, 1 contig), 1,000
example reads (`reads.fq.gz`) and 40,000 simulated reads (`many.fq`, for the faults that need a
run long enough to interrupt). The table says what the case did, the exit status, the first line
dnaesa wrote on stderr and what was left in the folder (hidden temporaries included) or checked.
Cases that need root (a full tmpfs disk, /dev/null) are marked skipped without it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
D = f"{sys.executable} -m dnaesa"
KMER = "--encoder kmer"

#: (case, shell commands run in the case's folder; `$D` is dnaesa; the last line printed is the check)
CASES: list[tuple[str, str]] = [
    ("--index on a folder that is not an index", "mkdir v; echo x > v/keep; $D -q index ref.fa.gz --index v; echo rc=$?; ls v"),
    ("--index . (the current folder)", "$D -q index ref.fa.gz --index .; echo rc=$?; ls | tr '\\n' ' '"),
    ("--index is a file", "$D -q index ref.fa.gz --index reads.fq.gz; echo rc=$?; ls | tr '\\n' ' '"),
    ("index folder mode under umask 022", "umask 022; $D -q index ref.fa.gz --index idx; echo rc=$?; stat -c %A idx"),
    ("one shard byte changed", "$D -q index ref.fa.gz $KMER --index idx; f=$(ls idx/shard* | head -1); "
     "printf '\\x7f' | dd of=$f bs=1 seek=2000 conv=notrunc 2>/dev/null; "
     "$D -q align reads.fq.gz ref.fa.gz $KMER --index idx -o o.sam; echo rc=$?; ls -A | tr '\\n' ' '"),
    ("-o /dev/null (as root)", "[ $(id -u) = 0 ] || { echo skipped: needs root; exit; }; "
     "$D -q align reads.fq.gz ref.fa.gz -o /dev/null; echo rc=$?; stat -c %F /dev/null"),
    ("-o a symlink to a new file", "ln -s target.sam link.sam; $D -q align reads.fq.gz ref.fa.gz -o link.sam; echo rc=$?; "
     "stat -c %F link.sam; grep -vc '^@' target.sam"),
    ("-o a FIFO", "mkfifo f.sam; (grep -vc '^@' < f.sam > n &); $D -q align reads.fq.gz ref.fa.gz -o f.sam; echo rc=$?; "
     "sleep 1; echo \"$(stat -c %F f.sam), records $(cat n)\""),
    ("-o >(cmd) (a pipe)", "$D -q align reads.fq.gz ref.fa.gz -o >(grep -vc '^@' > n); echo rc=$?; sleep 1; echo records $(cat n)"),
    ("-o the reads file", "$D -q align reads.fq.gz ref.fa.gz -o reads.fq.gz; echo rc=$?; gzip -t reads.fq.gz && echo reads intact"),
    ("-o the reference", "$D -q align reads.fq.gz ref.fa.gz -o ref.fa.gz; echo rc=$?; gzip -t ref.fa.gz && echo ref intact"),
    ("-o into a missing folder", "$D -q align reads.fq.gz ref.fa.gz -o no/x.sam; echo rc=$?; ls -A | tr '\\n' ' '"),
    ("-o an existing folder", "mkdir d; $D -q align reads.fq.gz ref.fa.gz -o d; echo rc=$?; ls -A d | wc -l"),
    ("-o on a full disk (2 MB tmpfs, BAM)", "[ $(id -u) = 0 ] || { echo skipped: needs root; exit; }; mkdir m; "
     "mount -t tmpfs -o size=2m tmpfs m || { echo skipped: no mount; exit; }; "
     "$D -q align many.fq ref.fa.gz -o m/x.bam; echo rc=$?; echo left: $(ls -A m | wc -l) files; umount m"),
    ("-o on a full disk (2 MB tmpfs, SAM)", "[ $(id -u) = 0 ] || { echo skipped: needs root; exit; }; mkdir m; "
     "mount -t tmpfs -o size=2m tmpfs m || { echo skipped: no mount; exit; }; "
     "$D -q align many.fq ref.fa.gz -o m/x.sam; echo rc=$?; echo left: $(ls -A m | wc -l) files; umount m"),
    ("-t -1", "$D -q align reads.fq.gz ref.fa.gz -t -1 -o o.sam; echo rc=$?; ls -A | tr '\\n' ' '"),
    ("-t 64 on 2 cores", "$D align reads.fq.gz ref.fa.gz -t 64 -o o.sam; echo rc=$?; echo records $(grep -vc '^@' o.sam)"),
    ("read name of 255 characters", "printf '@%0255d\\nACGTACGTAC\\n+\\nIIIIIIIIII\\n' 0 > long.fq; "
     "$D -q align long.fq ref.fa.gz -o o.sam; echo rc=$?; ls -A | tr '\\n' ' '"),
    ("contig named '*'", "printf '>*\\n%s\\n' $(zcat ref.fa.gz | grep -v '>' | tr -d '\\n' | head -c 5000) > star.fa; "
     "$D -q align reads.fq.gz star.fa -o o.sam; echo rc=$?; ls -A | tr '\\n' ' '"),
    ("read of 40 kb", "zcat ref.fa.gz | grep -v '>' | tr -d '\\n' | cut -c 3001-43000 > s; "
     "printf '@long\\n%s\\n+\\n%s\\n' $(cat s) $(tr ACGTN IIIII < s) > long.fq; "
     "$D -q align long.fq ref.fa.gz -o o.sam; echo rc=$?; grep -v '^@' o.sam | cut -f 2-6"),
    ("-o x.cram / x.BAM / x.sam.gz", "for o in x.cram x.BAM x.sam.gz; do $D -q align reads.fq.gz ref.fa.gz -o $o || echo rc=$?; "
     "done; for o in x.cram x.BAM x.sam.gz; do echo \"$o $(samtools view -c $o 2>/dev/null) records\"; done | tr '\\n' ' '"),
    ("-o x.sam.bz2", "$D -q align reads.fq.gz ref.fa.gz -o x.sam.bz2; echo rc=$?; ls -A | tr '\\n' ' '"),
    ("-q after the subcommand; /1 /2 suffixes", "zcat reads.fq.gz | sed '1~4s/$/\\/1/' > r1.fq; $D align -q r1.fq ref.fa.gz -o o.sam; "
     "echo rc=$?; echo names ending in /1: $(grep -v '^@' o.sam | cut -f1 | grep -c '/1$')"),
    ("kill -9 of one worker", "$D -q align many.fq ref.fa.gz -t 2 -o o.bam & sleep 4; kill -9 $(pgrep -P $! | head -1); wait $!; "
     "echo rc=$?; ls -A | tr '\\n' ' '"),
    ("SIGTERM to the run", "$D -q align many.fq ref.fa.gz -t 2 -o o.bam & sleep 4; kill -TERM $!; wait $!; echo rc=$?; ls -A | tr '\\n' ' '"),
    ("Ctrl-C (SIGINT to the process group)", "set -m; $D -q align many.fq ref.fa.gz -t 2 -o o.bam & sleep 4; kill -INT -- -$!; wait $! 2>/dev/null; "
     "echo rc=$?; ls -A | tr '\\n' ' '"),
    ("kill -9 of the main process, then a new run", "$D -q align many.fq ref.fa.gz -t 2 -o o.sam & sleep 4; kill -9 $!; sleep 1; "
     "left=\"$(ls -A | grep -c tmp) temporaries and $(pgrep -fc 'dnaesa -q align [m]any' || true) dnaesa processes left\"; "
     "$D -q align reads.fq.gz ref.fa.gz -o o.sam; echo rc=$?; echo \"$left; next run: $(ls -A | tr '\\n' ' ')\""),
]


def prepare(folder: Path) -> None:
    shutil.copy(ROOT / "examples" / "lambda_phage.fa.gz", folder / "ref.fa.gz")
    shutil.copy(ROOT / "examples" / "reads.fq.gz", folder / "reads.fq.gz")
    subprocess.run(f"{D} simulate ref.fa.gz -n 40000 -l 150 -o many.fq --seed 3", shell=True, cwd=folder, check=True,
                   capture_output=True)
    subprocess.run(f"{D} -q index ref.fa.gz", shell=True, cwd=folder, check=True)


def run_case(template: Path, name: str, script: str) -> tuple[str, str, str]:
    folder = Path(tempfile.mkdtemp(prefix="case.", dir=template.parent))
    for item in template.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, folder / item.name)
    env = dict(os.environ, D=D, KMER=KMER)
    # Ctrl-C as in a terminal: SIGINT not ignored, even when this script runs in the background
    proc = subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    codes = [ln for ln in lines if ln.startswith("rc=")]
    stderr = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    shutil.rmtree(folder, ignore_errors=True)
    said = stderr[0] if stderr else ""
    if len(stderr) > 1:
        said += f" (+{len(stderr) - 1} more lines)"
    return ", ".join(c[3:] for c in codes) or "-", said, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="where the case folders go [a temporary folder]")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dnaesa-reliability.", dir=args.workdir))
    template = work / "template"
    template.mkdir()
    prepare(template)
    print("| case | exit | dnaesa's stderr | left / checked |")
    print("| --- | --- | --- | --- |")
    for name, script in CASES:
        code, said, check = run_case(template, name, script)
        cell = lambda text: text.replace("|", "\\|")[:200]  # noqa: E731
        print(f"| {name} | {code} | {cell(said)} | {cell(check)} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
