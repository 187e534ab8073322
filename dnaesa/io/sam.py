"""SAM/BAM output: the header, one record per read (plus secondaries), and atomic files.

Owns: `parse_read_group` (the --read-group argument), `SamFormatter` and `SamWriter`. Records are
formatted as SAM text (by `SamFormatter`, which worker processes use too). SAM output is that text,
header from pysam; for BAM the lines are parsed by `pysam.AlignedSegment.fromstring` (several
times faster than setting fields one by one) and written with `pysam.AlignmentFile`, whose SAM
output is the same text byte for byte. Files are written to a temporary
name next to the target and renamed by `close()`; `abort()` deletes them, so a failed run leaves
no partial output; temporaries that a killed run left are removed by the next run. Devices, FIFOs
and pipes are written through, never replaced; an output that is one of the inputs is refused.
The format follows the name: `.bam`/`.cram` coordinate-sorted (`pysam.sort`) and indexed
(`pysam.index`), `.sam.gz` BGZF-compressed SAM, anything else SAM. Output to stdout ('-' or None)
is SAM text written to `sys.stdout`, in input order.
"""
from __future__ import annotations

import io
import logging
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
from types import TracebackType
from typing import Sequence

import pysam

from dnaesa.align.types import Alignment
from dnaesa.dna import reverse_complement
from dnaesa.errors import OptionsError, OutputError
from dnaesa.io.fastx import Read

