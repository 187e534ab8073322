"""The index directory: fragment table, vector-store shards and a manifest that guards reuse.

`manifest.json` records the format version, the reference checksum and contig table, the encoder
identity, the fragment and store parameters (`options`, with the store kind resolved from `auto`),
and a SHA-256 checksum of every shard file and of the fragment table. `open_index` loads an index
whose manifest matches what is asked for, and otherwise (re)builds it, saying why on the log.

Safety: a folder is only ever replaced when it is a dnaesa index (it holds our manifest) or empty;
any other folder, or a file, is refused with `IndexDirError`. The build writes into
`DIR.partial/` beside the target (created with the umask's mode), locked against a second
builder, and renamed into place at the end. An interrupted build is resumed by the next one for
the same input: the shards already written (listed with their checksums in `progress.json`) are
kept and embedding continues after them. Temporary `DIR.tmp*` folders of older versions, owned by
this user and untouched for an hour, are removed.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from dnaesa.errors import IndexDirError
from dnaesa.model.base import Encoder
from dnaesa.options import IndexOptions
from dnaesa.reference import Reference
from dnaesa.store.vector_store import STORE_KINDS, VectorStore, file_checksum

log = logging.getLogger("dnaesa")
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
FRAGMENTS = "fragments.npy"
PROGRESS = "progress.json"
PARTIAL_SUFFIX = ".partial"
#: `index_kind="auto"`: references of at least this many fragments (about 100 Mb at the default
#: stride) get the compact `int4` store (2 KB a 4,096-dim vector), smaller ones exact `flat`
AUTO_COMPACT_FRAGMENTS = 100_000
#: an old-style `DIR.tmpXXXX` build folder untouched this long is stale
STALE_TMP_SECONDS = 3600


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


def resolve_options(reference: Reference, options: IndexOptions) -> IndexOptions:
    """`index_kind="auto"` -> `int4` for references of `AUTO_COMPACT_FRAGMENTS` fragments or more, else `flat`."""
    if options.index_kind != "auto":
        return options
    n = sum(max(0, -(-(length - options.fragment_len) // options.stride)) + 1 for length in reference.lengths)
    return replace(options, index_kind="int4" if n >= AUTO_COMPACT_FRAGMENTS else "flat")


def expected_manifest(reference: Reference, encoder: Encoder, options: IndexOptions) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "reference_checksum": reference.checksum(),
        "contigs": [[name, length] for name, length in reference.contigs],
        "encoder": encoder.identity(),
        "dim": encoder.dim,
        "options": asdict(resolve_options(reference, options)),
    }


def _mismatch(found: dict, expected: dict) -> str | None:
    """Why `found` cannot serve `expected`, or None when it can."""
    for key in ("format_version", "reference_checksum", "encoder", "dim", "options"):
        if found.get(key) != expected[key]:
            if key == "options":
                diff = [f"{name} {found.get(key, {}).get(name)} -> {value}" for name, value in expected[key].items()
                        if found.get(key, {}).get(name) != value]
                return "its options differ: " + ", ".join(diff)
            return {"reference_checksum": "the reference changed"}.get(key, f"its {key} differs")
    return None


def _read_manifest(directory: Path) -> dict | None:
    """Our manifest in `directory`, or None when there is none that dnaesa wrote."""
    try:
        found = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and "format_version" in found and "encoder" in found else None


def check_replaceable(directory: Path) -> None:
    """Raise IndexDirError unless `directory` is absent, empty or a dnaesa index."""
    if not directory.exists() and not directory.is_symlink():
        return
    if not directory.is_dir():
        raise IndexDirError(f"{directory}: exists and is not a folder; choose another --index DIR")
    try:
        empty = not any(directory.iterdir())
    except OSError as err:
        raise IndexDirError(f"{directory}: cannot read the folder ({err.strerror}); choose another --index DIR") from err
    if not empty and _read_manifest(directory) is None:
        raise IndexDirError(f"{directory}: exists and is not a dnaesa index (no manifest.json of ours); refusing to "
                            "replace it: choose another --index DIR")


def open_index(reference: Reference, encoder: Encoder, options: IndexOptions, directory: str | Path | None = None,
               rebuild: bool = False, progress: Callable | None = None, options_given: bool = True) -> Index:
    """Load the index in `directory` when its manifest matches, else build it there. With
    `index_kind="auto"` an existing index keeps its store kind (`dnaesa index --store int4` then
    `dnaesa align` uses that int4 index); a new one gets the kind `resolve_options` picks.

    As minimap2 reads k and w back from its index and strobealign refuses a mismatched one: an
    explicit `directory` holding an index is used with the options of its manifest when none were
    given (`options_given=False`), and one built for other input (reference, encoder or options)
    is an IndexDirError unless `rebuild`; the default folder beside the reference is ours and is
    rebuilt, saying why.

    `progress(total)`, when given, is called only if a build happens and returns an `update(n)`
    callable (or None) that is told how many fragments each step embedded."""
    explicit = directory is not None
    directory = Path(directory) if directory else default_index_dir(reference.path)
    check_replaceable(directory)
    found = _read_manifest(directory)
    if found is not None and explicit and not options_given and not rebuild:  # the manifest's own options
        try:
            options = IndexOptions(**found.get("options", {}))
        except (TypeError, ValueError):
            pass  # an older manifest: compared below like any other
    if found is not None and options.index_kind == "auto" and not rebuild:  # auto: the existing index's kind
        kind = found.get("options", {}).get("index_kind")
        options = replace(options, index_kind=kind) if kind in STORE_KINDS else options
    expected = expected_manifest(reference, encoder, options)
    if found is not None and not rebuild:
        why = _mismatch(found, expected)
        if why is None:
            return load_index(directory)
        if explicit:
            raise IndexDirError(f"{directory}: this index was built for other input ({why}); rebuild it there "
                                "with --rebuild-index, or choose another --index DIR")
        log.info("index %s was built for other input (%s): rebuilding", directory, why)
    elif not rebuild:
        log.info("no index at %s: building it", directory)
    return build_index(reference, encoder, directory, expected, progress)


def load_index(directory: Path) -> Index:
    """The index in `directory`: the fragment table is checked against its checksum now, each
    shard file when the store first reads it."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        checksums = manifest["checksums"]
        if file_checksum(directory / FRAGMENTS) != checksums[FRAGMENTS]:
            raise IndexDirError(f"{directory / FRAGMENTS}: does not match the manifest's checksum (damaged or "
                                "replaced); rebuild the index with --rebuild-index")
        fragments = np.load(directory / FRAGMENTS)
        opts = manifest["options"]
        missing = [name for name in manifest["shards"] if not (directory / name).is_file()]
        if missing:
            raise OSError(f"missing shard files {missing}")
        store = VectorStore.load(directory, manifest["shards"], manifest["dim"], opts["index_kind"], opts["shard_size"],
                                 ntotal=manifest["n_fragments"], checksums=checksums)
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise IndexDirError(f"{directory}: cannot load the index ({err}); rebuild it with --rebuild-index") from err
    if manifest["n_fragments"] != len(fragments):
        raise IndexDirError(f"{directory}: {manifest['n_fragments']} vectors but {len(fragments)} fragments; rebuild it")
    return Index(store, fragments, manifest, directory)


