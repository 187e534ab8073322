"""Streaming, validating readers of FASTA/FASTQ reads and of the FASTA reference.

Owns: opening input (plain, gzip detected by magic bytes, or '-' for stdin), the `Read` record,
FASTQ parsing (4-line records, and multi-line ones as Biopython writes them), FASTA parsing,
sequence normalisation (uppercase, IUPAC ambiguity codes -> N) and every input check. Each
problem raises `InputError(path, message, record=N, name=read)` with N counted from 1.

Parsing works on bytes and validates with `bytes.translate`, so a record costs a few C calls.
"""
from __future__ import annotations

import gzip
import io
import itertools
import re
import sys
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator, TextIO

from dnaesa.errors import InputError, OptionsError

_GZIP_MAGIC = b"\x1f\x8b"
_BAD = 0  # byte that marks an illegal character after translation
_IUPAC = b"RYKMSWBDHV"


def _sequence_table() -> bytes:
    """Translation table: ACGTN kept, IUPAC codes -> N, lowercase accepted, all else -> _BAD."""
    table = bytearray([_BAD]) * 256
    for c in b"ACGTN":
        table[c] = table[c + 32] = c
    for c in _IUPAC:
        table[c] = table[c + 32] = ord("N")
    return bytes(table)


_SEQ_TABLE = _sequence_table()
_QUAL_CHARS = bytes(range(ord("!"), ord("~") + 1))
_BAD_BYTE = bytes([_BAD])
#: SAM's QNAME: [!-?A-~]{1,254}; and its rule for reference names (RNAME, @SQ SN)
MAX_READ_NAME = 254
_QNAME = re.compile(r"[!-?A-~]+")
_RNAME = re.compile(r"[0-9A-Za-z!#$%&+./:;?@^_|~-][0-9A-Za-z!#$%&*+./:;=?@^_|~-]*")


@dataclass(slots=True)
class Read:
    """One read: `name` is the first word of the header, `seq` uppercase ACGTN, `qual` Phred+33."""

    name: str
    seq: str
    qual: str | None


def _open_binary(path: str, raw_files: list | None = None) -> BinaryIO:
    """Binary stream of the (possibly gzip-compressed) file, or of stdin for '-'. The file itself
    is appended to `raw_files` (its position says how much of it was read, compressed or not)."""
    if path == "-":
        raw = getattr(sys.stdin, "buffer", None)
        if raw is None:  # a text stream with no bytes underneath (e.g. io.StringIO in tests)
            raw = io.BytesIO(sys.stdin.read().encode())
        stream = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
    else:
        try:
            stream = open(path, "rb")
        except FileNotFoundError:
            raise InputError(path, "no such file") from None
        except IsADirectoryError:
            raise InputError(path, "is a directory, not a file") from None
        except OSError as e:
            raise InputError(path, f"cannot open: {e.strerror or e}") from None
    if raw_files is not None:
        raw_files.append(stream)
    if stream.peek(2)[:2] == _GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=stream, mode="rb"), 1 << 20)
    return stream


def open_text(path: str) -> TextIO:
    """Text stream of `path` ('-' = stdin); gzip is detected by its magic bytes, not the name."""
    if path == "-" and not hasattr(sys.stdin, "buffer"):
        return sys.stdin
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8", errors="replace")


def _lines(path: str, raw_files: list | None = None) -> Iterator[bytes]:
    """Lines of the file as bytes; unreadable or corrupt gzip data becomes an InputError."""
    stream = _open_binary(path, raw_files)
    try:
        yield from stream
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(path, f"cannot read the file (corrupt or truncated gzip?): {e}") from None
    finally:
        if path != "-":
            stream.close()


def _first_line(lines: Iterator[bytes]) -> bytes:
    """First non-blank line (b'' when there is none)."""
    for line in lines:
        if not line.isspace():
            return line
    return b""


def _name(header: bytes, path: str, record: int) -> str:
    """First whitespace-separated word of a header line, without its '@' or '>'."""
    words = header[1:].split(None, 1)
    if not words:
        raise InputError(path, "header has no read name", record=record)
    return words[0].decode("utf-8", "replace")


