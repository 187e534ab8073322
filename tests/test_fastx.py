"""Tests of dnaesa.io.fastx: reading reads and references, and every bad-input error."""
from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import pytest

from dnaesa.errors import InputError
from dnaesa.io.fastx import Read, open_text, read_batches, read_fastx, read_reference

DATA = Path(__file__).parent / "data"

FASTQ = "@r1 some comment\nACGTacgt\n+\nIIIIIIII\n@r2\nNNRYKMSW\n+r2\n!!~~#+,-\n"
EXPECTED = [Read("r1", "ACGTACGT", "IIIIIIII"), Read("r2", "NNNNNNNN", "!!~~#+,-")]


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return str(path)


@pytest.mark.parametrize("name", ["reads.fq", "reads.fq.gz", "reads_gz_without_suffix.fq"])
def test_fastq_plain_and_gzip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    data = FASTQ.encode()
    path.write_bytes(gzip.compress(data) if "gz" in name else data)
    assert list(read_fastx(str(path))) == EXPECTED


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(FASTQ.encode())))
    assert list(read_fastx("-")) == EXPECTED


def test_stdin_gzip_and_text_only_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(FASTQ.encode()))))
    assert list(read_fastx("-")) == EXPECTED
    monkeypatch.setattr(sys, "stdin", io.StringIO(FASTQ))
    assert list(read_fastx("-")) == EXPECTED


def test_open_text(tmp_path: Path) -> None:
    with open_text(write(tmp_path, "x.txt.gz", "hello\nworld\n")) as f:
        assert f.read() == "hello\nworld\n"
    with pytest.raises(InputError, match="no such file"):
        open_text(str(tmp_path / "missing.fq"))


def test_crlf_blank_lines_and_multiline_fastq(tmp_path: Path) -> None:
    text = "\n\n@r1\r\nACGT\r\n+\r\nIIII\r\n\n@r2\nACGTA\nCGT\n+\nIII@I\nIII\n"
    reads = list(read_fastx(write(tmp_path, "r.fq", text)))
    assert reads == [Read("r1", "ACGT", "IIII"), Read("r2", "ACGTACGT", "III@IIII")]


def test_fasta_reads(tmp_path: Path) -> None:
    reads = list(read_fastx(write(tmp_path, "r.fa", ">a x\nacgt\nRYN\n>b\nGG\n")))
    assert reads == [Read("a", "ACGTNNN", None), Read("b", "GG", None)]


