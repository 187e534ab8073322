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

The manifest's `genomes` lists the genome (or genomes, `genomes.py`: an index of several, and a
genome added to an index) that the index holds: name, FASTA file, checksum, contigs and fragment
range; `fragments_file` names the fragment table's file. Every writer of an index (a build, the
upgrade to tiered, an added genome) holds the lock of `DIR.partial/`.
"""
from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from dnaesa.errors import IndexDirError, OptionsError
from dnaesa.model.base import Encoder
from dnaesa.options import IndexOptions
from dnaesa.reference import Reference, fragment_count
from dnaesa.store import seeds, sequence_file, sieve
from dnaesa.store.coarse import CoarseTier
from dnaesa.store.codes import code_width
from dnaesa.store.parallel_embed import encode_on_one_thread, encoded_chunks
from dnaesa.store.vector_store import STORE_KINDS, PrefixStore, VectorStore, file_checksum, verify_files

log = logging.getLogger("dnaesa")
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
FRAGMENTS = "fragments.npy"
PROGRESS = "progress.json"
PARTIAL_SUFFIX = ".partial"
#: `index_kind="auto"`: references of at least this many fragments (about 100 Mb at the default
#: stride) get the `lean` store (600 bytes a fragment; faster than int4 and as good as tiered at
#: 300 Mb and 3.1 Gb, benchmarks/RESULTS.md "A lean store"), smaller ones exact `flat`; with an
#: encoder that is not a count sketch (no lean store), `int4` ...
AUTO_COMPACT_FRAGMENTS = 100_000
#: ... and from this many (about 1 Gb) `tiered`: int4 plus a coarse tier that picks candidates
AUTO_TIERED_FRAGMENTS = 1_000_000
#: the encoder of a tiered store's coarse tier (a bundled model)
COARSE_MODEL = "compact256"
#: index kinds with a coarse tier: `tiered` (int4 exact tier) and `lean` (the exact tier computed from
#: the reference's sequence, `sequence_tier.py`; only an int4 prefix of each vector stored)
COARSE_KINDS = ("tiered", "lean")
#: index kinds beyond the vector store's own
INDEX_KINDS = (*STORE_KINDS, *COARSE_KINDS)
#: an old-style `DIR.tmpXXXX` build folder untouched this long is stale
STALE_TMP_SECONDS = 3600


@dataclass
class Index:
    """A loaded index: the store, and `fragments[i]` = (contig index, start, end) of vector i;
    a tiered index also its coarse tier and the encoder of that tier."""

    store: VectorStore
    fragments: np.ndarray
    manifest: dict
    directory: Path
    coarse: CoarseTier | None = None
    coarse_encoder: Encoder | None = None
    #: a lean or flat index's seed table (`seeds.py`), once `keep_seeds` has made or checked it
    seeds: seeds.SeedTable | None = None


def store_kind(index_kind: str) -> str:
    """The vector store's kind for an index kind: a tiered index's exact tier is int4, and so is a
    lean index's prefix."""
    return "int4" if index_kind in COARSE_KINDS else index_kind


def new_store(index_kind: str, dim: int, shard_size: int) -> VectorStore:
    """An empty store of `index_kind` for `dim`-dim vectors (a lean index: their int4 prefix)."""
    if index_kind == "lean":
        return PrefixStore(dim, shard_size)
    return VectorStore(dim, store_kind(index_kind), shard_size)


def coarse_encoder() -> Encoder:
    from dnaesa.model.base import load_encoder

    return load_encoder(COARSE_MODEL, "cpu")


def default_index_dir(reference_path: str | Path) -> Path:
    """`genome.fa.gz` -> `genome.fa.gz.dnaesa-index/`, beside the reference."""
    path = Path(reference_path)
    return path.with_name(path.name + ".dnaesa-index")


def resolve_options(reference: Reference, options: IndexOptions, encoder: Encoder | None = None) -> IndexOptions:
    """`index_kind="auto"` -> `lean` for references of `AUTO_COMPACT_FRAGMENTS` fragments or more,
    else `flat`; for an `encoder` the lean store cannot serve (not a count sketch), `tiered` from
    `AUTO_TIERED_FRAGMENTS` and `int4` from `AUTO_COMPACT_FRAGMENTS` instead. (No encoder: the
    default, a count sketch.)"""
    if options.index_kind != "auto":
        return options
    from dnaesa.store.sequence_tier import SequenceTier

    n = fragment_count(reference.lengths, options.fragment_len, options.stride)
    if n < AUTO_COMPACT_FRAGMENTS:
        kind = "flat"
    elif encoder is None or SequenceTier.supports(encoder):
        kind = "lean"
    else:
        kind = "tiered" if n >= AUTO_TIERED_FRAGMENTS else "int4"
    return replace(options, index_kind=kind)