def _remove_stale_tmp(directory: Path) -> None:
    """Remove `DIR.tmp*` build folders of older versions: ours (this user's, holding only index
    files) and untouched for `STALE_TMP_SECONDS`."""
    ours = {MANIFEST, FRAGMENTS}
    for tmp in directory.parent.glob(directory.name + ".tmp*"):
        try:
            st = tmp.lstat()
            if (not tmp.is_dir() or tmp.is_symlink() or st.st_uid != os.getuid()
                    or time.time() - st.st_mtime < STALE_TMP_SECONDS):
                continue
            if all(p.name in ours or p.name.startswith("shard") for p in tmp.iterdir()):
                shutil.rmtree(tmp)
                log.info("removed %s, left by an interrupted build", tmp)
        except OSError:
            continue


def _lock_partial(partial: Path) -> int:
    """Create and lock `partial`; returns the lock's file descriptor (closing it unlocks)."""
    try:
        partial.mkdir(exist_ok=True)
        lock = os.open(partial / "lock", os.O_CREAT | os.O_RDWR, 0o666)
    except OSError as err:
        raise IndexDirError(f"{partial.parent}: cannot write the index there ({err.strerror}); "
                            "choose another --index DIR") from err
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(lock)
        raise IndexDirError(f"{partial}: another dnaesa process is building this index now; wait for it") from err
    return lock


