"""Tests of dnaesa.io.sam: records, header, BAM sorting/indexing, atomic output, read groups."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pysam
import pytest

from dnaesa.align.types import Alignment
from dnaesa.io.fastx import Read, read_reference
from dnaesa.io.sam import SamFormatter, SamWriter, parse_read_group

DATA = Path(__file__).parent / "data"
M, I, D, S = 0, 1, 2, 4


def revcomp(seq: str) -> str:
    return seq.translate(str.maketrans("ACGTN", "TGCAN"))[::-1]


@pytest.fixture(scope="module")
def lam() -> tuple[str, str]:
    return next(read_reference(str(DATA / "lambda_phage.fa.gz")))


def qual(n: int, offset: int = 0) -> str:
    return "".join(chr(33 + (i + offset) % 40) for i in range(n))


def cases(lam: tuple[str, str]) -> list[tuple[Read, Alignment | None, list[Alignment]]]:
    """Hand-built reads whose alignments are consistent with the lambda reference."""
    name, ref = lam

    def aln(start: int, end: int, reverse: bool, cigar: list, nm: int, md: str,
            **kw) -> Alignment:
        score = kw.pop("score", 90)
        return Alignment(name, 0, start, end, reverse, cigar, nm, md, score=score, **kw)

    clipped = Read("clip_fwd", "ACGTA" + ref[1000:1095], qual(100))
    deleted = Read("del_rev", revcomp(ref[2000:2050] + ref[2053:2103]), qual(100, 7))
    inserted = Read("ins_fwd", ref[3000:3040] + "ACG" + ref[3040:3080], qual(83, 3))
    second = aln(500, 600, True, [(M, 100)], 5, "100", score=60)
    return [
        (inserted, aln(3000, 3080, False, [(M, 40), (I, 3), (M, 40)], 3, "80", mapq=255), []),
        (clipped, aln(1000, 1095, False, [(S, 5), (M, 95)], 0, "95", sub_score=60, mapq=30),
         [second]),
        (deleted, aln(2000, 2103, True, [(M, 50), (D, 3), (M, 50)], 3,
                      f"50^{ref[2050:2053]}50", sub_score=None, mapq=60), []),
        (Read("unmapped_fq", "ACGTN", "IIII#"), None, []),
        (Read("unmapped_fa", "ACGT", None), None, []),
    ]


def write_all(path: str | None, lam: tuple[str, str], **kw) -> None:
    name, ref = lam
    with SamWriter(path, [(name, len(ref))], "dnaesa align\tref.fa reads.fq", **kw) as out:
        for read, alignment, secondary in cases(lam):
            out.write(read, alignment, secondary)


def check_records(records: list[pysam.AlignedSegment], lam: tuple[str, str]) -> None:
    name, ref = lam
    by_name = {(r.query_name, r.is_secondary): r for r in records}
    assert len(records) == 6
    for read, alignment, _ in cases(lam):
        rec = by_name[(read.name, False)]
        if alignment is None:
            assert (rec.flag, rec.reference_name, rec.reference_start) == (4, None, -1)
            assert (rec.mapping_quality, rec.cigarstring) == (0, None)
            assert rec.query_sequence == read.seq
            assert rec.qual == (read.qual or None)
            continue
        assert rec.flag == (16 if alignment.reverse else 0)
        assert (rec.reference_name, rec.reference_start) == (name, alignment.ref_start)
        assert rec.reference_end == alignment.ref_end
        assert rec.cigartuples == alignment.cigar
        assert rec.mapping_quality == min(alignment.mapq, 254)
        seq, qual_ = read.seq, read.qual
        if alignment.reverse:
            seq, qual_ = revcomp(seq), qual_[::-1]
        assert (rec.query_sequence, rec.qual) == (seq, qual_)
        assert rec.get_tag("NM") == alignment.nm and rec.get_tag("MD") == alignment.md
        assert rec.get_tag("AS") == alignment.score
        assert rec.has_tag("XS") == (alignment.sub_score is not None)
        # the MD tag rebuilds the reference: proves the hand-made alignments are consistent
        assert rec.get_reference_sequence().upper() == ref[alignment.ref_start : alignment.ref_end]
    secondary = by_name[("clip_fwd", True)]
    assert (secondary.flag, secondary.reference_start, secondary.mapping_quality) == (272, 500, 0)
    assert secondary.query_sequence is None and secondary.get_tag("AS") == 60


def test_sam_file(tmp_path: Path, lam: tuple[str, str]) -> None:
    path = str(tmp_path / "out.sam")
    write_all(path, lam, program_version="1.2.3")
    assert os.listdir(tmp_path) == ["out.sam"]
    with pysam.AlignmentFile(path, "r") as f:
        header = f.header.to_dict()
        records = list(f)
    assert header["HD"] == {"VN": "1.6", "SO": "unsorted"}
    assert header["SQ"] == [{"SN": lam[0], "LN": 48502}]
    assert header["PG"] == [{"ID": "dnaesa", "PN": "dnaesa", "VN": "1.2.3",
                             "CL": "dnaesa align ref.fa reads.fq"}]
    assert "RG" not in header
    assert [r.query_name for r in records] == [
        "ins_fwd", "clip_fwd", "clip_fwd", "del_rev", "unmapped_fq", "unmapped_fa"]
    check_records(records, lam)


def test_bam_sorted_and_indexed(tmp_path: Path, lam: tuple[str, str]) -> None:
    path = str(tmp_path / "out.bam")
    write_all(path, lam)
    assert sorted(os.listdir(tmp_path)) == ["out.bam", "out.bam.bai"]
    with pysam.AlignmentFile(path, "rb") as f:
        assert f.header.to_dict()["HD"]["SO"] == "coordinate"
        assert f.header.to_dict()["PG"][0]["VN"]  # the installed version, or 0.1.0
        records = list(f)
        assert [r.reference_start for r in records] == [500, 1000, 2000, 3000, -1, -1]
        assert [r.query_name for r in f.fetch(lam[0], 1900, 2100)] == ["del_rev"]
    check_records(records, lam)
    if shutil.which("samtools"):
        subprocess.run(["samtools", "quickcheck", "-v", path], check=True)


def test_unsorted_bam_and_sorted_sam(tmp_path: Path, lam: tuple[str, str]) -> None:
    write_all(str(tmp_path / "u.bam"), lam, sort=False)
    write_all(str(tmp_path / "s.sam"), lam, sort=True)
    assert sorted(os.listdir(tmp_path)) == ["s.sam", "u.bam"]
    with pysam.AlignmentFile(str(tmp_path / "u.bam")) as f:
        assert f.header.to_dict()["HD"]["SO"] == "unsorted"
        assert next(f).query_name == "ins_fwd"
    with pysam.AlignmentFile(str(tmp_path / "s.sam")) as f:
        assert f.header.to_dict()["HD"]["SO"] == "coordinate"
        assert next(f).reference_start == 500


@pytest.mark.skipif(not shutil.which("samtools"), reason="samtools not on PATH")
def test_samtools_reads_sam(tmp_path: Path, lam: tuple[str, str]) -> None:
    path = str(tmp_path / "out.sam")
    write_all(path, lam)
    subprocess.run(["samtools", "quickcheck", "-v", path], check=True)
    out = subprocess.run(["samtools", "view", "-c", path], check=True, capture_output=True)
    assert out.stdout.strip() == b"6"


def test_stdout(capsys: pytest.CaptureFixture, lam: tuple[str, str]) -> None:
    write_all("-", lam, read_group="grp")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "@HD\tVN:1.6\tSO:unsorted"
    body = [line.split("\t") for line in lines if not line.startswith("@")]
    assert [f[0] for f in body][:2] == ["ins_fwd", "clip_fwd"]
    assert all(f[-1] == "RG:Z:grp" for f in body)
    assert body[-1][:11] == ["unmapped_fa", "4", "*", "0", "0", "*", "*", "0", "0", "ACGT", "*"]


@pytest.mark.parametrize("name", ["out.sam", "out.bam"])
def test_abort_leaves_nothing(tmp_path: Path, lam: tuple[str, str], name: str) -> None:
    path = tmp_path / name
    with pytest.raises(RuntimeError):
        with SamWriter(str(path), [(lam[0], len(lam[1]))], "cl") as out:
            out.write(Read("r", "ACGT", "IIII"), None)
            raise RuntimeError("pipeline failed")
    assert os.listdir(tmp_path) == []
    out = SamWriter(str(path), [(lam[0], len(lam[1]))], "cl")
    out.abort()
    out.close()  # no effect after abort
    assert os.listdir(tmp_path) == []


def test_cigar_must_cover_read(tmp_path: Path, lam: tuple[str, str]) -> None:
    bad = Alignment(lam[0], 0, 10, 20, False, [(M, 10)], 0, "10", 10)
    with SamWriter(str(tmp_path / "x.sam"), [(lam[0], len(lam[1]))], "cl") as out:
        with pytest.raises(ValueError, match="covers 10 bases, the read has 4"):
            out.write(Read("r", "ACGT", "IIII"), bad)


def test_read_group_in_file(tmp_path: Path, lam: tuple[str, str]) -> None:
    path = str(tmp_path / "rg.bam")
    write_all(path, lam, read_group=r"@RG\tID:lane1\tSM:sample\tPL:ILLUMINA")
    with pysam.AlignmentFile(path) as f:
        assert f.header.to_dict()["RG"] == [{"ID": "lane1", "SM": "sample", "PL": "ILLUMINA"}]
        assert {r.get_tag("RG") for r in f} == {"lane1"}


def test_parse_read_group() -> None:
    assert parse_read_group("s1") == {"ID": "s1", "SM": "s1"}
    expected = {"ID": "x", "SM": "y"}
    assert parse_read_group(r"@RG\tID:x\tSM:y") == expected
    assert parse_read_group("@RG\tID:x\tSM:y") == expected
    assert parse_read_group("ID:x\tSM:y") == expected
    for bad in [r"@RG\tSM:y", "", r"@RG\tID", "two words"]:
        with pytest.raises(ValueError):
            parse_read_group(bad)


def _pysam_sam(path: str, lam: tuple[str, str], read_group: str | None) -> None:
    """The records of `cases` written the way SamWriter wrote SAM before: every line through
    pysam.AlignedSegment.fromstring and pysam.AlignmentFile."""
    name, ref = lam
    writer = SamWriter("-", [(name, len(ref))], "dnaesa align\tref.fa reads.fq", read_group=read_group,
                       program_version="1.2.3")
    formatter, header = writer.formatter, writer.header
    with pysam.AlignmentFile(path, "w", header=header) as f:
        for read, alignment, secondary in cases(lam):
            for line in formatter.format(read.name, read.seq, read.qual, alignment, secondary).splitlines():
                f.write(pysam.AlignedSegment.fromstring(line, header))


@pytest.mark.parametrize("read_group", [None, r"@RG\tID:lane1\tSM:sample"])
def test_sam_text_is_what_pysam_writes(tmp_path: Path, lam: tuple[str, str], capsys, read_group) -> None:
    """SAM files are written as text (header from pysam): byte for byte what pysam would write."""
    ours, theirs = str(tmp_path / "ours.sam"), str(tmp_path / "theirs.sam")
    write_all(ours, lam, program_version="1.2.3", read_group=read_group)
    _pysam_sam(theirs, lam, read_group)
    capsys.readouterr()
    assert Path(ours).read_bytes() == Path(theirs).read_bytes()
    write_all("-", lam, program_version="1.2.3", read_group=read_group)  # stdout: the same text
    assert capsys.readouterr().out.encode() == Path(ours).read_bytes()


@pytest.mark.parametrize("name", ["out.sam", "out.bam", "-"])
def test_write_text_equals_write(tmp_path: Path, lam: tuple[str, str], capsys, name) -> None:
    """Records formatted elsewhere (`formatter.records`, as the workers do) and written with
    `write_text` give the same file as `write`; `records` writes `secondary` secondaries."""
    contigs = [(lam[0], len(lam[1]))]
    one = "-" if name == "-" else str(tmp_path / f"one.{name}")
    two = "-" if name == "-" else str(tmp_path / f"two.{name}")
    with SamWriter(one, contigs, "cl", read_group="g", secondary=1) as out:
        for read, alignment, secondary in cases(lam):
            out.write(read, alignment, secondary)
    first = capsys.readouterr().out
    with SamWriter(two, contigs, "cl", read_group="g", secondary=1) as out:
        text = "".join(out.formatter.records(read.name, read.seq, read.qual, [alignment, *secondary] if alignment else [])
                       for read, alignment, secondary in cases(lam))
        assert text.count("\n") == 6 and text.endswith("\n")
        out.write_text(text)
    if name == "-":
        assert capsys.readouterr().out == first and first.count("\tRG:Z:g\n") == 6
    else:
        view = lambda p: pysam.view(p)  # noqa: E731 - records only, the same for SAM and BAM
        assert view(one) == view(two) and len(view(one).splitlines()) == 6


def test_formatter_keeps_secondaries_up_to_its_limit(lam: tuple[str, str]) -> None:
    read, alignment, secondary = cases(lam)[1]
    for limit, records in ((0, 1), (1, 2), (5, 2)):
        text = SamFormatter([lam[0]], secondary=limit).records(read.name, read.seq, read.qual, [alignment, *secondary])
        assert text.count("\n") == records
    assert SamFormatter([lam[0]]).records("u", "ACGT", None, []) == "u\t4\t*\t0\t0\t*\t*\t0\t0\tACGT\t*\n"
    import pickle

    formatter = SamFormatter([lam[0]], "\tRG:Z:x", 2)
    assert vars(pickle.loads(pickle.dumps(formatter))) == vars(formatter)  # workers get a copy


@pytest.mark.parametrize("name", ["out.bam", "out.sam"])
def test_sorting_threads_give_the_same_files(tmp_path: Path, lam: tuple[str, str], name: str) -> None:
    for threads in (1, 3, 8):
        folder = tmp_path / str(threads)
        folder.mkdir()
        write_all(str(folder / name), lam, sort=True, threads=threads, program_version="1")
    for threads in (3, 8):
        assert sorted(os.listdir(tmp_path / str(threads))) == sorted(os.listdir(tmp_path / "1"))
        for f in os.listdir(tmp_path / "1"):
            assert (tmp_path / str(threads) / f).read_bytes() == (tmp_path / "1" / f).read_bytes()