def expected_manifest(reference: Reference, encoder: Encoder, options: IndexOptions) -> dict:
    options = resolve_options(reference, options, encoder)
    manifest = {
        "format_version": FORMAT_VERSION,
        "reference_checksum": reference.checksum(),
        "contigs": [[name, length] for name, length in reference.contigs],
        "encoder": encoder.identity(),
        "dim": encoder.dim,
        "options": asdict(options),
        "genomes": genome_entries(reference, options),
    }
    if options.index_kind == "lean":
        from dnaesa.store.sequence_tier import SequenceTier

        if not SequenceTier.supports(encoder):
            raise OptionsError(f"--store lean computes the exact tier from the reference, which only a count-sketch "
                               f"encoder allows (not {encoder.name}); use --store tiered")
    if options.index_kind in COARSE_KINDS:
        manifest["coarse_encoder"] = coarse_encoder().identity()
        manifest["coarse_sieve"] = dict(sieve.SIEVE_PARAMS)
    return manifest


def genome_entries(reference: Reference, options: IndexOptions, first_fragment: int = 0) -> list[dict]:
    """The manifest's `genomes`: name, FASTA path, checksum, contigs and [first, end) fragments of each."""
    entries, contig, fragment = [], 0, first_fragment
    for g in reference.genome_table():
        n = fragment_count(reference.lengths[contig : contig + g.contigs], options.fragment_len, options.stride)
        entries.append({"name": g.name, "path": g.path, "checksum": g.checksum, "contigs": g.contigs,
                        "fragments": [fragment, fragment + n]})
        contig, fragment = contig + g.contigs, fragment + n
    return entries


def _mismatch(found: dict, expected: dict) -> str | None:
    """Why `found` cannot serve `expected`, or None when it can."""
    for key in ("format_version", "reference_checksum", "encoder", "dim", "options", "coarse_encoder", "coarse_sieve"):
        if found.get(key) != expected.get(key):
            if key == "options":
                diff = [f"{name} {found.get(key, {}).get(name)} -> {value}" for name, value in expected[key].items()
                        if found.get(key, {}).get(name) != value]
                return "its options differ: " + ", ".join(diff)
            return {"reference_checksum": "the reference changed"}.get(key, f"its {key} differs")
    return None


def read_manifest(directory: Path) -> dict | None:
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
    if not empty and read_manifest(directory) is None:
        raise IndexDirError(f"{directory}: exists and is not a dnaesa index (no manifest.json of ours); refusing to "
                            "replace it: choose another --index DIR")


def open_index(reference: Reference, encoder: Encoder, options: IndexOptions, directory: str | Path | None = None,
               rebuild: bool = False, progress: Callable | None = None, options_given: bool = True,
               workers: int = 1, engine=None) -> Index:
    """`_open_index`, then the reference's packed bases kept in the index (`sequence_file.py`), a
    lean or flat index's seeds (`seeds.py`) and a flat index's saved integer scan (`keep_integer_scan`)."""
    index = _open_index(reference, encoder, options, directory, rebuild, progress, options_given, workers, engine)
    return keep_integer_scan(keep_seeds(keep_sequence(index, reference), encoder), encoder)


#: the saved integer scan's entry format (`keep_integer_scan`)
INTEGER_SCAN_VERSION = 1
_SCAN_PATTERNS = ("introws.*.npy", "intblocks.*.npy", "intnorms.*.npy")


def keep_integer_scan(index: Index, encoder: Encoder) -> Index:
    """Give a flat index of a count sketch a saved copy of its integer scan (`integer_scan.py`:
    the vectors as int8, row-major and in blocks, and their inverse norms), which later runs map
    instead of reading the float32 shards and converting them (at 70 Mb: 2-3 s of start-up and
    1.2 GB of memory). Made from the shards at the first open (their checksums name it), remade
    when the shards change (`--add`); the shard files themselves are then not read on CPU, so their
    presence and sizes are checked here (a damaged one is still refused when it is read: on CUDA,
    or for a query the scan cannot score). Best effort, as `keep_seeds`: where the copy cannot be
    written, the scan is made from the shards each run (one info line)."""
    from dnaesa.store.sequence_tier import SequenceTier
    from dnaesa.store.vector_store import SCAN_MAX_BYTES

    manifest, store = index.manifest, index.store
    if manifest["options"]["index_kind"] != "flat" or store.kind != "flat" or not SequenceTier.supports(encoder) or \
            not store.ntotal or store.ntotal * store.dim > SCAN_MAX_BYTES:
        return index
    shards = {name: manifest["checksums"][name] for name in manifest["shards"]}
    tag = hashlib.sha256(json.dumps(shards, sort_keys=True).encode()).hexdigest()[:16]
    names = tuple(pattern.replace("*", tag) for pattern in _SCAN_PATTERNS)
    entry = manifest.get("integer_scan") or {}
    if entry.get("version") == INTEGER_SCAN_VERSION and entry.get("shards") == shards and \
            entry.get("files") == list(names) and all((index.directory / name).is_file() for name in names):
        for name, size in entry["shard_sizes"].items():
            path = index.directory / name
            if not path.is_file() or path.stat().st_size != size:
                raise IndexDirError(f"{path}: the shard file is missing or not the size the index recorded (damaged or "
                                    "replaced); rebuild the index with --rebuild-index")
        store.saved_scan = ([index.directory / name for name in names], entry["checksums"], int(entry["largest"]))
        return index
    scan = store.integer_scan()
    if scan is None:
        return index
    try:
        with unchanged_manifest(index) as current:
            if current is None:
                return index
            _write_files(index.directory, names, scan.save)
            entry = {"version": INTEGER_SCAN_VERSION, "shards": shards, "files": list(names),
                     "shard_sizes": {name: (index.directory / name).stat().st_size for name in shards},
                     "largest": scan.largest,
                     "checksums": {name: file_checksum(index.directory / name) for name in names}}
            write_manifest(index.directory, dict(current, integer_scan=entry))
            _remove_others(index.directory, _SCAN_PATTERNS, names)
    except (IndexDirError, OSError) as err:
        log.info("[dnaesa] %s: the integer scan is not kept there (%s); it is made from the shards each run",
                 index.directory, getattr(err, "strerror", None) or err)
        return index
    index.manifest["integer_scan"] = entry
    store.saved_scan = ([index.directory / name for name in names], entry["checksums"], int(entry["largest"]))
    return index