log = logging.getLogger("dnaesa")
_RG_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9]:.+")
FLAG_REVERSE, FLAG_UNMAPPED, FLAG_SECONDARY, FLAG_SUPPLEMENTARY = 16, 4, 256, 2048
FLAG_PAIRED, FLAG_PROPER, FLAG_MATE_UNMAPPED, FLAG_MATE_REVERSE, FLAG_FIRST, FLAG_LAST = 1, 2, 8, 32, 64, 128
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

    def __init__(self, contig_names: Sequence[str], rg_tag: str = "", secondary: int = 0,
                 split_as_secondary: bool = False, hard_clip: bool = False):
        self.names, self.rg_tag, self.secondary = list(contig_names), rg_tag, secondary
        #: a split read's other parts hard-clipped (bwa's default) instead of soft-clipped (bwa -Y)
        self.hard_clip = hard_clip
        #: the flag of a split read's other parts: 2048 (supplementary), or 256 with `-M`
        self.split_flag = FLAG_SECONDARY if split_as_secondary else FLAG_SUPPLEMENTARY

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
        parts = alignment.extra.get("supplementary", ())
        whole = [alignment, *parts]
        lines = [self._mapped(name, 0, alignment, _mapq(alignment), *_oriented(seq, qual, alignment),
                              tags=_sa_tag(self.names, whole, 0))]
        for i, part in enumerate(parts, start=1):  # split reads: the other parts, soft-clipped (bwa -Y)
            lines.append(self._mapped(name, self.split_flag, part, _mapq(part), *_oriented(seq, qual, part),
                                      tags=_sa_tag(self.names, whole, i), hard=self.hard_clip))
        lines.extend(self._mapped(name, FLAG_SECONDARY, other, 0, "*", "*") for other in secondary)
        return "".join(lines)

    def pair(self, name: str, mates: Sequence[tuple[str, str | None]], placed: Sequence[Alignment | None],
             proper: bool) -> str:
        """The two records of a pair, mate 1 then mate 2: flags 0x1, 0x2 (proper), 0x8, 0x20, 0x40,
        0x80; RNEXT, PNEXT, TLEN (positive for the leftmost mate); MC and MQ. An unmapped mate of
        a mapped one takes its RNAME and POS, as the SAM specification says."""
        lines = []
        for i in (0, 1):
            seq, qual = mates[i]
            qual = qual or "*"
            me, mate = placed[i], placed[1 - i]
            flag = FLAG_PAIRED | (FLAG_FIRST if i == 0 else FLAG_LAST)
            if proper:
                flag |= FLAG_PROPER
            if mate is None:
                flag |= FLAG_MATE_UNMAPPED
            elif mate.reverse:
                flag |= FLAG_MATE_REVERSE
            if me is None:
                flag |= FLAG_UNMAPPED
                where = f"{self.names[mate.contig_index]}\t{mate.ref_start + 1}" if mate else "*\t0"
                nxt = f"=\t{mate.ref_start + 1}" if mate else "*\t0"
                mate_tags = f"\tMC:Z:{mate.cigar_string}\tMQ:i:{_mapq(mate)}" if mate else ""
                lines.append(f"{name}\t{flag}\t{where}\t0\t*\t{nxt}\t0\t{seq}\t{qual}{mate_tags}{self.rg_tag}\n")
                continue
            if me.query_length != len(seq):
                raise ValueError(f"read {name}: CIGAR {me.cigar_string} covers {me.query_length} bases, "
                                 f"the read has {len(seq)}")
            seq, qual = _oriented(seq, qual, me)
            if mate is None:
                nxt, tlen, mate_tags = f"=\t{me.ref_start + 1}", 0, ""
            else:
                same = mate.contig_index == me.contig_index
                nxt = f"{'=' if same else self.names[mate.contig_index]}\t{mate.ref_start + 1}"
                tlen = _template_length(me, mate, i == 0) if same else 0
                mate_tags = f"\tMC:Z:{mate.cigar_string}\tMQ:i:{_mapq(mate)}"
            parts = me.extra.get("supplementary", ())
            whole = [me, *parts]
            lines.append(self._mapped(name, flag, me, _mapq(me), seq, qual, f"{nxt}\t{tlen}",
                                      _sa_tag(self.names, whole, 0) + mate_tags))
            raw_seq, raw_qual = mates[i][0], mates[i][1] or "*"
            for j, part in enumerate(parts, start=1):  # a split mate's other parts: no TLEN, not proper
                part_flag = (flag & ~FLAG_PROPER) | self.split_flag
                lines.append(self._mapped(name, part_flag, part, _mapq(part), *_oriented(raw_seq, raw_qual, part),
                                          f"{nxt}\t0", _sa_tag(self.names, whole, j) + mate_tags, self.hard_clip))
        return "".join(lines)

    def _mapped(self, name: str, flag: int, aln: Alignment, mapq: int, seq: str, qual: str,
                mate: str = "*\t0\t0", tags: str = "", hard: bool = False) -> str:
        """SAM line of a mapped record (`mate`: RNEXT, PNEXT and TLEN, tab-separated; `tags`: more
        optional fields, each with its leading tab; `hard`: soft clips made hard, SEQ and QUAL cut)."""
        if aln.reverse:
            flag |= FLAG_REVERSE
        cigar = aln.cigar_string
        if hard and "S" in cigar:
            left = aln.cigar[0][1] if aln.cigar[0][0] == 4 else 0
            right = aln.cigar[-1][1] if aln.cigar[-1][0] == 4 else 0
            seq, qual = seq[left : len(seq) - right], qual if qual == "*" else qual[left : len(qual) - right]
            cigar = cigar.replace("S", "H")
        xs = "" if aln.sub_score is None else f"\tXS:i:{aln.sub_score}"
        return (f"{name}\t{flag}\t{self.names[aln.contig_index]}\t{aln.ref_start + 1}\t{mapq}\t"
                f"{cigar}\t{mate}\t{seq}\t{qual}\t"
                f"NM:i:{aln.nm}\tMD:Z:{aln.md}\tAS:i:{aln.score}{xs}{tags}{self.rg_tag}\n")


def _oriented(seq: str, qual: str, aln: Alignment) -> tuple[str, str]:
    return (reverse_complement(seq), qual[::-1]) if aln.reverse else (seq, qual)


def _sa_tag(names: Sequence[str], parts: Sequence[Alignment], me: int) -> str:
    """SA:Z of part `me` of a split read: the other parts as rname,pos,strand,CIGAR,mapQ,NM;"""
    if len(parts) < 2:
        return ""
    others = "".join(f"{names[a.contig_index]},{a.ref_start + 1},{a.strand},{a.cigar_string},{_mapq(a)},{a.nm};"
                     for i, a in enumerate(parts) if i != me)
    return f"\tSA:Z:{others}"