def _read_name(header: bytes, path: str, record: int) -> str:
    """A read's name as SAM's QNAME takes it: a mate suffix `/1` or `/2` dropped (as bwa does), at
    most 254 characters of '!'..'~' other than '@' (the SAM specification's rule)."""
    name = _name(header, path, record)
    if name.endswith(("/1", "/2")) and len(name) > 2:
        name = name[:-2]
    if len(name) > MAX_READ_NAME:
        raise InputError(path, f"read name of {len(name)} characters; SAM allows at most {MAX_READ_NAME}",
                         record=record, name=name[:40] + "...")
    if not _QNAME.fullmatch(name):
        raise InputError(path, "read name with a character SAM does not allow ('@' or beyond ASCII '!'..'~')",
                         record=record, name=name)
    return name


def _contig_name(header: bytes, path: str, record: int) -> str:
    """A contig's name, checked against the SAM specification's rule for reference names (no
    leading '*' or '=', no commas, brackets, braces, quotes or backslashes)."""
    name = _name(header, path, record)
    if not _RNAME.fullmatch(name):
        raise InputError(path, "contig name that SAM does not allow (it may not start with '*' or '=', nor "
                         "contain , \\ \" ' ` ( ) [ ] { } < >)", record=record, name=name)
    return name


def _sequence(raw: bytes, path: str, record: int, name: str) -> str:
    """Normalised sequence of `raw`, or InputError for an empty one or an illegal character."""
    if not raw:
        raise InputError(path, "empty sequence", record=record, name=name)
    seq = raw.translate(_SEQ_TABLE)
    if _BAD_BYTE in seq:
        at = seq.index(_BAD_BYTE)
        bad = raw[at : at + 1].decode("latin-1")
        raise InputError(path, f"illegal character {bad!r} in sequence at position {at + 1}",
                         record=record, name=name)
    return seq.decode("ascii")


def _quality(raw: bytes, n_bases: int, path: str, record: int, name: str) -> str:
    """Checked quality string: as long as the sequence, every character in '!'..'~'."""
    if len(raw) != n_bases:
        raise InputError(path, f"sequence has {n_bases} bases but quality has {len(raw)}",
                         record=record, name=name)
    bad = raw.translate(None, _QUAL_CHARS)
    if bad:
        raise InputError(path, f"illegal quality character {bad[:1].decode('latin-1')!r} "
                         "(allowed: '!'..'~')", record=record, name=name)
    return raw.decode("ascii")


def _truncated(path: str, record: int, name: str | None) -> InputError:
    return InputError(path, "file ends in the middle of the record (truncated file?)",
                      record=record, name=name)


def _is_sequence_line(line: bytes) -> bool:
    """True for a non-blank line of sequence letters only (a continuation of a multi-line SEQ)."""
    raw = line.rstrip()
    return bool(raw) and _BAD_BYTE not in raw.translate(_SEQ_TABLE)


def _multiline_fastq(first: bytes, line: bytes, lines: Iterator[bytes], path: str,
                     record: int, name: str) -> tuple[bytes, bytes]:
    """Raw SEQ and QUAL of a record whose sequence does not fit on one line.

    `first` is the first sequence line and `line` the one after it. The sequence runs until the
    '+' line; quality lines are then read until they hold as many characters as the sequence.
    """
    _sequence(first, path, record, name)  # raises unless `first` is sequence letters
    parts = [first]
    while line[:1] != b"+":
        if not line:
            raise _truncated(path, record, name)
        if not _is_sequence_line(line):
            found = line.rstrip()[:30].decode("utf-8", "replace")
            raise InputError(path, f"expected the '+' line, found {found!r}",
                             record=record, name=name)
        parts.append(line.rstrip())
        line = next(lines, b"")
    seq = b"".join(parts)
    quals: list[bytes] = []
    have = 0
    while have < len(seq):
        line = next(lines, b"")
        if not line:
            raise _truncated(path, record, name)
        quals.append(line.rstrip())
        have += len(quals[-1])
    return seq, b"".join(quals)