def keep_seeds(index: Index, encoder: Encoder) -> Index:
    """Give a lean `index`, or a flat one of a count sketch (whose integer scan scores chosen
    fragments, `integer_scan.py`), that keeps its reference's bases the seed table of them
    (`seeds.py`), made from those bases unless the manifest names a table for them with the same
    parameters that matches its checksums (a damaged one is made again), and load it. Best effort,
    as `keep_sequence`: where the table cannot be made or read, the index is searched without it
    (one info line)."""
    from dnaesa.store.sequence_tier import SequenceTier

    manifest = index.manifest
    checksum = manifest["reference_checksum"]
    bases = manifest.get("sequence") or {}
    kind = manifest["options"]["index_kind"]
    if not (kind == "lean" or kind == "flat" and SequenceTier.supports(encoder)) or \
            bases.get("reference_checksum") != checksum:
        return index
    names = seeds.file_names(checksum)
    entry = manifest.get("seeds") or {}
    try:
        fresh = entry.get("params") == seeds.SEED_PARAMS and entry.get("reference_checksum") == checksum and \
            entry.get("files") == list(names)
        if fresh:
            try:
                verify_files([index.directory / name for name in names], entry["checksums"])
            except (IndexDirError, FileNotFoundError) as err:  # damaged or gone: made from the bases again
                log.info("[dnaesa] %s; making the seed table anew", err)
                fresh = False
        if not fresh:
            with unchanged_manifest(index) as current:
                if current is None:
                    return index
                log.info("making the seed table of %s (%s)", index.directory, seeds.SEED_PARAMS)
                entry = _write_seeds(index, names)
                write_manifest(index.directory, dict(current, seeds=entry))
                _remove_others(index.directory, ("seedkeys.*.npy", "seedpos.*.npy"), names)
            index.manifest["seeds"] = entry
        keys, positions = (np.load(index.directory / name, mmap_mode="r") for name in names)
        if keys.dtype != np.uint32 or positions.dtype != np.uint32 or keys.shape != positions.shape:
            raise ValueError("the seed table's files do not fit together")
    except (IndexDirError, OSError, ValueError) as err:
        log.info("[dnaesa] %s: searched without seeds (%s)", index.directory, getattr(err, "strerror", None) or err)
        return index
    index.seeds = seeds.SeedTable(keys, positions, entry["params"], index.fragments,
                                  [int(n) for _, n in manifest["contigs"]])
    return index


def _write_files(directory: Path, names: tuple[str, ...], write: Callable[[list[Path]], object]) -> None:
    """Write the files `names` of `directory` as `write(paths)` writes them, into temporaries renamed
    over them at the end: a failed write (a full disk) leaves none of them, not half a set."""
    tmp = [directory / (name + ".new.npy") for name in names]
    try:
        write(tmp)
        for path, name in zip(tmp, names):
            path.replace(directory / name)
    except OSError:
        for name in names:
            (directory / name).unlink(missing_ok=True)
        raise
    finally:
        for path in tmp:
            path.unlink(missing_ok=True)


def _write_seeds(index: Index, names: tuple[str, str]) -> dict:
    """Make the seed table of the index's packed bases into its folder; the manifest's entry."""
    lengths = [int(n) for _, n in index.manifest["contigs"]]
    packed = sequence_file.load_packed(index.directory, index.manifest["sequence"], lengths)
    tables = seeds.build(packed, seeds.SEED_PARAMS)
    _write_files(index.directory, names, lambda paths: [np.save(path, table) for path, table in zip(paths, tables)])
    return {"params": dict(seeds.SEED_PARAMS), "reference_checksum": index.manifest["reference_checksum"],
            "files": list(names), "checksums": {name: file_checksum(index.directory / name) for name in names}}