def _mapq(aln: Alignment) -> int:
    return min(max(aln.mapq, 0), MAX_MAPQ)


def _template_length(me: Alignment, mate: Alignment, first: bool) -> int:
    """SAM's TLEN: leftmost to rightmost mapped base of the two, positive for the leftmost mate
    (mate 1 when both start at one place), negative for the other."""
    span = max(me.ref_end, mate.ref_end) - min(me.ref_start, mate.ref_start)
    leftmost = me.ref_start < mate.ref_start or (me.ref_start == mate.ref_start and first)
    return span if leftmost else -span


#: output formats by file name ending (case-insensitive); anything else is SAM text, so that
#: `/dev/null`, `/dev/stdout` and `>(cmd)` work
_FORMATS = ((".sam.gz", "sam.gz"), (".gz", "sam.gz"), (".bam", "bam"), (".cram", "cram"), (".sam", "sam"))
_REFUSED = (".bz2", ".xz", ".zst", ".zip", ".bai", ".crai", ".csi", ".tbi", ".fai")


def output_format(path: str) -> str:
    """"sam", "sam.gz" (BGZF-compressed SAM), "bam" or "cram" by the name's ending; OutputError for
    an ending that names another format."""
    low = path.lower()
    if low.endswith(_REFUSED):
        raise OutputError(f"{path}: cannot write {low.rsplit('.', 1)[-1]} output; "
                          "use a name ending in .sam, .sam.gz, .bam or .cram")
    return next((fmt for end, fmt in _FORMATS if low.endswith(end)), "sam")


def remove_stale_temporaries(folder: str, base: str) -> list[str]:
    """Delete temporaries `.{base}.PID.*.tmp*` that an earlier run of ours (same user) left in
    `folder` when it was killed (its process PID no longer exists). Returns what was removed."""
    pattern = re.compile(rf"\.{re.escape(base)}\.(\d+)\.[0-9a-f]+\.tmp")
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        found = pattern.match(name)
        path = os.path.join(folder, name)
        if not found or int(found.group(1)) == os.getpid() or _alive(int(found.group(1))):
            continue
        try:
            if os.lstat(path).st_uid != os.getuid():
                continue
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
            removed.append(path)
        except OSError:
            continue
    return removed


def _why(err: Exception) -> str:
    """What went wrong in a write: the system's words; samtools' last line; or, for htslib, which
    reports a full disk as a failed write with no errno, a guess."""
    if isinstance(err, pysam.SamtoolsError):
        lines = [ln.strip() for ln in str(err).replace("\\n", "\n").splitlines() if ln.strip(" '\"")]
        last = lines[-1].strip(" '\"") if lines else "samtools failed"
        return last.split("stderr=")[-1][-200:]
    if getattr(err, "strerror", None):
        return err.strerror
    return f"{err}; is the disk full?"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def check_target(path: str, inputs: Sequence[str]) -> tuple[bool, str | None]:
    """Where an output file `path` goes: refuse (OutputError) a directory, a missing or read-only
    folder, one of `inputs`. Returns (written through: a device or pipe, the real path of a file to
    replace or create, else None). The command line asks before any work, `SamWriter` again."""
    try:
        st = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise OutputError(f"{path}: cannot write there ({err.strerror})") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path}: is a directory; give a file name for -o")
    for other in inputs:
        if other not in (None, "-") and st is not None and os.path.exists(other) and os.path.samefile(path, other):
            raise OutputError(f"{path}: is one of the inputs ({other}); choose another output")
    if st is not None and not stat.S_ISREG(st.st_mode):
        return True, None
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise OutputError(f"{path}: cannot write there: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write there: the folder {folder} is not writable")
    return False, target