def _parse_fastq(lines: Iterator[bytes], path: str) -> Iterator[Read]:
    """Reads of a FASTQ stream; the fast path is the 4-line record."""
    record = 0
    for header in lines:
        if header[:1] != b"@":
            if header.isspace():
                continue
            found = header.rstrip()[:30].decode("utf-8", "replace")
            raise InputError(path, f"expected a header line starting with '@', found {found!r}",
                             record=record + 1)
        record += 1
        name = _read_name(header, path, record)
        seq_line = next(lines, b"")
        plus = next(lines, b"")
        qual_line = next(lines, b"") if plus[:1] == b"+" else None
        if not qual_line:
            if not seq_line or not plus or qual_line is not None:
                raise _truncated(path, record, name)
            seq_raw, qual_raw = _multiline_fastq(seq_line.rstrip(), plus, lines, path, record, name)
        else:
            seq_raw, qual_raw = seq_line.rstrip(), qual_line.rstrip()
        seq = _sequence(seq_raw, path, record, name)
        yield Read(name, seq, _quality(qual_raw, len(seq), path, record, name))


def _parse_fasta(lines: Iterator[bytes], path: str, naming=_name) -> Iterator[tuple[int, str, bytes]]:
    """(record number, name, raw joined sequence) of each FASTA record; `naming` reads the header."""
    record, name, parts = 0, "", []
    for line in lines:
        if line[:1] == b">":
            if record:
                yield record, name, b"".join(parts)
            record += 1
            name, parts = naming(line, path, record), []
        elif record:
            parts.append(line.rstrip())
        elif not line.isspace():
            raise InputError(path, "not FASTA: the first line does not start with '>'")
    if record:
        yield record, name, b"".join(parts)


def read_fastx(path: str, raw_files: list | None = None) -> Iterator[Read]:
    """Stream the reads of a FASTA or FASTQ file (format from the first non-blank character).

    Validates as it goes, so an InputError may come after earlier reads were yielded. An empty
    file (or one of blank lines only) yields nothing. The opened file goes into `raw_files`.
    """
    lines = _lines(path, raw_files)
    first = _first_line(lines)
    if not first:
        return
    lines = itertools.chain([first], lines)
    if first[:1] == b"@":
        yield from _parse_fastq(lines, path)
    elif first[:1] == b">":
        for record, name, raw in _parse_fasta(lines, path, _read_name):
            yield Read(name, _sequence(raw, path, record, name), None)
    else:
        found = first.rstrip()[:30].decode("utf-8", "replace")
        raise InputError(path, f"neither FASTA nor FASTQ: first line is {found!r}", record=1)


def read_batches(path: str, batch_size: int) -> Iterator[list[Read]]:
    """`read_fastx` in lists of `batch_size` reads (the last one may be shorter)."""
    for batch, _ in read_batches_at(path, batch_size):
        yield batch


def read_batches_at(path: str, batch_size: int) -> Iterator[tuple[list[Read], int | None]]:
    """(batch, bytes of the file read so far, None for a stream) of `read_fastx`'s reads: the
    position, against the file's size, makes a progress bar for plain and gzip input alike."""
    if batch_size < 1:
        raise OptionsError(f"batch_size must be >= 1, not {batch_size}")
    raw_files: list = []
    reads = read_fastx(path, raw_files)
    while batch := list(itertools.islice(reads, batch_size)):
        yield batch, _position(raw_files)