def keep_sequence(index: Index, reference: Reference) -> Index:
    """Give `index` the packed bases of `reference` (which it matches) and the size and time of
    its FASTA files, unless it has them; best effort: a folder that cannot take them (read-only,
    full, another writer at work) is left as it is, with an info line."""
    if reference.from_index:
        return index  # read from there (and checked): nothing to add
    entry = index.manifest.get("sequence") or {}
    checksum = index.manifest["reference_checksum"]
    stamps = []
    for g in reference.genome_table():
        try:
            stamps.append(sequence_file.stamp(g.path))
        except OSError:
            stamps.append(None)  # a reference given as an object, or its file gone
    bases, runs = sequence_file.file_names(checksum)
    try:  # the FASTA was read: check the kept bases too
        have = entry.get("reference_checksum") == checksum and entry.get("bases") == bases
        if have:
            sequence_file.check_files(index.directory, entry)
    except (OSError, KeyError, TypeError, ValueError):
        have = False
    if have and entry.get("stamps") == stamps:
        return index
    try:
        with unchanged_manifest(index) as manifest:
            if manifest is None:
                return index
            if not have:
                log.info("keeping the reference's bases in %s (2 bits a base)", index.directory)
                tmp = [index.directory / (name + ".new.npy") for name in (bases, runs)]
                try:
                    sequence_file.pack(reference.seqs, tmp[0], tmp[1])
                    for path, name in zip(tmp, (bases, runs)):
                        path.replace(index.directory / name)
                finally:
                    for path in tmp:
                        path.unlink(missing_ok=True)
                entry = {"reference_checksum": checksum, "bases": bases, "nruns": runs,
                         "checksums": {name: file_checksum(index.directory / name) for name in (bases, runs)}}
            entry = dict(entry, stamps=stamps)
            write_manifest(index.directory, dict(manifest, sequence=entry))
            _remove_others(index.directory, ("bases.*.npy", "nruns.*.npy"), (bases, runs))
    except (IndexDirError, OSError) as err:
        log.info("[dnaesa] %s: the reference's bases are not kept there (%s); the FASTA is read each run", index.directory,
                 getattr(err, "strerror", None) or err)
        return index
    index.manifest["sequence"] = entry
    return index


def _remove_others(directory: Path, patterns: tuple[str, ...], keep: tuple[str, ...]) -> None:
    """Remove the files of `directory` matching `patterns` but not named in `keep`: another
    reference's, or a killed write's."""
    for pattern in patterns:
        for old in directory.glob(pattern):
            if old.name not in keep:
                old.unlink(missing_ok=True)


def _open_index(reference: Reference, encoder: Encoder, options: IndexOptions, directory: str | Path | None = None,
                rebuild: bool = False, progress: Callable | None = None, options_given: bool = True,
                workers: int = 1, engine=None) -> Index:
    """Load the index in `directory` when its manifest matches, else build it there. With
    `index_kind="auto"` an existing index keeps its store kind (`dnaesa index --store int4` then
    `dnaesa align` uses that int4 index); a new one gets the kind `resolve_options` picks.

    As minimap2 reads k and w back from its index and strobealign refuses a mismatched one: an
    explicit `directory` holding an index is used with the options of its manifest when none were
    given (`options_given=False`), and one built for other input (reference, encoder or options)
    is an IndexDirError unless `rebuild`; the default folder beside the reference is ours and is
    rebuilt, saying why, unless it holds several genomes (`genomes.py`), which only `rebuild` drops.

    `progress(total)`, when given, is called only if a build happens and returns an `update(n)`
    callable (or None) that is told how many fragments each step embedded. `engine`: a
    `RayEngine` whose actors embed the fragments (else `workers` local processes)."""
    explicit = directory is not None
    directory = Path(directory) if directory else default_index_dir(reference.path)
    check_replaceable(directory)
    found = read_manifest(directory)
    if found is not None and explicit and not options_given and not rebuild:  # the manifest's own options
        try:
            options = IndexOptions(**found.get("options", {}))
        except (TypeError, ValueError):
            pass  # an older manifest: compared below like any other
    if found is not None and options.index_kind == "auto" and not rebuild:  # auto: the existing index's kind
        kind = found.get("options", {}).get("index_kind")
        options = replace(options, index_kind=kind) if kind in INDEX_KINDS else options
    expected = expected_manifest(reference, encoder, options)
    if found is not None and not rebuild:
        why = _mismatch(found, expected)
        if why is None:
            return load_index(directory)
        kind = expected["options"]["index_kind"]
        if kind == "tiered" and _mismatch(found, _as_int4(expected)) is None:
            log.info("adding a coarse tier (%s) to the int4 index %s", COARSE_MODEL, directory)
            return add_coarse_tier(reference, directory, expected, progress, workers=workers, engine=engine)
        if kind == "lean" and _mismatch(found, _as_int4(expected)) is None:  # int4 -> tiered -> lean
            log.info("adding a coarse tier (%s) to the int4 index %s, then making it lean", COARSE_MODEL, directory)
            add_coarse_tier(reference, directory, _as_tiered(expected), progress, workers=workers, engine=engine)
            found = read_manifest(directory)
        if kind == "lean" and _mismatch(found, _as_tiered(expected)) is None:
            log.info("making the tiered index %s lean: its int4 codes are cut to their prefix", directory)
            return lean_from_tiered(directory, expected)
        if kind in COARSE_KINDS and \
                _mismatch(found, dict(expected, coarse_sieve=found.get("coarse_sieve"))) is None:  # all but the sieve
            log.info("making the coarse tier's sieve of %s anew (%s)", directory, sieve.SIEVE_PARAMS)
            try:
                return add_sieve(directory, expected["coarse_sieve"])
            except IndexDirError as err:  # a read-only folder, a full disk, another writer: the index still serves
                log.warning("[dnaesa] %s; its coarse tier is searched exhaustively (slower) until the sieve can be "
                            "added", err)
                return load_index(directory)
        genomes = found.get("genomes") or []
        if len(genomes) > 1 and why == "the reference changed":
            table = reference.genome_table()
            given = reference.path if len(table) == 1 else " + ".join(g.path for g in table)
            raise IndexDirError(f"{directory}: holds the genomes {', '.join(g['name'] for g in genomes)}, and "
                                f"{given} is not one of them: align against the folder (dnaesa align READS "
                                f"{directory}), or rebuild it there with --rebuild-index")
        if explicit or len(genomes) > 1:
            hint = ""
            if why == "the reference changed" and genomes and {g["checksum"] for g in genomes} <= \
                    {g["checksum"] for g in expected["genomes"]}:
                hint = " (or add the other genomes to it with --add)"
            raise IndexDirError(f"{directory}: this index was built for other input ({why}); rebuild it there "
                                f"with --rebuild-index, or choose another --index DIR{hint}")
        log.info("index %s was built for other input (%s): rebuilding", directory, why)
    elif not rebuild:
        log.info("no index at %s: building it", directory)
    return build_index(reference, encoder, directory, expected, progress, workers=workers, engine=engine)


