"""Errors the user can act on.

`InputError` carries the file and the record that is wrong; the CLI prints it as one line and
exits with status 2, without a traceback and without leaving a partial output file.
"""
from __future__ import annotations


class DnaesaError(Exception):
    """Base class of every error dnaesa raises on purpose."""


class InputError(DnaesaError):
    """Bad input: names the file and, where there is one, the record (1-based) and its name."""

    def __init__(self, path: str, message: str, record: int | None = None, name: str | None = None):
        self.path = str(path)
        self.record = record
        self.name = name
        self.message = message
        where = self.path
        if record is not None:
            where += f": record {record}"
            if name:
                where += f" ({name})"
        super().__init__(f"{where}: {message}")


class IndexDirError(DnaesaError):
    """An index directory that cannot be used (corrupt, or built by another encoder)."""


class OutputError(DnaesaError):
    """An output that cannot be written where it was asked for (missing or read-only folder, a
    directory, one of the inputs, an unsupported format, a full disk)."""


class OptionsError(DnaesaError, ValueError):
    """An option value out of range (also a ValueError, for API users who catch that)."""


class WorkerError(DnaesaError):
    """A worker process died (killed, or out of memory): the run stops, leaving no output."""
