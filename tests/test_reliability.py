"""What a hostile user tries (issue 8): outputs that are devices, links, FIFOs, folders or inputs;
operating-system errors; names SAM forbids; long reads; dying workers; signals; stale temporaries.

Each test failed before its fix. Destructive cases run in temporary folders; device files are
stood in for by a FIFO and a symlink (no root needed)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pysam
import pytest

from dnaesa import compiled
from dnaesa.cli import main
from dnaesa.simulate import simulate_reads, write_fastq

PY = [sys.executable, "-m", "dnaesa"]


def _stderr_lines(text: str) -> list[str]:
    """A child run's stderr lines, less the one warning of an install without a C compiler
    (`compiled.MISSING_WARNING`, tested in test_model_sketch_compiled.py), which comes first."""
    return [line for line in text.strip().splitlines() if not line.startswith(compiled.MISSING_WARNING)]


@pytest.fixture()
def run(tmp_path_factory, lambda_ref, capsys):
    """main(["align", reads, ref, ...]) with the shared k-mer index -> (exit code, stderr lines)."""
    index = ["--encoder", "kmer", "--device", "cpu", "--index", str(tmp_path_factory.getbasetemp() / "rel.idx")]

    def align(reads, *extra: str, ref=None):
        code = main(["-q", "align", str(reads), str(ref or lambda_ref), *map(str, extra), *index])
        return code, capsys.readouterr().err.strip().splitlines()

    return align


@pytest.fixture(scope="module")
def reads(tmp_path_factory, lambda_contigs) -> Path:
    path = tmp_path_factory.mktemp("reads") / "reads.fq"
    write_fastq(simulate_reads(lambda_contigs, 50, 150, seed=5), path)
    return path


def _one_error(code, err, *words):
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("dnaesa: error: "), err
    for word in words:
        assert word in err[0], err


def _records(path) -> int:
    with pysam.AlignmentFile(str(path), check_sq=False) as fh:
        return sum(1 for _ in fh)


# --- item 2: devices, links, FIFOs and inputs are never replaced -------------------------------

def test_symlink_output_writes_its_target_and_stays_a_link(tmp_path, run, reads):
    link = tmp_path / "link.sam"
    link.symlink_to(tmp_path / "target.sam")
    code, err = run(reads, "-o", link)
    assert code == 0, err
    assert link.is_symlink() and _records(tmp_path / "target.sam") == 50


def test_fifo_output_is_written_through(tmp_path, lambda_ref, reads):
    fifo = tmp_path / "out.sam"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    proc = subprocess.run([*PY, "-q", "align", str(reads), str(lambda_ref), "--encoder", "kmer", "-o", str(fifo),
                           "--index", str(tmp_path / "idx")], capture_output=True, text=True, timeout=120)
    text = reader.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, proc.stderr
    assert fifo.is_fifo(), "the FIFO is still a FIFO"
    assert sum(1 for line in text.splitlines() if not line.startswith("@")) == 50


@pytest.mark.parametrize("which", ["reads", "ref"])
def test_output_that_is_an_input_is_refused(tmp_path, run, reads, lambda_ref, which):
    target = reads if which == "reads" else lambda_ref
    before = target.read_bytes()
    code, err = run(reads, "-o", target)
    _one_error(code, err, "is one of the inputs")
    assert target.read_bytes() == before


# --- item 7: operating-system errors are one line, exit 2 --------------------------------------

def test_output_in_missing_folder(tmp_path, run, reads):
    _one_error(*run(reads, "-o", tmp_path / "nope" / "x.sam"), "no folder")


def test_output_is_a_directory(tmp_path, run, reads):
    _one_error(*run(reads, "-o", tmp_path), "is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_in_read_only_folder(tmp_path, run, reads):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    _one_error(*run(reads, "-o", folder / "x.sam"), "not writable")


def test_negative_threads_is_a_usage_error(tmp_path, reads, lambda_ref, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["align", str(reads), str(lambda_ref), "-t", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and err[0].startswith("dnaesa: error: ") and "at least 1" in err[0]


def test_failing_final_write_leaves_no_temporary(tmp_path, monkeypatch):
    """A full disk at the last flush: one OutputError, nothing left (item 7's hidden .tmp files)."""
    from dnaesa.errors import OutputError
    from dnaesa.io.sam import SamWriter

    writer = SamWriter(str(tmp_path / "x.sam"), [("c", 10)], "cl")
    writer.write_text("r\t4\t*\t0\t0\t*\t*\t0\t0\tACGT\t*\n")

    def full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer._text, "close", full)
    with pytest.raises(OutputError, match="No space left"):
        writer.close()
    assert os.listdir(tmp_path) == []