def _as_tiered(manifest: dict) -> dict:
    """The manifest of the tiered index that a lean one can be cut from."""
    return dict(manifest, options=dict(manifest["options"], index_kind="tiered"))


def _as_int4(manifest: dict) -> dict:
    """The manifest of the int4 index that a tiered one extends."""
    int4 = {key: value for key, value in manifest.items() if key not in ("coarse_encoder", "coarse_sieve")}
    int4["options"] = dict(manifest["options"], index_kind="int4")
    return int4


def load_index(directory: Path) -> Index:
    """The index in `directory`: the fragment table is checked against its checksum now, each
    shard file when the store first reads it."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        checksums = manifest["checksums"]
        table = directory / fragments_file(manifest)
        if file_checksum(table) != checksums[table.name]:
            raise IndexDirError(f"{table}: does not match the manifest's checksum (damaged or replaced); "
                                "rebuild the index with --rebuild-index")
        fragments = np.load(table)
        opts = manifest["options"]
        missing = [name for name in manifest["shards"] if not (directory / name).is_file()]
        if missing:
            raise OSError(f"missing shard files {missing}")
        if opts["index_kind"] == "lean":
            store = PrefixStore.load(directory, manifest["shards"], manifest["dim"], opts["shard_size"],
                                     ntotal=manifest["n_fragments"], checksums=checksums)
        else:
            store = VectorStore.load(directory, manifest["shards"], manifest["dim"], store_kind(opts["index_kind"]),
                                     opts["shard_size"], ntotal=manifest["n_fragments"], checksums=checksums)
        coarse = coarse_enc = None
        if opts["index_kind"] in COARSE_KINDS:
            coarse_enc = coarse_encoder()
            if coarse_enc.identity() != manifest["coarse_encoder"]:
                raise ValueError(f"its coarse tier was made by another encoder than the bundled {COARSE_MODEL}")
            verify_files([directory / name for name in manifest["coarse_shards"]], checksums)
            coarse = CoarseTier.load(directory, manifest["coarse_shards"], coarse_enc.dim, opts["shard_size"],
                                     manifest["n_fragments"])
            if manifest.get("sieve_file"):
                path = directory / manifest["sieve_file"]
                if file_checksum(path) != checksums[path.name]:
                    raise IndexDirError(f"{path}: does not match the manifest's checksum (damaged or replaced); "
                                        "rebuild the index with --rebuild-index")
                coarse.sieve = sieve.load(path, manifest["coarse_sieve"], coarse.dim, coarse.ntotal)
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise IndexDirError(f"{directory}: cannot load the index ({err}); rebuild it with --rebuild-index") from err
    if manifest["n_fragments"] != len(fragments):
        raise IndexDirError(f"{directory}: {manifest['n_fragments']} vectors but {len(fragments)} fragments; rebuild it")
    return Index(store, fragments, manifest, directory, coarse, coarse_enc)


def fragments_file(manifest: dict) -> str:
    """The name of the fragment table's file (an index that genomes were added to names it anew)."""
    return manifest.get("fragments_file", FRAGMENTS)


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


def lock_partial(partial: Path) -> int:
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
        raise IndexDirError(f"{partial}: another dnaesa process is writing this index now; wait for it") from err
    return lock


def unlock_partial(partial: Path, lock: int) -> None:
    """Release `lock_partial`'s lock, removing the folder when nothing but the lock is in it."""
    try:
        if [p.name for p in partial.iterdir()] == ["lock"]:
            (partial / "lock").unlink()
            partial.rmdir()
    except OSError:
        pass
    os.close(lock)


@contextmanager
def writing(directory: Path):
    """Hold the lock of `DIR.partial/`, which a build holds: one writer of an index at a time."""
    partial = directory.with_name(directory.name + PARTIAL_SUFFIX)
    lock = lock_partial(partial)
    try:
        yield
    finally:
        unlock_partial(partial, lock)


@contextmanager
def unchanged_manifest(index: Index):
    """Hold the index's writer lock (`writing`) and give its manifest, or None when it changed
    since `index` was loaded (another writer came first: leave it)."""
    with writing(index.directory):
        manifest = read_manifest(index.directory)
        yield manifest if manifest is not None and manifest.get("checksums") == index.manifest["checksums"] else None