class SamWriter:
    """Writes reads and their alignments as SAM (to a file or stdout), BGZF SAM (`.sam.gz`), or
    coordinate-sorted, indexed BAM (`.bam`) or CRAM (`.cram`, which needs `reference`).

    A regular file (or a new one) is written to a hidden temporary beside it (beside the target
    of a symlink: the link stays) and renamed over it by `close()`, so a failed run leaves nothing.
    A device, FIFO or pipe (`/dev/null`, `/dev/stdout`, `>(cmd)`) is written through, never
    replaced. An output that is one of `inputs` is refused. `sort` None sorts BAM/CRAM output and
    leaves SAM in input order. `secondary` is how many secondary records `formatter.records`
    writes per read; `threads` (up to `SORT_THREADS`) sort and index. Use as a context manager: an
    exception inside the block aborts (no output file is left), a normal exit closes.
    """

    def __init__(self, path: str | None, contigs: list[tuple[str, int]], command_line: str,
                 read_group: str | None = None, program_version: str | None = None,
                 sort: bool | None = None, secondary: int = 0, threads: int = 1,
                 inputs: Sequence[str] = (), reference=None, split_as_secondary: bool = False,
                 hard_clip: bool = False):
        self.path = None if path in (None, "-") else str(path)
        self.format = output_format(self.path) if self.path else "sam"
        self.bam = self.format in ("bam", "cram")
        self.sort = self.bam if sort is None else sort
        self.threads = max(1, threads)
        self._reference = reference
        if self.sort and self.path is None:
            raise OptionsError("sorted output needs an output file, not stdout")
        if self.format == "cram" and reference is None:
            raise OptionsError(f"{self.path}: CRAM output needs the reference")
        group = parse_read_group(read_group) if read_group else None
        #: formats the records (`write` uses it; workers use a copy, then `write_text`)
        self.formatter = SamFormatter([name for name, _ in contigs], f"\tRG:Z:{group['ID']}" if group else "",
                                      secondary, split_as_secondary, hard_clip)
        self.header = _header(contigs, command_line, group, program_version or _dnaesa_version())
        self._tmp: str | None = None
        self._target: str | None = None  # the regular file the temporary is renamed onto
        self._through = False  # writing straight into a device, FIFO or pipe
        self._out: pysam.AlignmentFile | None = None
        self._text = None  # unsorted SAM: a text (or BGZF) stream, text as on stdout
        self._closed = False
        if self.path is None:
            sys.stdout.write(str(self.header))
        else:
            self._check_target(inputs)
            self._open()

    def _check_target(self, inputs: Sequence[str]) -> None:
        """Where the output goes (`check_target`)."""
        assert self.path is not None
        self._through, self._target = check_target(self.path, inputs)

    def _open(self) -> None:
        """Open the temporary output beside the target, or the device/pipe itself."""
        assert self.path is not None
        if self._through:
            # a device or pipe: SAM straight in; sorted output is made in the temporary folder
            folder, base = tempfile.gettempdir(), "dnaesa-" + os.path.basename(self.path)
        else:
            assert self._target is not None
            folder, base = os.path.split(self._target)
            for stale in remove_stale_temporaries(folder, base):
                log.info("removed %s, left by an earlier run that was stopped", stale)
        # not tempfile.mkstemp: its 0600 mode would survive the rename
        self._tmp = os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        # htslib would print its own lines ([E::bgzf_flush] ...) before our one error line
        self._verbosity = pysam.set_verbosity(0)
        try:
            if self.sort or self.format in ("bam", "cram"):
                # compressed: an uncompressed temporary is ~10x the final BAM
                self._out = pysam.AlignmentFile(self._tmp, "wb", header=self.header)
            else:
                target = self.path if self._through else self._tmp
                if self.format == "sam.gz":
                    self._text = io.TextIOWrapper(pysam.BGZFile(target, "wb"), encoding="utf-8", newline="\n")
                else:
                    self._text = open(target, "w", encoding="utf-8", newline="\n")
                self._text.write(str(self.header))
        except OSError as err:
            self._restore_verbosity()
            self._remove_temporaries()
            raise OutputError(f"{self.path}: cannot write ({_why(err)})") from None

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
        try:
            if self._out is None:
                (self._text or sys.stdout).write(text)
            else:
                header = self.header
                for line in text.splitlines():
                    self._out.write(pysam.AlignedSegment.fromstring(line, header))
        except OSError as err:
            if self.path is None:
                raise
            raise OutputError(f"{self.path}: cannot write ({_why(err)}); nothing was written") from None

    def close(self) -> None:
        """Finish the output: sort and index if asked, then move it to its final path."""
        if self._closed:
            return
        self._closed = True
        if self._out is None and self._text is None:
            sys.stdout.flush()
            return
        try:
            self._close_streams()
            self._finish()
        except (OSError, pysam.SamtoolsError) as err:
            self._remove_temporaries()
            raise OutputError(f"{self.path}: cannot write ({_why(err)}); nothing was written") from None
        except BaseException:
            self._remove_temporaries()
            raise
        finally:
            self._restore_verbosity()

    def _finish(self) -> None:
        """Sort/index the closed temporary file and rename (or copy) the results onto the target."""
        assert self.path is not None and self._tmp is not None
        if self._through and self._out is None:
            return
        if not self.sort:
            self._deliver(self._tmp, None)
            return
        sorted_tmp = f"{self._tmp}.sorted"
        fmt = {"bam": "BAM", "cram": "CRAM"}.get(self.format, "SAM")
        extra = min(self.threads, SORT_THREADS) - 1  # samtools' -@: threads besides its own
        # more threads, the same memory in all (samtools' default 768M per thread); same output
        parallel = ["-@", str(extra), "-m", f"{768 // (extra + 1)}M"] if extra else []
        # CRAM carries the reference slices it needs (embed_ref): readable without our reference,
        # which samtools could not use when it is gzip-compressed
        ref = ["--reference", self._reference_fasta(), "--output-fmt-option", "embed_ref=1"] if fmt == "CRAM" else []
        pysam.sort("-o", sorted_tmp, "-O", fmt, "-T", f"{self._tmp}.sort", "--no-PG", *ref, *parallel, self._tmp)
        os.remove(self._tmp)
        for path in (f"{self._tmp}.ref.fa", f"{self._tmp}.ref.fa.fai"):
            if os.path.exists(path):
                os.remove(path)
        index = None
        if self.bam and not self._through:  # index first, so the index is younger than the file
            index = f"{sorted_tmp}.{'crai' if fmt == 'CRAM' else 'bai'}"
            pysam.index(*parallel[:2], "-o", index, sorted_tmp)
        self._deliver(sorted_tmp, index)

    def _deliver(self, done: str, index: str | None) -> None:
        """Move the finished temporary onto the target (copy it into a device or pipe)."""
        assert self.path is not None
        if self._through:
            with open(done, "rb") as src, open(self.path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.remove(done)
            return
        assert self._target is not None
        if index is not None:
            os.replace(index, f"{self._target}.{index.rsplit('.', 1)[-1]}")
        os.replace(done, self._target)

    def _reference_fasta(self) -> str:
        """A plain FASTA of the reference beside the temporaries, for CRAM's encoder (htslib cannot
        read a gzip-compressed reference)."""
        assert self._tmp is not None and self._reference is not None
        path = f"{self._tmp}.ref.fa"
        with open(path, "w") as fh:
            for name, seq in zip(self._reference.names, self._reference.seqs):
                fh.write(f">{name}\n")
                for lo in range(0, len(seq), 1 << 16):
                    fh.write(seq[lo : lo + (1 << 16)])
                fh.write("\n")
        return path

    def abort(self) -> None:
        """Stop writing and delete the temporary output; the target path is left untouched."""
        if self._closed:
            return
        self._closed = True
        if self._out is not None or self._text is not None:
            try:
                self._close_streams()
            except OSError:
                pass
            finally:
                self._restore_verbosity()
            self._remove_temporaries()

    def _close_streams(self) -> None:
        out, text = self._out, self._text
        self._out = self._text = None
        try:
            if out is not None:
                out.close()
        finally:
            if text is not None:
                text.close()

    def _restore_verbosity(self) -> None:
        if getattr(self, "_verbosity", None) is not None:
            pysam.set_verbosity(self._verbosity)
            self._verbosity = None

    def _remove_temporaries(self) -> None:
        if self._tmp is None:
            return
        folder, base = os.path.split(self._tmp)
        for name in os.listdir(folder):
            if name.startswith(base):
                try:
                    os.remove(os.path.join(folder, name))
                except OSError:
                    pass

    def __enter__(self) -> SamWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