# --- item 8: names SAM forbids -------------------------------------------------------------------

def test_read_name_over_254_characters(tmp_path, run):
    reads = tmp_path / "r.fq"
    reads.write_text(f"@{'n' * 255}\nACGTACGTAC\n+\nIIIIIIIIII\n")
    _one_error(*run(reads, "-o", tmp_path / "o.sam"), "r.fq: record 1", "254")
    assert not (tmp_path / "o.sam").exists()


@pytest.mark.parametrize("name", ["*", "=x", "a,b", "c{1}"])
def test_contig_name_sam_forbids(tmp_path, run, reads, name):
    ref = tmp_path / "ref.fa"
    ref.write_text(f">ok\n{'ACGT' * 100}\n>{name}\n{'ACGT' * 100}\n")
    _one_error(*run(reads, "-o", tmp_path / "o.sam", ref=ref), "ref.fa: record 2", "contig name")


def test_mate_suffix_is_dropped(tmp_path, run):
    reads = tmp_path / "r.fq"
    reads.write_text("@pair7/1\nACGTACGTAC\n+\nIIIIIIIIII\n@pair7/2\nACGTACGTAC\n+\nIIIIIIIIII\n")
    code, err = run(reads, "-o", tmp_path / "o.sam")
    assert code == 0, err
    with pysam.AlignmentFile(str(tmp_path / "o.sam"), check_sq=False) as fh:
        assert [r.query_name for r in fh] == ["pair7", "pair7"]


# --- item 9: output formats by name --------------------------------------------------------------

@pytest.mark.parametrize("name, mode", [("x.BAM", "rb"), ("x.cram", "rc"), ("x.sam.gz", "r")])
def test_output_format_follows_the_name(tmp_path, run, reads, name, mode):
    code, err = run(reads, "-o", tmp_path / name)
    assert code == 0, err
    raw = (tmp_path / name).read_bytes()
    assert raw[:2] == b"\x1f\x8b" or raw[:4] == b"CRAM", "compressed, not plain SAM"
    assert _records(tmp_path / name) == 50
    if name != "x.sam.gz":
        assert any(p.name.startswith(name + ".") for p in tmp_path.iterdir()), "indexed"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporaries left"


def test_unsupported_compression_is_refused(tmp_path, run, reads):
    _one_error(*run(reads, "-o", tmp_path / "x.sam.bz2"), "bz2")
    assert not (tmp_path / "x.sam.bz2").exists()


# --- item 10: -q after the subcommand ------------------------------------------------------------

def test_quiet_after_the_subcommand(tmp_path, lambda_ref, reads, capsys):
    code = main(["align", "-q", str(reads), str(lambda_ref), "--encoder", "kmer", "-o", str(tmp_path / "o.sam"),
                 "--index", str(tmp_path / "idx")])
    assert code == 0 and capsys.readouterr().err == ""


# --- item 4: long reads --------------------------------------------------------------------------

def test_read_of_40_kb_aligns(lambda_contigs):
    """parasail's 16-bit DP overflowed from ~33 kb (a NULL CIGAR, then a segfault)."""
    from dnaesa.align.refine import Candidate, Refiner
    from dnaesa.options import MapOptions
    from dnaesa.reference import Reference

    name, seq = lambda_contigs[0]
    read = list(seq[2_000:42_000])
    for i in range(0, len(read), 97):
        read[i] = "ACGT"[("ACGT".index(read[i]) + 1) % 4]
    reference = Reference("lambda", [name], [seq])
    hits = Refiner(reference, MapOptions()).align("".join(read), [Candidate(0, 0, len(seq), None)])
    assert hits and hits[0].ref_start == 2_000 and hits[0].cigar_string == "40000M"
    assert hits[0].nm == len(range(0, 40_000, 97))