def _resume_point(partial: Path, expected: dict, keys: list[str]) -> tuple[int, dict, dict]:
    """What an earlier build for `expected` finished in `partial`: (fragments done, shard names per
    tier key, checksums); anything else in it is cleared."""
    try:
        done = json.loads((partial / PROGRESS).read_text())
        if done["expected"] != expected:
            raise ValueError("built for other input")
        names, checksums = {key: done[key] for key in keys}, done["checksums"]
        for name in (n for key in keys for n in names[key]):
            if file_checksum(partial / name) != checksums[name]:
                raise ValueError(f"{name} damaged")
        log.info("resuming the index build in %s after %d finished shards", partial, len(names[keys[0]]))
        return int(done["fragments_done"]), names, checksums
    except (OSError, ValueError, KeyError, TypeError):
        for path in partial.iterdir():
            if path.name != "lock" and path.is_dir():
                shutil.rmtree(path)
            elif path.name != "lock":
                path.unlink()
        return 0, {key: [] for key in keys}, {}


def _record(partial: Path, expected: dict, names: dict, checksums: dict, fragments_done: int) -> None:
    tmp = partial / (PROGRESS + ".new")
    tmp.write_text(json.dumps({"expected": expected, **names, "checksums": checksums, "fragments_done": fragments_done}))
    tmp.replace(partial / PROGRESS)


def build_index(reference: Reference, encoder: Encoder, directory: Path, manifest: dict,
                progress: Callable | None = None, chunk: int = 4096, workers: int = 1, engine=None) -> Index:
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
    lock = lock_partial(partial)
    try:
        tiers = [("shards", encoder, new_store(options.index_kind, encoder.dim, options.shard_size), None)]
        if options.index_kind in COARSE_KINDS:
            coarse = coarse_encoder()
            tiers.append(("coarse_shards", coarse, CoarseTier(coarse.dim, options.shard_size), None))
        names, checksums = write_guard(partial, lambda: embed_tiers(reference, fragments, tiers, options, partial,
                                                                       manifest, progress, chunk, workers=workers,
                                                                       engine=engine))
        write_guard(partial, lambda: np.save(partial / FRAGMENTS, fragments))
        checksums[FRAGMENTS] = file_checksum(partial / FRAGMENTS)
        extra = {}
        if options.index_kind in COARSE_KINDS:
            tier = CoarseTier.load(partial, names["coarse_shards"], coarse.dim, options.shard_size, len(fragments))
            extra = write_guard(partial, lambda: make_sieve(tier, manifest["coarse_sieve"], partial, checksums))
        (partial / PROGRESS).unlink(missing_ok=True)
        (partial / "lock").unlink()
        (partial / MANIFEST).write_text(json.dumps(dict(manifest, **names, **extra, n_fragments=int(len(fragments)),
                                                        fragments_file=FRAGMENTS, checksums=checksums), indent=1))
        _move_into_place(partial, directory)
    finally:
        os.close(lock)
    return load_index(directory)


def add_coarse_tier(reference: Reference, directory: Path, expected: dict, progress: Callable | None = None,
                    chunk: int = 4096, workers: int = 1, engine=None) -> Index:
    """Make the int4 index in `directory` tiered: embed its fragments with the coarse encoder into
    `DIR.coarse.partial/` (resumable like a build), then move the coarse shards in and replace the
    manifest (written beside it and renamed: a reader sees the old index or the new one)."""
    index = load_index(directory)
    options = IndexOptions(**expected["options"])
    partial = directory.with_name(directory.name + ".coarse" + PARTIAL_SUFFIX)
    with writing(directory):
        lock = lock_partial(partial)
        try:
            coarse = coarse_encoder()
            tiers = [("coarse_shards", coarse, CoarseTier(coarse.dim, options.shard_size), None)]
            names, checksums = write_guard(partial, lambda: embed_tiers(reference, index.fragments, tiers, options,
                                                                           partial, expected, progress, chunk,
                                                                           workers=workers, engine=engine))
            for name in names["coarse_shards"]:
                (partial / name).rename(directory / name)
            tier = CoarseTier.load(directory, names["coarse_shards"], coarse.dim, options.shard_size, len(index.fragments))
            extra = write_guard(directory, lambda: make_sieve(tier, expected["coarse_sieve"], directory, checksums))
            write_manifest(directory, dict(index.manifest, **expected, **names, **extra,
                                            checksums={**index.manifest["checksums"], **checksums}))
            shutil.rmtree(partial)
        finally:
            unlock_partial(partial, lock)
    return load_index(directory)


def make_sieve(tier: CoarseTier, params: dict, folder: Path, checksums: dict, taken: tuple = ()) -> dict:
    """Build the coarse tier's sieve (`sieve.py`) into `folder` when the tier is large enough for
    one, adding its checksum to `checksums`; returns the manifest's `sieve_file` entry. The file
    is named anew when its name is in `taken` (a file that readers of the index may be using)."""
    if not sieve.wanted(params, tier.ntotal):
        return {"sieve_file": None}
    name, k = sieve.sieve_file(tier.ntotal), 0
    while name in taken:
        k += 1
        name = sieve.sieve_file(tier.ntotal).replace(".faiss", f".{k}.faiss")
    log.info("building the coarse tier's sieve (%d fragments)", tier.ntotal)
    sieve.write(sieve.build(tier, params), folder / name)
    checksums[name] = file_checksum(folder / name)
    return {"sieve_file": name}


