"""SAM/BAM output: the header, one record per read (plus secondaries), and atomic files.

Owns: `parse_read_group` (the --read-group argument), `SamFormatter` and `SamWriter`. Records are
formatted as SAM text (by `SamFormatter`, which worker processes use too). SAM output is that text,
header from pysam; for BAM the lines are parsed by `pysam.AlignedSegment.fromstring` (several
times faster than setting fields one by one) and written with `pysam.AlignmentFile`, whose SAM
output is the same text byte for byte. Files are written to a temporary
name next to the target and renamed by `close()`; `abort()` deletes them, so a failed run leaves
no partial output. BAM output is coordinate-sorted (`pysam.sort`) and indexed (`pysam.index`).
Output to stdout ('-' or None) is SAM text written to `sys.stdout`, in input order.
"""
from __future__ import annotations

import os
import re
import secrets
import sys
from types import TracebackType
from typing import Sequence, TextIO

import pysam

from dnaesa.align.types import Alignment
from dnaesa.errors import OptionsError, OutputError
from dnaesa.io.fastx import Read
from dnaesa.reference import reverse_complement

_RG_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9]:.+")
FLAG_REVERSE, FLAG_UNMAPPED, FLAG_SECONDARY = 16, 4, 256
MAX_MAPQ = 254  # 255 means "unavailable" in SAM
#: at most this many threads sort and index BAM output (the output is the same with any number)
SORT_THREADS = 4


def _dnaesa_version() -> str:
    """The installed dnaesa version, or "0.1.0" when the package metadata is not there."""
    from importlib import metadata

    try:
        return metadata.version("dnaesa")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def parse_read_group(rg: str) -> dict:
    """Read-group fields from 'ID' alone (used as ID and SM) or a bwa-style '@RG\\tID:x\\tSM:y'.

    Fields may be separated by real tabs or by a literal backslash-t. ValueError without an ID.
    """
    text = rg.replace("\\t", "\t").strip()
    if not text:
        raise OptionsError("empty read group")
    if not text.startswith(("@RG", "ID:")):
        if any(c.isspace() for c in text):
            raise OptionsError(f"read group ID {text!r} contains whitespace")
        return {"ID": text, "SM": text}
    fields = [f for f in text.split("\t") if f]
    if fields[0] == "@RG":
        fields = fields[1:]
    group: dict[str, str] = {}
    for field in fields:
        if not _RG_FIELD.fullmatch(field):
            raise OptionsError(f"bad read-group field {field!r} (expected TAG:value)")
        group[field[:2]] = field[3:]
    if "ID" not in group:
        raise OptionsError(f"read group {rg!r} has no ID field")
    return group


def _header(contigs: list[tuple[str, int]], command_line: str, read_group: dict | None,
            version: str) -> pysam.AlignmentHeader:
    one_line = " ".join(command_line.split())  # a tab or newline would break the @PG line
    header: dict = {
        "HD": {"VN": "1.6", "SO": "unsorted"},
        "SQ": [{"SN": name, "LN": length} for name, length in contigs],
        "PG": [{"ID": "dnaesa", "PN": "dnaesa", "VN": version, "CL": one_line}],
    }
    if read_group:
        header["RG"] = [read_group]
    return pysam.AlignmentHeader.from_dict(header)


class SamFormatter:
    """SAM text of a read's records, exactly as `SamWriter` writes them; picklable and free of
    pysam, so worker processes can format records and the main process only writes text."""

    def __init__(self, contig_names: Sequence[str], rg_tag: str = "", secondary: int = 0):
        self.names, self.rg_tag, self.secondary = list(contig_names), rg_tag, secondary

    def records(self, name: str, seq: str, qual: str | None, alignments: Sequence[Alignment]) -> str:
        """Records of a read placed at `alignments` (primary first; none: unmapped), with up to
        `self.secondary` secondary records."""
        if not alignments:
            return self.format(name, seq, qual, None)
        return self.format(name, seq, qual, alignments[0], alignments[1 : 1 + self.secondary])

    def format(self, name: str, seq: str, qual: str | None, alignment: Alignment | None,
               secondary: Sequence[Alignment] = ()) -> str:
        """The primary record (unmapped when `alignment` is None) and the secondaries, as lines."""
        qual = qual or "*"
        rg = self.rg_tag
        if alignment is None:
            return f"{name}\t{FLAG_UNMAPPED}\t*\t0\t0\t*\t*\t0\t0\t{seq}\t{qual}{rg}\n"
        if alignment.query_length != len(seq):
            raise ValueError(f"read {name}: CIGAR {alignment.cigar_string} covers "
                             f"{alignment.query_length} bases, the read has {len(seq)}")
        if alignment.reverse:
            seq, qual = reverse_complement(seq), qual[::-1]
        mapq = min(max(alignment.mapq, 0), MAX_MAPQ)
        lines = [self._mapped(name, 0, alignment, mapq, seq, qual)]
        lines.extend(self._mapped(name, FLAG_SECONDARY, other, 0, "*", "*") for other in secondary)
        return "".join(lines)

    def _mapped(self, name: str, flag: int, aln: Alignment, mapq: int, seq: str, qual: str) -> str:
        """SAM line of a mapped record."""
        if aln.reverse:
            flag |= FLAG_REVERSE
        xs = "" if aln.sub_score is None else f"\tXS:i:{aln.sub_score}"
        return (f"{name}\t{flag}\t{self.names[aln.contig_index]}\t{aln.ref_start + 1}\t{mapq}\t"
                f"{aln.cigar_string}\t*\t0\t0\t{seq}\t{qual}\t"
                f"NM:i:{aln.nm}\tMD:Z:{aln.md}\tAS:i:{aln.score}{xs}{self.rg_tag}\n")