def _resume_point(partial: Path, expected: dict) -> tuple[int, list[str], dict]:
    """What an earlier build for `expected` finished in `partial`: (fragments done, shard names,
    checksums); anything else in it is cleared."""
    try:
        done = json.loads((partial / PROGRESS).read_text())
        if done["expected"] != expected:
            raise ValueError("built for other input")
        names, checksums = done["shards"], done["checksums"]
        for name in names:
            if file_checksum(partial / name) != checksums[name]:
                raise ValueError(f"{name} damaged")
        log.info("resuming the index build in %s after %d finished shards", partial, len(names))
        return int(done["fragments_done"]), names, checksums
    except (OSError, ValueError, KeyError, TypeError):
        for path in partial.iterdir():
            if path.name != "lock" and path.is_dir():
                shutil.rmtree(path)
            elif path.name != "lock":
                path.unlink()
        return 0, [], {}


def _record(partial: Path, expected: dict, names: list[str], checksums: dict, fragments_done: int) -> None:
    tmp = partial / (PROGRESS + ".new")
    tmp.write_text(json.dumps({"expected": expected, "shards": names, "checksums": checksums,
                               "fragments_done": fragments_done}))
    tmp.replace(partial / PROGRESS)


def build_index(reference: Reference, encoder: Encoder, directory: Path, manifest: dict,
                progress: Callable | None = None, chunk: int = 4096) -> Index:
    """Embed every fragment, store the vectors and write the directory. Full shards go to disk
    as they fill (memory holds one shard at a time) and are recorded in `progress.json`, so an
    interrupted build resumes after them; the index is then loaded back."""
    options = IndexOptions(**manifest["options"])
    fragments = reference.fragments(options.fragment_len, options.stride)
    directory = directory.absolute()
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise IndexDirError(f"{directory}: cannot write the index there ({err.strerror}); choose another --index DIR") from err
    _remove_stale_tmp(directory)
    partial = directory.with_name(directory.name + PARTIAL_SUFFIX)
    lock = _lock_partial(partial)
    try:
        _build_into(reference, encoder, fragments, options, partial, manifest, progress, chunk)
        _move_into_place(partial, directory)
    finally:
        os.close(lock)
    return load_index(directory)


def _build_into(reference: Reference, encoder: Encoder, fragments: np.ndarray, options: IndexOptions, partial: Path,
                manifest: dict, progress: Callable | None, chunk: int) -> None:
    start, names, checksums = _resume_point(partial, manifest)
    store = VectorStore(encoder.dim, options.index_kind, options.shard_size)
    update = progress(len(fragments)) if progress else None
    if update and start:
        update(start)
    for lo in range(start, len(fragments), chunk):
        rows = fragments[lo : lo + chunk]
        store.add(encoder.encode([reference.fetch(c, s, e) for c, s, e in rows]))
        written = store.spill(partial, len(names))
        if written:
            names += written
            checksums.update({name: file_checksum(partial / name) for name in written})
            _record(partial, manifest, names, checksums, len(names) * options.shard_size)
        if update:
            update(len(rows))
    names += (last := store.spill(partial, len(names), keep_last=False))
    checksums.update({name: file_checksum(partial / name) for name in last})
    if store.clipped:
        log.info("%d coordinates (%.2f a vector) were clipped to the %s code range", store.clipped,
                 store.clipped / max(len(fragments) - start, 1), options.index_kind)
    np.save(partial / FRAGMENTS, fragments)
    checksums[FRAGMENTS] = file_checksum(partial / FRAGMENTS)
    (partial / PROGRESS).unlink(missing_ok=True)
    (partial / "lock").unlink()
    (partial / MANIFEST).write_text(json.dumps(dict(manifest, shards=names, n_fragments=int(len(fragments)),
                                                    checksums=checksums), indent=1))


def _move_into_place(partial: Path, directory: Path) -> None:
    """Replace `directory` (absent, empty, or an index of ours: checked again) with `partial`."""
    check_replaceable(directory)
    if directory.is_dir() and not any(directory.iterdir()):  # an empty folder, maybe the cwd: fill it
        for path in sorted(partial.iterdir(), key=lambda p: p.name == MANIFEST):  # the manifest last
            path.rename(directory / path.name)
        partial.rmdir()
        return
    if directory.exists():
        shutil.rmtree(directory)
    partial.rename(directory)