def add_sieve(directory: Path, params: dict) -> Index:
    """Give the tiered index in `directory` the sieve of `params` (an index made before the sieve
    existed, or with other parameters): the file is written beside the index's own, then the
    manifest is replaced in one step."""
    with writing(directory):
        index = load_index(directory)
        manifest = dict(index.manifest)
        checksums = {name: value for name, value in manifest["checksums"].items() if name != manifest.get("sieve_file")}
        taken = (manifest["sieve_file"],) if manifest.get("sieve_file") else ()
        entry = write_guard(directory, lambda: make_sieve(index.coarse, params, directory, checksums, taken))
        write_manifest(directory, dict(manifest, **entry, coarse_sieve=params, checksums=checksums))
        old = manifest.get("sieve_file")
        if old and old != entry["sieve_file"]:
            (directory / old).unlink(missing_ok=True)
    return load_index(directory)


def lean_from_tiered(directory: Path, expected: dict) -> Index:
    """Make the tiered index in `directory` lean (the manifest `expected`): each int4 shard's rows
    are cut to their prefix (`PrefixStore`) into new files, the manifest is replaced in one step,
    and only then are the int4 shards removed. Nothing is embedded again: the coarse tier and its
    sieve stay as they are."""
    with writing(directory):
        index = load_index(directory)
        manifest = index.manifest
        width = code_width("int4", len(PrefixStore(manifest["dim"]).columns))
        names, checksums = [], {name: value for name, value in manifest["checksums"].items()
                                if name not in manifest["shards"]}
        try:
            for n, shard in enumerate(index.store._read_all()):
                name = f"prefix{n:03d}.npy"
                names.append(name)
                write_guard(directory, lambda name=name, shard=shard: np.save(directory / name,
                                                                              np.ascontiguousarray(shard[:, :width])))
                checksums[name] = file_checksum(directory / name)
            write_guard(directory, lambda: write_manifest(directory, dict(manifest, options=expected["options"],
                                                                            shards=names, checksums=checksums)))
        except IndexDirError:  # a full disk: the tiered index stays as it was, without our partial files
            for name in names:
                (directory / name).unlink(missing_ok=True)
            (directory / (MANIFEST + ".new")).unlink(missing_ok=True)
            raise
        for old in manifest["shards"]:
            if old not in names:
                (directory / old).unlink(missing_ok=True)
    return load_index(directory)


def write_manifest(directory: Path, manifest: dict) -> None:
    """Replace the manifest in one step: written beside it, then renamed over it."""
    tmp = directory / (MANIFEST + ".new")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(directory / MANIFEST)


def write_guard(partial: Path, write: Callable):
    """`write()`, with a failed write (a full disk: numpy raises a bare OSError) as one IndexDirError
    naming the folder; what was finished stays in `partial` for the next run to resume."""
    try:
        return write()
    except OSError as err:
        raise IndexDirError(f"{partial}: cannot write the index there ({err.strerror or err}); free some space "
                            "or choose another --index DIR, and run again to resume") from err


def embed_tiers(reference: Reference, fragments: np.ndarray, tiers: list, options: IndexOptions, partial: Path,
                manifest: dict, progress: Callable | None, chunk: int, first: int = 0, carried: int = 0,
                workers: int = 1, engine=None) -> tuple[dict, dict]:
    """Embed `fragments` with each tier's encoder into its store (`tiers`: (manifest key, encoder,
    store, None or (the shard file it goes on filling, checksums))), spilling full shards into
    `partial` as shard `first`, `first + 1`, ... and recording them; returns (names per key,
    checksums). An index that grows (`genomes.add_genomes`) fills its last shard, which holds
    `carried` vectors, first. `workers` > 1 processes encode the chunks (`parallel_embed.py`), or
    the actors of `engine`, a `RayEngine`, which write whole shards themselves where they see
    `partial` (`ShardWriter`): the same bytes either way."""
    keys = [key for key, _, _, _ in tiers]
    for stale in partial.glob("ray-*.check"):  # left by a Ray build that was killed
        stale.unlink()
    start, names, checksums = _resume_point(partial, manifest, keys)
    update = progress(len(fragments)) if progress else None
    if update and start:
        update(start)
    encoders = [encoder for _, encoder, _, _ in tiers]  # not the stores: `encode` may be pickled (Ray)

    def encode(lo: int, hi: int | None = None) -> list:
        rows = fragments[lo : lo + chunk if hi is None else hi]
        return encode_on_one_thread(encoders, [reference.fetch(c, s, e) for c, s, e in rows])

    clipped = dict.fromkeys(keys, 0)
    starts = range(start, len(fragments), chunk)
    if engine is not None:
        refill = {key: last for key, _, _, last in tiers if last is not None and not names[key]}
        shards = ShardWriter(encode, [(key, store) for key, _, store, _ in tiers], partial, chunk,
                             _spans(start, len(fragments), options.shard_size, carried, first + len(names[keys[0]])),
                             refill)
        chunks = engine.encoded_chunks(encode, starts, shards)
        try:
            if next(chunks):  # every actor sees `partial`: they write the shards
                for i, (_, lo, hi) in enumerate(shards.spans):
                    span_names, span_sums, span_clipped = _written(next(chunks), partial)
                    for key in keys:
                        names[key] += span_names[key]
                        clipped[key] += span_clipped[key]
                    checksums.update(span_sums)
                    if i + 1 < len(shards.spans):  # the last span may be a partial shard: not a resume point
                        _record(partial, manifest, names, checksums, len(names[keys[0]]) * options.shard_size - carried)
                    if update:
                        update(hi - lo)
                chunks.close()  # the actors end now
                _log_clipped(clipped, len(fragments) - start)
                return names, checksums
        except BaseException:
            chunks.close()
            raise
        finally:
            shards.check.unlink(missing_ok=True)
    else:
        chunks = encoded_chunks(encode, starts, workers)
    for key, _, store, last in tiers:
        if last is not None and not names[key]:
            _refill(store, *last)
    for lo, vectors in zip(starts, chunks):
        rows = fragments[lo : lo + chunk]
        wrote = False
        for (key, _, store, _), tier_vectors in zip(tiers, vectors):
            store.add(tier_vectors)
            written = store.spill(partial, first + len(names[key]))
            names[key] += written
            checksums.update({name: file_checksum(partial / name) for name in written})
            wrote = wrote or bool(written)
        if wrote:
            _record(partial, manifest, names, checksums, len(names[keys[0]]) * options.shard_size - carried)
        if update:
            update(len(rows))
    chunks.close()  # the workers or actors end now
    for key, _, store, _ in tiers:
        last = store.spill(partial, first + len(names[key]), keep_last=False)
        names[key] += last
        checksums.update({name: file_checksum(partial / name) for name in last})
        clipped[key] = store.clipped
    _log_clipped(clipped, len(fragments) - start)
    return names, checksums


