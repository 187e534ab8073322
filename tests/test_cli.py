"""The command line: bad input gives one clear error line, exit 2 and no partial output; good input works."""
from __future__ import annotations

import gzip
import subprocess
import sys

import pysam
import pytest

from dnaesa.cli import main
from dnaesa.simulate import simulate_reads, write_fastq

GOOD = "@r1\nACGTACGTAC\n+\nIIIIIIIIII\n"


@pytest.fixture()
def index_args(tmp_path_factory, lambda_ref):
    return [str(lambda_ref), "--encoder", "kmer", "--device", "cpu", "--index", str(tmp_path_factory.getbasetemp() / "cli.idx")]


def _align(tmp_path, reads_text: str, index_args, capsys, name="reads.fq"):
    reads = tmp_path / name
    reads.write_text(reads_text)
    out = tmp_path / "out.sam"
    code = main(["-q", "align", str(reads), *index_args[:1], "-o", str(out), *index_args[1:]])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err, out


@pytest.mark.parametrize("text, where, what", [
    (GOOD + "@r2\nACGTACGT\n+\n", "record 2 (r2)", "truncated"),
    (GOOD + "@r2\nACGTACGT\n+\nIIIIIII\n", "record 2 (r2)", "quality"),
    (GOOD + "@r2\nACGT.CGT\n+\nIIIIIIII\n", "record 2 (r2)", "illegal"),
    (GOOD + "r2\nACGT\n+\nIIII\n", "record 2", ""),
])
def test_bad_reads_one_error_line_exit_2_no_output(tmp_path, index_args, capsys, text, where, what):
    code, err, out = _align(tmp_path, text, index_args, capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("dnaesa: error: ")
    assert "reads.fq" in err[0] and where in err[0] and what in err[0].lower()
    assert not out.exists()
    assert not list(tmp_path.glob(".out.sam*")), "no temporary output left behind"


def test_missing_reads_file(tmp_path, index_args, capsys):
    code = main(["-q", "align", str(tmp_path / "nope.fq"), *index_args[:1], "-o", str(tmp_path / "o.sam"), *index_args[1:]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope.fq" in err[0] and "no such file" in err[0]
    assert not (tmp_path / "o.sam").exists()


def test_empty_reads_file_gives_header_only(tmp_path, index_args, capsys):
    code, err, out = _align(tmp_path, "", index_args, capsys)
    assert code == 0 and not err
    with pysam.AlignmentFile(str(out)) as sam:
        assert len(sam.header.to_dict()["SQ"]) == 1
        assert list(sam) == []


def test_duplicate_contig_names(tmp_path, capsys):
    ref = tmp_path / "dup.fa"
    ref.write_text(">a\nACGTACGTACGT\n>b\nACGTTTTT\n>a\nGGGG\n")
    reads = tmp_path / "r.fq"
    reads.write_text(GOOD)
    out = tmp_path / "o.sam"
    code = main(["-q", "align", str(reads), str(ref), "-o", str(out), "--encoder", "kmer", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "dup.fa" in err[0] and "record 3 (a)" in err[0] and "duplicate" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("flag, value, name", [("--top-k", "0", "top_k"), ("--prefilter-ratio", "1.5", "prefilter_ratio"),
                                              ("--prefilter-ratio", "-0.1", "prefilter_ratio"),
                                              ("--wide-below", "2", "wide_below"),
                                              ("--wide-candidates", "0", "wide_candidates")])
def test_bad_option_value(tmp_path, index_args, capsys, flag, value, name):
    code, err, out = _align(tmp_path, GOOD, index_args + [flag, value], capsys)
    assert code == 2 and len(err) == 1 and name in err[0] and not out.exists()


def test_lean_store_from_the_command_line(tmp_path, lambda_ref, capsys):
    """`dnaesa index --store lean`, then `align` against it: the example reads place as with the
    tiered store (the same SAM records), from an index a quarter of its size, besides its seeds
    (about 500 bytes a fragment, store/seeds.py)."""
    from pathlib import Path

    examples = Path(__file__).parent.parent / "examples"
    records, sizes = {}, {}
    for kind in ("tiered", "lean"):
        idx = tmp_path / kind
        assert main(["-q", "index", str(lambda_ref), "--index", str(idx), "--store", kind]) == 0
        out = tmp_path / f"{kind}.sam"
        assert main(["-q", "align", str(examples / "reads.fq.gz"), str(lambda_ref), "--index", str(idx), "-o", str(out),
                     "-t", "1"]) == 0
        records[kind] = [line for line in out.read_text().splitlines() if not line.startswith("@")]
        sizes[kind] = sum(p.stat().st_size for p in idx.iterdir() if not p.name.startswith("seed"))
    assert len(records["lean"]) == 1000 and records["lean"] == records["tiered"]
    assert sizes["lean"] < sizes["tiered"] / 3


def test_subprocess_align_stdin_and_summary(tmp_path, lambda_ref, lambda_contigs):
    """A real process: reads from stdin, SAM on stdout, the summary line on stderr, no traceback."""
    reads = simulate_reads(lambda_contigs, 40, 150, seed=2)
    fq = tmp_path / "r.fq"
    write_fastq(reads, fq)
    cmd = [sys.executable, "-m", "dnaesa", "align", "-", str(lambda_ref), "--encoder", "kmer", "--device", "cpu",
           "--index", str(tmp_path / "idx")]
    done = subprocess.run(cmd, stdin=open(fq), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stdout.splitlines() if not ln.startswith("@")]
    assert len(lines) == 40
    assert "40 reads, 40 mapped" in done.stderr
    bad = tmp_path / "bad.fq.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write(GOOD + "@r2\nACGT\n+\nII\n")
    out = tmp_path / "bad.bam"
    done = subprocess.run(cmd[:4] + [str(bad)] + cmd[5:] + ["-o", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("dnaesa: error: ")
    assert not out.exists()


def test_readme_example_command(tmp_path, capsys):
    """The README's first command, with the index and output redirected to tmp."""
    from pathlib import Path

    examples = Path(__file__).parent.parent / "examples"
    out = tmp_path / "example.sam"
    code = main(["align", str(examples / "reads.fq.gz"), str(examples / "lambda_phage.fa.gz"), "-o", str(out),
                 "--index", str(tmp_path / "idx")])
    assert code == 0
    assert "1000 reads, 1000 mapped" in capsys.readouterr().err
    from dnaesa.evaluate import evaluate_sam

    report = evaluate_sam(str(out))
    assert report.correct / report.total >= 0.99


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_damaged_index_one_error_line_exit_2_no_output(tmp_path, lambda_ref, capsys, damage):
    """Shard files are read only when the search matrix is built; a damaged one must still give one
    clear error line naming the index, exit 2 and no output file."""
    idx = tmp_path / "idx"
    assert main(["-q", "index", str(lambda_ref), "--encoder", "kmer", "--device", "cpu", "--index", str(idx)]) == 0
    shard = sorted(idx.glob("shard*.faiss"))[0]
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:1000])
    else:
        shard.unlink()
    capsys.readouterr()
    code, err, out = _align(tmp_path, GOOD, [str(lambda_ref), "--encoder", "kmer", "--device", "cpu", "--index", str(idx)],
                            capsys)
    assert code == 2 and len(err) == 1 and "rebuild" in err[0] and str(idx) in err[0] and not out.exists()


def test_explicit_index_takes_its_own_options_and_refuses_others(tmp_path, lambda_ref, capsys):
    """As minimap2 reads k and w back from its index and strobealign refuses a mismatched one."""
    idx = tmp_path / "idx"
    reads = tmp_path / "r.fq"
    reads.write_text(GOOD)
    base = ["--encoder", "kmer", "--device", "cpu", "--index", str(idx)]
    assert main(["index", str(lambda_ref), "--max-read-len", "150", *base]) == 0
    capsys.readouterr()
    assert main(["align", str(reads), str(lambda_ref), "-o", str(tmp_path / "a.sam"), *base]) == 0
    assert "building" not in capsys.readouterr().err  # reused with max_read_len 150, its manifest's
    code = main(["-q", "align", str(reads), str(lambda_ref), "-o", str(tmp_path / "b.sam"), "--max-read-len", "200", *base])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--rebuild-index" in err[0] and "max_read_len" in err[0]
    assert not (tmp_path / "b.sam").exists()
    assert main(["-q", "align", str(reads), str(lambda_ref), "-o", str(tmp_path / "b.sam"), "--max-read-len", "200",
                 "--rebuild-index", *base]) == 0


@pytest.mark.parametrize("where, what", [("nodir/out.sam", "no folder"), ("idx", "is the --index folder"),
                                         ("lam.fa.dnaesa-index", "is the --index folder")])
def test_an_output_that_cannot_be_written_is_refused_before_the_index_is_built(tmp_path, lambda_ref, capsys, where,
                                                                               what):
    """An index can take an hour to build: a bad -o (a missing folder, the index folder itself,
    given or the default one) is one error line, exit 2, before any index is made."""
    import shutil

    ref = tmp_path / "lam.fa.gz"
    shutil.copy(lambda_ref, ref)
    reads = tmp_path / "r.fq"
    reads.write_text(GOOD)
    index = ["--index", str(tmp_path / "idx")] if where == "idx" else []
    if where == "lam.fa.dnaesa-index":
        ref = tmp_path / "lam.fa"
        ref.write_bytes(gzip.decompress((tmp_path / "lam.fa.gz").read_bytes()))
    code = main(["-q", "align", str(reads), str(ref), "-o", str(tmp_path / where), *index, "--encoder", "kmer"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and what in err[0], err
    assert not list(tmp_path.glob("*idx*")) and not list(tmp_path.glob("*dnaesa-index*"))