# --- items 5 and 11: dying workers, signals, stale temporaries -----------------------------------

@pytest.fixture(scope="module")
def many_reads(tmp_path_factory, lambda_contigs) -> Path:
    path = tmp_path_factory.mktemp("many") / "many.fq"
    write_fastq(simulate_reads(lambda_contigs, 40_000, 150, seed=6), path)
    return path


#: `python -m dnaesa` with Ctrl-C's default handling, as at a terminal: a process started in the
#: background by a non-interactive shell (`cmd &`, as CI jobs may be) inherits SIGINT ignored,
#: and Python then leaves it ignored
PY_INTERACTIVE = [sys.executable, "-c", "import runpy, signal, sys; signal.signal(signal.SIGINT, "
                  "signal.default_int_handler); sys.argv[0] = 'dnaesa'; runpy.run_module('dnaesa', "
                  "run_name='__main__', alter_sys=True)"]


def _start(tmp_path, lambda_ref, many_reads, out):
    index = tmp_path.parent / "signals.idx"
    subprocess.run([*PY, "-q", "index", str(lambda_ref), "--encoder", "kmer", "--index", str(index)], check=True)
    return subprocess.Popen([*PY_INTERACTIVE, "-q", "align", str(many_reads), str(lambda_ref), "--encoder", "kmer", "-t", "2",
                             "--batch-size", "512", "-o", str(out), "--index", str(index)],
                            stderr=subprocess.PIPE, text=True)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def _wait_for_workers(proc) -> list[int]:
    for _ in range(200):
        kids = _children(proc.pid)
        if len(kids) >= 2:
            return kids
        time.sleep(0.05)
    raise AssertionError("no workers started")


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.7, 1.2])
def test_killed_worker_stops_the_run(tmp_path, lambda_ref, many_reads, delay):
    """At any moment: a worker killed while it reads a task or writes a result holds a pool
    queue's lock for good, and `Pool.terminate()` used to wait on it forever."""
    out = tmp_path / "o.bam"
    proc = _start(tmp_path, lambda_ref, many_reads, out)
    worker = _wait_for_workers(proc)[0]
    time.sleep(delay)
    os.kill(worker, signal.SIGKILL)
    err = _stderr_lines(proc.communicate(timeout=300)[1])
    assert proc.returncode == 2 and len(err) == 1 and "worker process died" in err[0], err
    assert not out.exists() and not list(tmp_path.glob(".o.bam*"))


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_quietly_without_output(tmp_path, lambda_ref, many_reads, sig, code):
    out = tmp_path / "o.bam"
    proc = _start(tmp_path, lambda_ref, many_reads, out)
    workers = _wait_for_workers(proc)
    for pid in [proc.pid, *workers] if sig == signal.SIGINT else [proc.pid]:  # Ctrl-C reaches the group
        os.kill(pid, sig)
    err = _stderr_lines(proc.communicate(timeout=300)[1])
    assert proc.returncode == code and len(err) == 1, err
    assert not out.exists() and not list(tmp_path.glob(".o.bam*"))


def test_stale_temporary_of_a_dead_run_is_removed(tmp_path, run, reads):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".o.sam.{dead.pid}.0123abcd.tmp"
    stale.write_text("partial")
    other = tmp_path / f".o.sam.{os.getppid()}.0123abcd.tmp"  # a live process's: kept
    other.write_text("in use")
    code, err = run(reads, "-o", tmp_path / "o.sam")
    assert code == 0, err
    assert not stale.exists() and other.exists()


def test_workers_die_with_a_killed_main_process(tmp_path, lambda_ref, many_reads):
    proc = _start(tmp_path, lambda_ref, many_reads, tmp_path / "o.sam")
    workers = _wait_for_workers(proc)
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in workers):
        time.sleep(0.1)
    assert all(not os.path.exists(f"/proc/{pid}") or _state(pid) == "Z" for pid in workers), "orphaned workers"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