def test_batches(tmp_path: Path) -> None:
    text = "".join(f"@r{i}\nACGT\n+\nIIII\n" for i in range(7))
    batches = list(read_batches(write(tmp_path, "r.fq", text), 3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert batches[2][0].name == "r6"


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_reads_file_yields_nothing(tmp_path: Path, text: str) -> None:
    assert list(read_fastx(write(tmp_path, "r.fq", text))) == []
    assert list(read_fastx(write(tmp_path, "r.fq.gz", text))) == []


GOOD = "@r1\nACGT\n+\nIIII\n@r2\nACGT\n+\nIIII\n"
BAD_FASTQ = {
    "truncated after header": (GOOD + "@r3\n", 3, "ends in the middle"),
    "truncated after sequence": (GOOD + "@r3\nACGT\n", 3, "ends in the middle"),
    "truncated after plus": (GOOD + "@r3\nACGT\n+\n", 3, "ends in the middle"),
    "bad header": (GOOD + "r3\nACGT\n+\nIIII\n", 3, "starting with '@'"),
    "missing plus": (GOOD + "@r3\nACGT\nIIII\n@r4\nACGT\n+\nIIII\n", 3, "'+' line"),
    "length mismatch": (GOOD + "@r3\nACGTA\n+\nIIII\n", 3, "5 bases but quality has 4"),
    "digit in sequence": (GOOD + "@r3\nAC1T\n+\nIIII\n", 3, "illegal character '1'"),
    "dot in sequence": (GOOD + "@r3\nAC.T\n+\nIIII\n", 3, "illegal character '.'"),
    "dash in sequence": (GOOD + "@r3\nAC-T\n+\nIIII\n", 3, "illegal character '-'"),
    "star in sequence": (GOOD + "@r3\nAC*T\n+\nIIII\n", 3, "illegal character '*'"),
    "space in quality": (GOOD + "@r3\nACGT\n+\nII I\n", 3, "illegal quality character"),
    "empty sequence": (GOOD + "@r3\n\n+\n\n", 3, "empty sequence"),
    "no read name": (GOOD + "@\nACGT\n+\nIIII\n", 3, "no read name"),
}


@pytest.mark.parametrize("case", BAD_FASTQ)
def test_bad_fastq(tmp_path: Path, case: str) -> None:
    text, record, message = BAD_FASTQ[case]
    path = write(tmp_path, "reads.fq", text)
    with pytest.raises(InputError) as err:
        list(read_fastx(path))
    assert str(err.value).startswith(f"{path}: record {record}")
    assert message in str(err.value)
    assert err.value.record == record


def test_error_message_format(tmp_path: Path) -> None:
    path = write(tmp_path, "reads.fq", GOOD + "@r3\n" + "A" * 250 + "\n+\n" + "I" * 249 + "\n")
    with pytest.raises(InputError) as err:
        list(read_fastx(path))
    assert str(err.value) == f"{path}: record 3 (r3): sequence has 250 bases but quality has 249"


def test_bad_fasta_read(tmp_path: Path) -> None:
    path = write(tmp_path, "reads.fa", ">a\nACGT\n>b\nAC9T\n")
    with pytest.raises(InputError, match=r"record 2 \(b\): illegal character '9'"):
        list(read_fastx(path))


def test_not_fastx(tmp_path: Path) -> None:
    path = write(tmp_path, "reads.txt", "hello\n")
    with pytest.raises(InputError, match="neither FASTA nor FASTQ"):
        list(read_fastx(path))


def test_corrupt_gzip(tmp_path: Path) -> None:
    data = gzip.compress(GOOD.encode() * 1000)
    path = write(tmp_path, "reads.fq", data[: len(data) // 2])
    with pytest.raises(InputError, match="gzip"):
        list(read_fastx(path))
    path = write(tmp_path, "garbage.fq", b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(InputError, match="gzip"):
        list(read_fastx(path))


def test_missing_file() -> None:
    with pytest.raises(InputError, match="no such file"):
        list(read_fastx("/nonexistent/reads.fq"))


def test_reference_lambda() -> None:
    contigs = list(read_reference(str(DATA / "lambda_phage.fa.gz")))
    assert len(contigs) == 1
    name, seq = contigs[0]
    assert name == "gi|9626243|ref|NC_001416.1|"
    assert len(seq) == 48502
    assert seq.startswith("GGGCGGCGACCTCGCGGGTTTTCGC")
    assert set(seq) <= set("ACGTN")


def test_reference_multiline_iupac_lowercase(tmp_path: Path) -> None:
    path = write(tmp_path, "ref.fa", ">c1 desc\nACGT\nacgt\n\n>c2\nRYKM\nswbdhvn\n")
    assert list(read_reference(path)) == [("c1", "ACGTACGT"), ("c2", "NNNNNNNNNNN")]


BAD_REFERENCE = {
    "empty": ("", "no contigs"),
    "blank": ("\n\n", "no contigs"),
    "not fasta": ("@r1\nACGT\n+\nIIII\n", "not FASTA"),
    "duplicate": (">c1\nACGT\n>c2\nAC\n>c1\nGG\n", "record 3 (c1): duplicate contig name"),
    "empty contig": (">c1\nACGT\n>c2\n>c3\nAC\n", "record 2 (c2): empty sequence"),
    "illegal": (">c1\nACGT\n>c2\nAC-GT\n", "record 2 (c2): illegal character '-'"),
}


@pytest.mark.parametrize("case", BAD_REFERENCE)
def test_bad_reference(tmp_path: Path, case: str) -> None:
    text, message = BAD_REFERENCE[case]
    path = write(tmp_path, "ref.fa", text)
    with pytest.raises(InputError) as err:
        list(read_reference(path))
    assert str(err.value).startswith(path)
    assert message in str(err.value)


TRICKY_REFERENCES = [
    ">c1 desc\r\nACGT\r\nacgt  \r\n\r\n>c2\nRYKM\n\t\nswbdhvn",  # CRLF, trailing blanks, no final newline
    "\n\n>c1\nAC\nGT\n>c2\n" + "ACGTN" * 40 + "\n" + "acgt\n" * 30,  # blank lines first, lines across blocks
    ">c1\nAC GT\n",  # a blank inside a line: an error, as before
    ">c1\nAC\rGT\n",  # a lone carriage return inside a line: an error too
    ">c1\nACGT\n>c1\nGG\n",
    ">c1\nACGT\n>c2\n>c3\nAC\n",
    "ACGT\n>c1\nAC\n",
    ">c1\nAC>GT\n",
]


@pytest.mark.parametrize("text", TRICKY_REFERENCES)
@pytest.mark.parametrize("block", [1, 7, 1 << 24])
def test_reference_blocks_parse_as_the_line_parser(tmp_path: Path, text: str, block: int, monkeypatch) -> None:
    """The reference is parsed in blocks (a few C calls each); it gives what the line-by-line
    parser of reads gives (records, names, sequences and errors), whatever the block size."""
    import itertools

    from dnaesa.io import fastx

    path = write(tmp_path, "ref.fa", text)
    gz = str(tmp_path / "ref.fa.gz")
    Path(gz).write_bytes(gzip.compress(text.encode()))

    def by_lines(p):
        lines = fastx._lines(p)
        first = fastx._first_line(lines)
        if first[:1] != b">":
            raise InputError(p, "not FASTA")
        seen = set()
        for record, name, raw in fastx._parse_fasta(itertools.chain([first], lines), p, fastx._contig_name):
            if name in seen:
                raise InputError(p, "duplicate contig name", record=record, name=name)
            seen.add(name)
            yield name, fastx._sequence(raw, p, record, name)

    monkeypatch.setattr(fastx, "_BLOCK", block)
    for p in (path, gz):
        try:
            want = list(by_lines(p))
        except InputError as err:
            with pytest.raises(InputError) as got:
                list(read_reference(p))
            assert str(got.value).startswith(str(err)) or ("not FASTA" in str(err) and "not FASTA" in str(got.value))
        else:
            assert list(read_reference(p)) == want
