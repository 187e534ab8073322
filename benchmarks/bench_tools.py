"""The aligners under benchmark: their index and align commands, and per-command resource use.

Every command runs under GNU time (`/usr/bin/time`; without it, as a child reaped with `os.wait4`),
whose figures cover the command and the processes it waited for (bowtie2's wrapper and its aligner
binary): wall time, user+system CPU time and peak resident set size, for index building and
alignment separately.
dnaesa's index step is `dnaesa index` (into REF.dnaesa-index beside the tool's link to the
reference), which the timed `dnaesa align` then reuses.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

#: tools run when none is named; `--quick` drops the default-model dnaesa (slow on CPU)
ALL_TOOLS = ("dnaesa", "dnaesa-kmer", "dnaesa-divergent", "bwa", "bowtie2", "bowtie2-local", "minimap2")
QUICK_TOOLS = ("dnaesa-kmer", "bwa", "bowtie2", "minimap2")
DNAESA = [sys.executable, "-m", "dnaesa"]
#: GNU time reports the peak RSS of the tool itself; os.wait4 on a child of this Python process
#: would report at least this process's own RSS (the pre-exec copy counts)
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


@dataclass
class Usage:
    """Resources of one command; `rc` is its exit status."""

    wall_s: float
    cpu_s: float
    rss_mb: float
    rc: int


@dataclass(frozen=True)
class Tool:
    """An aligner: `index(ref, idx_dir, threads)` -> command; `align(ref, idx_dir, reads, sam,
    threads)` -> (command, whether stdout is the SAM). `ref` is the link in `idx_dir`."""

    name: str
    requires: str
    index_key: str
    index: Callable[[Path, Path, int], list[str]]
    align: Callable[[Path, Path, Path, Path, int], tuple[list[str], bool]]


def measure(cmd: list[str], log: Path, stdout: Path | None = None) -> Usage:
    """Run `cmd` (stderr to `log`, stdout to `stdout` or the log) and return its resource use."""
    cmd = [str(c) for c in cmd]
    with open(log, "ab") as err, open(stdout or os.devnull, "wb") as out:
        err.write(("$ " + " ".join(cmd) + "\n").encode())
        err.flush()
        if GNU_TIME:
            return _measure_gnu_time(cmd, err, out if stdout else err)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out if stdout else err, stderr=err)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Usage(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, proc.returncode)


def _measure_gnu_time(cmd: list[str], err: BinaryIO, out: BinaryIO) -> Usage:
    with tempfile.NamedTemporaryFile("r", suffix=".time") as usage:
        rc = subprocess.run([GNU_TIME, "-f", "%e %U %S %M", "-o", usage.name, *cmd],
                            stdout=out, stderr=err).returncode
        wall, user, system, rss_kb = usage.read().split("\n")[-2].split()
    return Usage(float(wall), float(user) + float(system), int(rss_kb) / 1024, rc)


def _bwa_index(ref: Path, idx: Path, threads: int) -> list[str]:
    return ["bwa", "index", "-p", idx / "ref", ref]


def _bwa_align(ref: Path, idx: Path, reads: Path, sam: Path, threads: int):
    return ["bwa", "mem", "-t", threads, idx / "ref", reads], True


def _bt2_index(ref: Path, idx: Path, threads: int) -> list[str]:
    return ["bowtie2-build", "--threads", threads, ref, idx / "ref"]


def _bt2_align(local: bool):
    def align(ref: Path, idx: Path, reads: Path, sam: Path, threads: int):
        mode = ["--local"] if local else []
        return ["bowtie2", *mode, "-p", threads, "-x", idx / "ref", "-U", reads, "-S", sam], False
    return align


def _mm2_index(ref: Path, idx: Path, threads: int) -> list[str]:
    return ["minimap2", "-x", "sr", "-t", threads, "-d", idx / "ref.mmi", ref]


def _mm2_align(ref: Path, idx: Path, reads: Path, sam: Path, threads: int):
    return ["minimap2", "-ax", "sr", "-t", threads, "-o", sam, idx / "ref.mmi", reads], False


def _dnaesa_index(extra: list[str]):
    def index(ref: Path, idx: Path, threads: int) -> list[str]:
        return [*DNAESA, "index", ref, "--threads", threads, *extra]
    return index


def _dnaesa_align(extra: list[str]):
    def align(ref: Path, idx: Path, reads: Path, sam: Path, threads: int):
        return [*DNAESA, "align", reads, ref, "-o", sam, "--threads", threads, *extra], False
    return align


def make_tools(dnaesa_args: list[str]) -> dict[str, Tool]:
    """All known tools; `dnaesa_args` are appended to every dnaesa command (index and align)."""
    kmer = ["--encoder", "kmer", *dnaesa_args]
    return {t.name: t for t in (
        Tool("dnaesa", "dnaesa", "dnaesa", _dnaesa_index(dnaesa_args), _dnaesa_align(dnaesa_args)),
        Tool("dnaesa-kmer", "dnaesa", "dnaesa-kmer", _dnaesa_index(kmer), _dnaesa_align(kmer)),
        # the default model with the scores for divergent reads (`-x divergent`), on dnaesa's index
        Tool("dnaesa-divergent", "dnaesa", "dnaesa", _dnaesa_index(dnaesa_args),
             _dnaesa_align([*dnaesa_args, "-x", "divergent"])),
        Tool("bwa", "bwa", "bwa", _bwa_index, _bwa_align),
        Tool("bowtie2", "bowtie2", "bowtie2", _bt2_index, _bt2_align(False)),
        Tool("bowtie2-local", "bowtie2", "bowtie2", _bt2_index, _bt2_align(True)),
        Tool("minimap2", "minimap2", "minimap2", _mm2_index, _mm2_align),
    )}


def dnaesa_align_available() -> bool:
    """Whether `python -m dnaesa align` exists in this checkout yet."""
    try:
        proc = subprocess.run([*DNAESA, "align", "--help"], capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def missing_reason(tool: Tool) -> str | None:
    """Why `tool` cannot run here, or None when it can."""
    if tool.requires == "dnaesa":
        if not dnaesa_align_available():
            return "`python -m dnaesa align` is not available in this checkout"
        return None
    if shutil.which(tool.requires) is None:
        return f"`{tool.requires}` is not on PATH"
    return None


def build_index(tool: Tool, ref: Path, idx: Path, threads: int, log: Path) -> Usage:
    """Create `idx` holding a link to `ref` and build the tool's index there."""
    idx.mkdir(parents=True, exist_ok=True)
    link = idx / ref.name
    if not link.exists():
        try:
            os.link(ref, link)
        except OSError:
            shutil.copyfile(ref, link)
    return measure(tool.index(link, idx, threads), log)


def align(tool: Tool, ref: Path, idx: Path, reads: Path, sam: Path, threads: int,
          log: Path) -> Usage:
    cmd, to_stdout = tool.align(idx / ref.name, idx, reads, sam, threads)
    return measure(cmd, log, stdout=sam if to_stdout else None)