def read_pair_batches_at(path: str, mates: str | None, batch_size: int) -> Iterator[tuple[list[Read], int | None]]:
    """Batches of mates, interleaved (mate 1, mate 2, mate 1, ...), with the position in `path` as
    `read_batches_at` gives it. `mates` is the file of mate 2 (same order, same names but for a
    `/1` `/2` suffix); None for an interleaved `path`. `batch_size` counts reads (pairs x 2).
    Mates whose names differ, or files that end at different reads, are an InputError naming the
    record."""
    if batch_size < 1:
        raise OptionsError(f"batch_size must be >= 1, not {batch_size}")
    raw_files: list = []
    pairs = _pairs(path, mates, raw_files)
    per_batch = max(1, batch_size // 2)
    while batch := list(itertools.islice(pairs, per_batch)):
        yield [read for pair in batch for read in pair], _position(raw_files)


def _pairs(path: str, mates: str | None, raw_files: list) -> Iterator[tuple[Read, Read]]:
    first = read_fastx(path, raw_files)
    if mates is None:  # interleaved: records 2i + 1 and 2i + 2
        for pair, one in enumerate(first):
            record, two = 2 * pair + 1, next(first, None)
            if two is None:
                raise InputError(path, "interleaved reads end with a mate 1 and no mate 2 (odd number of records)",
                                 record=record, name=one.name)
            if two.name != one.name:
                raise InputError(path, f"mate 2 is named {two.name!r}, mate 1 {one.name!r}: not interleaved pairs",
                                 record=record + 1, name=two.name)
            yield one, two
        return
    second = read_fastx(mates)
    for record, (one, two) in enumerate(itertools.zip_longest(first, second), start=1):
        if one is None or two is None:
            short, longer = (path, mates) if one is None else (mates, path)
            raise InputError(short, f"ends after {record - 1} reads, but {longer} has more: the mate files must "
                             "hold the same reads in the same order", record=record)
        if two.name != one.name:
            raise InputError(mates, f"named {two.name!r}, but its mate in {path} is {one.name!r}: the mate files "
                             "must hold the same reads in the same order", record=record, name=two.name)
        yield one, two


def _position(raw_files: list) -> int | None:
    try:
        return raw_files[0].tell() if raw_files and raw_files[0].seekable() else None
    except (OSError, ValueError):
        return None


def read_reference(path: str) -> Iterator[tuple[str, str]]:
    """(name, sequence) of each contig of a FASTA reference; sequence uppercase, IUPAC -> N."""
    seen: set[str] = set()
    for record, name, raw in _parse_fasta_blocks(path, _contig_name):
        if name in seen:
            raise InputError(path, "duplicate contig name", record=record, name=name)
        seen.add(name)
        yield name, _sequence(raw, path, record, name)
    if not seen:
        raise InputError(path, "no contigs: the reference file is empty")


#: bytes read at a time by the reference's parser
_BLOCK = 1 << 24


def _whole_lines(path: str) -> Iterator[bytes]:
    """The file in blocks of about `_BLOCK` bytes, each cut after a line end (the file's last
    block may end without one); unreadable or corrupt gzip data becomes an InputError."""
    stream = _open_binary(path)
    pending = b""
    try:
        while block := stream.read(_BLOCK):
            cut = block.rfind(b"\n") + 1
            if not cut:
                pending += block
                continue
            yield pending + block[:cut]
            pending = block[cut:]
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(path, f"cannot read the file (corrupt or truncated gzip?): {e}") from None
    finally:
        if path != "-":
            stream.close()
    if pending:
        yield pending


def _parse_fasta_blocks(path: str, naming=_name) -> Iterator[tuple[int, str, bytes]]:
    """`_parse_fasta` of the file `path`, the same records and errors, but each block's sequence
    lines are found and joined by a few C calls instead of one Python step a line (a 3.1 Gb
    reference: about 6 s instead of 37)."""
    record, name, parts = 0, "", []
    for data in _whole_lines(path):
        pos, n = 0, len(data)
        while pos < n:
            if data[pos] == 62:  # a header: '>' at a line start
                end = data.find(b"\n", pos) + 1 or n
                if record:
                    yield record, name, _joined_lines(parts)
                record += 1
                name, parts = naming(data[pos:end], path, record), []
                pos = end
                continue
            following = data.find(b"\n>", pos)
            stop = n if following < 0 else following + 1
            if record:
                parts.append(data[pos:stop])
            elif not data[pos:stop].isspace():
                raise InputError(path, "not FASTA: the first line does not start with '>'")
            pos = stop
    if record:
        yield record, name, _joined_lines(parts)


def _joined_lines(parts: list[bytes]) -> bytes:
    """The sequence lines in `parts` joined as `_parse_fasta` joins them (each line right-stripped)."""
    raw = b"".join(parts)
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n")
    seq = raw.translate(None, b"\n")
    if len(seq.translate(None, b" \t\r\x0b\x0c")) != len(seq):  # other whitespace: strip line by line
        seq = b"".join(line.rstrip() for line in raw.split(b"\n"))
    return seq