def _log_clipped(clipped: dict, n: int) -> None:
    for key, count in clipped.items():
        if count:
            log.info("%d coordinates (%.2f a vector) were clipped to the %s code range", count, count / max(n, 1), key)


def _spans(start: int, n: int, shard_size: int, carried: int, number: int) -> list[tuple[int, int, int]]:
    """(shard number, first fragment, end) of each shard still to write, fragments `start`.. of `n`:
    shard boundaries fall every `shard_size` vectors of the store, whose last shard held `carried`
    when this build began (`start` is at a boundary: 0 or a resume point)."""
    after = ((start + carried) // shard_size + 1) * shard_size - carried  # the first boundary past `start`
    bounds = [start, *range(after, n, shard_size), n] if start < n else []
    return [(number + i, lo, hi) for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]


def _written(result, partial: Path):
    """A `ShardWriter` result, or the IndexDirError of a write it could not make."""
    if isinstance(result, str):
        raise IndexDirError(f"{partial}: cannot write the index there ({result}); free some space or choose another "
                            "--index DIR, and run again to resume")
    return result


class ShardWriter:
    """Whole shards encoded and written where this runs (a Ray actor), into `partial`: span `i` of
    `spans` ((shard number, first fragment, end)) is encoded `chunk` fragments at a time into a
    fresh copy of each tier's (empty) store, the first span after `refill`ing the tiers named there
    ({key: (the shard file it goes on filling, checksums)}), and spilled as one shard file per
    tier. Returns ({key: [file name]}, {file name: checksum}, {key: coordinates clipped}), or the
    reason a write failed (a full disk), as text. `check` is a file of a random name in `partial`,
    made here: whoever sees it sees the folder."""

    def __init__(self, encode: Callable, stores: list, partial: Path, chunk: int, spans: list, refill: dict):
        self.encode, self.stores, self.partial, self.chunk = encode, stores, partial, chunk
        self.spans, self.refill = spans, refill
        self.check = partial / f"ray-{os.urandom(8).hex()}.check"
        if spans:
            self.check.touch()

    def __call__(self, i: int):
        _, lo, hi = self.spans[i]
        stores = []
        for key, template in self.stores:
            store = copy.deepcopy(template)
            if i == 0 and key in self.refill:
                _refill(store, *self.refill[key])
            stores.append(store)
        for c in range(lo, hi, self.chunk):
            for store, vectors in zip(stores, self.encode(c, min(c + self.chunk, hi))):
                store.add(vectors)
        names, sums, clipped = {}, {}, {}
        try:
            for (key, _), store in zip(self.stores, stores):
                names[key] = store.spill(self.partial, self.spans[i][0], keep_last=False)
                sums.update({name: file_checksum(self.partial / name) for name in names[key]})
                clipped[key] = store.clipped
        except OSError as err:
            return str(err.strerror or err)
        return names, sums, clipped


def _refill(store, path: Path, checksums: dict) -> None:
    """Take the shard file `path` back into `store` as its last shard, to go on filling it."""
    if isinstance(store, CoarseTier):
        if file_checksum(path) != checksums.get(path.name):
            raise IndexDirError(f"{path}: does not match the manifest's checksum (damaged or replaced); rebuild "
                                "the index with --rebuild-index")
        store.shards = [np.load(path)]
    else:
        store.refill(path, checksums)


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
