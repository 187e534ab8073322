"""The index directory: fragment table, vector-store shards and a manifest that guards reuse.

`manifest.json` records the format version, the reference checksum and contig table, the encoder
identity and the fragment parameters. `open_index` loads an index whose manifest matches what is
asked for, and otherwise (re)builds it, saying why on the log. Files are written to a temporary
directory first and renamed into place, so an interrupted build never leaves a half index.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dnaesa.errors import IndexDirError
from dnaesa.model.base import Encoder
from dnaesa.options import IndexOptions
from dnaesa.reference import Reference
from dnaesa.store.vector_store import VectorStore

log = logging.getLogger("dnaesa")
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FRAGMENTS = "fragments.npy"


@dataclass
class Index:
    """A loaded index: the store, and `fragments[i]` = (contig index, start, end) of vector i."""

    store: VectorStore
    fragments: np.ndarray
    manifest: dict
    directory: Path


def default_index_dir(reference_path: str | Path) -> Path:
    """`genome.fa.gz` -> `genome.fa.gz.dnaesa-index/`, beside the reference."""
    path = Path(reference_path)
    return path.with_name(path.name + ".dnaesa-index")


def expected_manifest(reference: Reference, encoder: Encoder, options: IndexOptions) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "reference_checksum": reference.checksum(),
        "contigs": [[name, length] for name, length in reference.contigs],
        "encoder": encoder.identity(),
        "dim": encoder.dim,
        "options": asdict(options),
    }


def _mismatch(found: dict, expected: dict) -> str | None:
    """Why `found` cannot serve `expected`, or None when it can."""
    for key in ("format_version", "reference_checksum", "encoder", "dim", "options"):
        if found.get(key) != expected[key]:
            return {"reference_checksum": "the reference changed"}.get(key, f"its {key} differs")
    return None


def open_index(reference: Reference, encoder: Encoder, options: IndexOptions, directory: str | Path | None = None,
               rebuild: bool = False, progress: Callable | None = None) -> Index:
    """Load the index in `directory` when its manifest matches, else build it there.

    `progress(total)`, when given, is called only if a build happens and returns an `update(n)`
    callable (or None) that is told how many fragments each step embedded."""
    directory = Path(directory) if directory else default_index_dir(reference.path)
    expected = expected_manifest(reference, encoder, options)
    manifest_path = directory / MANIFEST
    if manifest_path.exists() and not rebuild:
        try:
            found = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as err:
            found, why = {}, f"its manifest is unreadable ({err})"
        else:
            why = _mismatch(found, expected)
        if why is None:
            return load_index(directory)
        log.info("index %s was built for other input (%s): rebuilding", directory, why)
    elif not rebuild:
        log.info("no index at %s: building it", directory)
    return build_index(reference, encoder, options, directory, expected, progress)


def load_index(directory: Path) -> Index:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        fragments = np.load(directory / FRAGMENTS)
        opts = manifest["options"]
        store = VectorStore.load(directory, manifest["shards"], manifest["dim"], opts["index_kind"], opts["shard_size"],
                                 ntotal=manifest["n_fragments"])
        missing = [name for name in manifest["shards"] if not (directory / name).is_file()]
        if missing:
            raise OSError(f"missing shard files {missing}")
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise IndexDirError(f"{directory}: cannot load the index ({err}); rebuild it with `dnaesa index --rebuild`") from err
    if manifest["n_fragments"] != len(fragments):
        raise IndexDirError(f"{directory}: {manifest['n_fragments']} vectors but {len(fragments)} fragments; rebuild it")
    return Index(store, fragments, manifest, directory)


def build_index(reference: Reference, encoder: Encoder, options: IndexOptions, directory: Path, manifest: dict,
                progress: Callable | None = None, chunk: int = 4096) -> Index:
    """Embed every fragment, store the vectors and write the directory atomically. Full shards go
    to disk as they fill, so memory holds one shard at a time; the index is then loaded back."""
    fragments = reference.fragments(options.fragment_len, options.stride)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".tmp", dir=directory.parent))
    except OSError as err:
        raise IndexDirError(f"{directory}: cannot write the index there ({err.strerror}); choose another with --index DIR") from err
    try:
        store = VectorStore(encoder.dim, options.index_kind, options.shard_size)
        update = progress(len(fragments)) if progress else None
        names: list[str] = []
        for lo in range(0, len(fragments), chunk):
            rows = fragments[lo : lo + chunk]
            store.add(encoder.encode([reference.fetch(c, s, e) for c, s, e in rows]))
            names += store.spill(tmp, len(names))
            if update:
                update(len(rows))
        names += store.spill(tmp, len(names), keep_last=False)
        np.save(tmp / FRAGMENTS, fragments)
        manifest = dict(manifest, shards=names, n_fragments=int(len(fragments)))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_index(directory)