class SamWriter:
    """Writes reads and their alignments as SAM (to a file or stdout) or sorted, indexed BAM.

    `sort` None sorts BAM output and leaves SAM in input order. `secondary` is how many secondary
    records `formatter.records` writes per read; `threads` (up to `SORT_THREADS`) sort and index.
    Use as a context manager: an
    exception inside the block aborts (no output file is left), a normal exit closes.
    """

    def __init__(self, path: str | None, contigs: list[tuple[str, int]], command_line: str,
                 read_group: str | None = None, program_version: str | None = None,
                 sort: bool | None = None, secondary: int = 0, threads: int = 1):
        self.path = None if path in (None, "-") else str(path)
        self.bam = self.path is not None and self.path.endswith(".bam")
        self.sort = self.bam if sort is None else sort
        self.threads = max(1, threads)
        if self.sort and self.path is None:
            raise ValueError("sorted output needs an output file, not stdout")
        group = parse_read_group(read_group) if read_group else None
        #: formats the records (`write` uses it; workers use a copy, then `write_text`)
        self.formatter = SamFormatter([name for name, _ in contigs], f"\tRG:Z:{group['ID']}" if group else "",
                                      secondary)
        self.header = _header(contigs, command_line, group, program_version or _dnaesa_version())
        self._tmp: str | None = None
        self._out: pysam.AlignmentFile | None = None
        self._text: TextIO | None = None  # unsorted SAM file: text as on stdout (pysam would write the same)
        self._closed = False
        if self.path is None:
            sys.stdout.write(str(self.header))
        else:
            self._open_temporary()

    def _open_temporary(self) -> None:
        """Open the temporary output next to the target (uncompressed BAM when sorting later)."""
        assert self.path is not None
        folder, base = os.path.split(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"cannot write {self.path}: no folder {folder}")
        # not tempfile.mkstemp: its 0600 mode would survive the rename
        self._tmp = os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        if not self.sort and not self.bam:
            self._text = open(self._tmp, "w", encoding="utf-8", newline="\n")
            self._text.write(str(self.header))
            return
        self._out = pysam.AlignmentFile(self._tmp, "wbu" if self.sort else "wb", header=self.header)

    def write(self, read: Read, alignment: Alignment | None,
              secondary: Sequence[Alignment] = ()) -> None:
        """Write the read's primary record (unmapped when `alignment` is None) and secondaries."""
        if self._closed:
            raise ValueError("write to a closed SamWriter")
        self.write_text(self.formatter.format(read.name, read.seq, read.qual, alignment, secondary))

    def write_text(self, text: str) -> None:
        """Write records already formatted by `self.formatter` (lines ending in a newline)."""
        if self._closed:
            raise ValueError("write to a closed SamWriter")
        if self._out is None:
            (self._text or sys.stdout).write(text)
        else:
            header = self.header
            for line in text.splitlines():
                self._out.write(pysam.AlignedSegment.fromstring(line, header))

    def close(self) -> None:
        """Finish the output: sort and index if asked, then move it to its final path."""
        if self._closed:
            return
        self._closed = True
        if self._out is None and self._text is None:
            sys.stdout.flush()
            return
        self._close_temporary()
        try:
            self._finish()
        except BaseException:
            self._remove_temporaries()
            raise

    def _finish(self) -> None:
        """Sort/index the closed temporary file and rename the results onto the target."""
        assert self.path is not None and self._tmp is not None
        if not self.sort:
            os.replace(self._tmp, self.path)
            return
        sorted_tmp = f"{self._tmp}.sorted"
        fmt = "BAM" if self.bam else "SAM"
        extra = min(self.threads, SORT_THREADS) - 1  # samtools' -@: threads besides its own
        # more threads, the same memory in all (samtools' default 768M per thread); same output
        parallel = ["-@", str(extra), "-m", f"{768 // (extra + 1)}M"] if extra else []
        pysam.sort("-o", sorted_tmp, "-O", fmt, "-T", f"{self._tmp}.sort", "--no-PG", *parallel, self._tmp)
        os.remove(self._tmp)
        if self.bam:  # index first, so the index is younger than the BAM it describes
            pysam.index(*parallel[:2], "-o", f"{sorted_tmp}.bai", sorted_tmp)
            os.replace(f"{sorted_tmp}.bai", f"{self.path}.bai")
        os.replace(sorted_tmp, self.path)

    def abort(self) -> None:
        """Stop writing and delete the temporary output; the target path is left untouched."""
        if self._closed:
            return
        self._closed = True
        if self._out is not None or self._text is not None:
            self._close_temporary()
            self._remove_temporaries()

    def _close_temporary(self) -> None:
        if self._out is not None:
            self._out.close()
        if self._text is not None:
            self._text.close()

    def _remove_temporaries(self) -> None:
        assert self._tmp is not None
        for path in (self._tmp, f"{self._tmp}.sorted", f"{self._tmp}.sorted.bai"):
            if os.path.exists(path):
                os.remove(path)

    def __enter__(self) -> SamWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
