"""Several genomes in one index: reading them back to align against, and adding genomes to an index.

An index of several genomes (`dnaesa index A.fa B.fa --index DIR`, or `dnaesa index B.fa --index
DIR --add` on an index of A) names each contig `GENOME:contig` (`Reference.combine`); its manifest's
`genomes` lists each genome's name, FASTA file (absolute path), sequence checksum, number of
contigs and fragment range, in order (`index_dir.genome_entries`). An index of one genome keeps its
contigs' own names, and its output is what it was before genomes could be added.

Aligning (`load_reference`): the index folder itself, or any one of its genomes' FASTA files, stands
for all of them; the others are read from the files the manifest records, each checked against its
checksum, so a FASTA that moved or changed is an error naming it, never a wrong answer. A FASTA
given on the command line is used for the genome whose checksum it has, wherever it lies, and
`dnaesa index NEW.fa --index DIR` records its new place (`record_genomes`).

Adding (`add_genomes`): only the new genomes' fragments are embedded. Shards stay `shard_size`
vectors each but the last (`codes.rerank_code_rows` finds vector i in shard i // shard_size), so
the old last, partly filled shard of each tier is read back, filled with the new vectors and written
anew: the result is, shard for shard and byte for byte, the index that a build of all the genomes
at once makes (file names aside). The other shard files are not touched. New files are made in
`DIR.add.partial/` (finished shards recorded there: an interrupted add resumes after them), linked
into the folder under names the current manifest does not use, and a new manifest is renamed over
the old one, so a reader sees the old index or the new one; files only the old one used are
removed afterwards. The add holds the lock that every writer of the index holds.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dnaesa.errors import IndexDirError, InputError, OptionsError
from dnaesa.model.base import Encoder
from dnaesa.options import IndexOptions
from dnaesa.reference import Genome, Reference, check_genome_name, genome_name, genomes_checksum
from dnaesa.store import sequence_file
from dnaesa.store.coarse import CoarseTier
from dnaesa.store.index_dir import (
    COARSE_KINDS,
    FRAGMENTS,
    MANIFEST,
    Index,
    default_index_dir,
    embed_tiers,
    file_checksum,
    fragments_file,
    genome_entries,
    load_index,
    lock_partial,
    make_sieve,
    new_store,
    read_manifest,
    unchanged_manifest,
    unlock_partial,
    write_guard,
    write_manifest,
    writing,
)
from dnaesa.store.sieve import SIEVE_PARAMS

log = logging.getLogger("dnaesa")
ADD_SUFFIX = ".add.partial"


def load_reference(ref: str | Path | Sequence[str | Path], directory: str | Path | None = None,
                   names: Sequence[str] | None = None, rebuild: bool = False) -> Reference:
    """The reference to align against or to index, from `ref`: an index folder (all its genomes),
    one FASTA, or several (genomes, named by `names` or by their files; they need `directory`).
    One FASTA that is a genome of an index of several in `directory` (default: the folder beside
    it) stands for all of them, unless `rebuild` (the index is then rebuilt for it alone)."""
    paths = [str(ref)] if isinstance(ref, (str, Path)) else [str(p) for p in ref]
    if not paths:
        raise OptionsError("no reference given")
    if names and len(names) != len(paths):
        raise OptionsError(f"{len(names)} genome names (--genome) for {len(paths)} FASTA files: give one for each")
    if len(paths) == 1 and os.path.isdir(paths[0]):
        folder = Path(paths[0])
        if names:
            raise OptionsError(f"{folder}: an index folder: its genomes have their names (--genome names FASTA files)")
        if directory is not None and not _same_folder(folder, Path(directory)):
            raise OptionsError(f"{folder}: an index folder, but --index names another ({directory}); give one of them")
        manifest = read_manifest(folder)
        if manifest is None:
            raise IndexDirError(f"{folder}: not a dnaesa index (no manifest.json of ours); give a FASTA reference")
        return packed_reference(folder, manifest) or recorded_genomes(folder, manifest)
    if len(paths) > 1 and directory is None:
        raise OptionsError("several genomes go into one index: name its folder with --index DIR")
    folder = Path(directory) if directory is not None else default_index_dir(paths[0])
    if not rebuild and not names:
        manifest = read_manifest(folder)
        found = packed_reference(folder, manifest, paths) if manifest is not None else None
        if found is not None:
            return found
    refs = [Reference.load(p) for p in paths]
    manifest = None if rebuild else read_manifest(folder)
    if manifest is not None and (len(manifest.get("genomes") or ()) > 1 or len(refs) > 1):
        found = recorded_genomes(folder, manifest, refs)
        if found is not None:
            return found
    if len(refs) == 1 and not names:
        return refs[0]
    return Reference.combine([(name, r) for name, r in zip(names or [genome_name(p) for p in paths], refs)],
                             folder if len(refs) > 1 else None)


def packed_reference(folder: Path, manifest: dict, paths: Sequence[str] | None = None) -> Reference | None:
    """The reference of the index in `folder` read from its packed bases (`sequence_file.py`), as
    `load_reference` would read it from the FASTA files, when every genome's FASTA file is where
    the manifest says and unchanged since the bases were kept (same size and modification time),
    and `paths` (given on the command line; None: the folder stands for its genomes) are among
    them. None otherwise, or when the files are missing or damaged: the FASTA files are then read
    and checked as before (a moved or changed one is an error naming it), and the bases written
    anew."""
    entry, genomes = manifest.get("sequence"), manifest.get("genomes") or []
    if not entry or entry.get("reference_checksum") != manifest.get("reference_checksum") or not genomes:
        return None
    try:  # every genome's FASTA where it was, unchanged (else it is read: an error names it, as before)
        if entry["stamps"] != [sequence_file.stamp(g["path"]) for g in genomes]:
            return None
        given = [sequence_file.stamp(p) for p in paths or ()]
    except (OSError, KeyError, TypeError):
        return None
    if any(s not in entry["stamps"] for s in given) or len({s["path"] for s in given}) < len(given):
        return None
    try:
        contigs = manifest["contigs"]
        lengths = [int(n) for _, n in contigs]
        seqs = sequence_file.load_packed(folder, entry, lengths)
    except (OSError, KeyError, TypeError, ValueError) as err:
        log.warning("[dnaesa] %s: its copy of the reference's bases cannot be used (%s); reading the FASTA", folder, err)
        return None
    if sum(lengths) <= sequence_file.DECODE_UP_TO:  # small: as text, which windows are cut from fastest
        seqs = list(seqs)
    names = [name for name, _ in contigs]
    if len(genomes) > 1:
        table = [Genome(g["name"], g["path"], g["checksum"], g["contigs"]) for g in genomes]
        ref = Reference(str(folder), names, seqs, table)
    elif paths is None:  # as `recorded_genomes` names it
        g = genomes[0]
        ref = Reference(g["path"], names, seqs, [Genome(g["name"], g["path"], g["checksum"], g["contigs"])])
    else:
        ref = Reference(str(paths[0]), names, seqs)
    ref._checksum, ref.from_index = manifest["reference_checksum"], True
    return ref


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def recorded_genomes(folder: Path, manifest: dict, given: Sequence[Reference] = ()) -> Reference | None:
    """The genomes the manifest in `folder` records, as one reference; a genome whose checksum one
    of `given` has is taken from it, the others are read from their recorded files and checked.
    None when a given reference is not one of them (an InputError when it is a recorded file
    that changed)."""
    entries = manifest.get("genomes")
    if not entries:
        raise IndexDirError(f"{folder}: its manifest does not record the FASTA it was built from (an older "
                            f"dnaesa); give the FASTA: dnaesa align READS REF.fa --index {folder}")
    by_checksum = {ref.checksum(): ref for ref in given}
    recorded = {g["checksum"] for g in entries}
    for ref in given:
        if ref.checksum() not in recorded:
            changed = [g for g in entries if g["path"] == os.path.abspath(ref.path)]
            if changed:
                raise InputError(ref.path, f"changed since it was indexed as genome {changed[0]['name']} of {folder} "
                                 "(its sequences differ); restore it, or rebuild the index with --rebuild-index")
            return None
    parts = [(g["name"], by_checksum.get(g["checksum"]) or _read_genome(g, folder)) for g in entries]
    return Reference.combine(parts, folder if len(parts) > 1 else None)


def _read_genome(entry: dict, folder: Path) -> Reference:
    """A genome from the FASTA file the manifest records, checked against its checksum."""
    path, name = entry["path"], entry["name"]
    if not os.path.isfile(path):
        raise InputError(path, f"genome {name} of the index {folder}: no such file (moved or deleted?); put it "
                         f"back, or record its new place: dnaesa index NEW.fa --index {folder}")
    ref = Reference.load(path)
    if ref.checksum() != entry["checksum"]:
        raise InputError(path, f"changed since it was indexed as genome {name} of {folder} (its sequences "
                         "differ); restore it, or rebuild the index with --rebuild-index")
    return ref


def record_genomes(index: Index, reference: Reference) -> bool:
    """Bring the manifest's `genomes` up to date with `reference`, which the index matches: where
    each FASTA file is now, a single genome's name when one was given (`--genome`), or the whole
    list when an older dnaesa wrote none. Returns whether the manifest changed; a folder that
    cannot be written (read-only, or another writer at work) is left as it is, with a warning."""
    found = index.manifest.get("genomes")
    now = genome_entries(reference, IndexOptions(**index.manifest["options"]))
    if found and len(found) == len(now):
        renamed = len(now) == 1 and bool(reference.genomes)
        now = [dict(old, path=new["path"], name=new["name"] if renamed else old["name"]) for old, new in zip(found, now)]
    if now == found:
        return False
    try:
        with unchanged_manifest(index) as manifest:
            if manifest is None:
                return False
            write_manifest(index.directory, dict(manifest, genomes=now))
    except (IndexDirError, OSError) as err:
        log.warning("[dnaesa] %s: could not record where its genomes' FASTA files are (%s)", index.directory, err)
        return False
    log.info("[dnaesa] %s: recorded the genomes %s", index.directory,
             ", ".join(f"{g['name']} ({g['path']})" for g in now))
    return True


def add_genomes(directory: str | Path, parts: Sequence[tuple[str, str | Path | Reference]], encoder: Encoder,
                options: dict | None = None, progress: Callable | None = None, chunk: int = 4096,
                workers: int = 1, engine=None) -> Index:
    """Append the genomes `parts` ((name, FASTA path or reference of one genome)) to the index in
    `directory`, embedding only their fragments with `encoder` (the index's own). `options`: index
    options the user gave (IndexOptions field -> value or None), which must be the index's own.
    Names are checked before any FASTA is read. Resumable; atomic. Returns the grown index."""
    directory = Path(directory).absolute()
    if read_manifest(directory) is None:
        what = "is not a dnaesa index (no manifest.json of ours)" if directory.exists() else "holds no index"
        raise IndexDirError(f"{directory}: {what}; nothing to add to: build one first (dnaesa index REF --index DIR)")
    partial = directory.with_name(directory.name + ADD_SUFFIX)
    with writing(directory):
        lock = lock_partial(partial)
        try:
            index = load_index(directory)
            _remove_unlisted(directory, index.manifest)  # what an interrupted add or upgrade left
            loaded = _check_addition(index, parts, encoder, options or {})
            write_guard(partial, lambda: _embed_and_commit(index, loaded, encoder, partial, progress, chunk, workers,
                                                           engine))
        finally:
            unlock_partial(partial, lock)
    return load_index(directory)


def _check_addition(index: Index, parts: Sequence[tuple[str, str | Path | Reference]], encoder: Encoder,
                    options: dict) -> list[tuple[str, Reference]]:
    """The genomes to add, loaded, or IndexDirError when they cannot be added."""
    manifest, directory = index.manifest, index.directory
    base = manifest.get("genomes")
    if not base:
        raise IndexDirError(f"{directory}: its manifest does not record its genome (an older dnaesa); record it "
                            f"first: dnaesa index REF.fa --index {directory}")
    if manifest["encoder"] != encoder.identity() or manifest["dim"] != encoder.dim:
        raise IndexDirError(f"{directory}: built with the encoder {manifest['encoder']}, not {encoder.identity()}; "
                            "add with the --encoder or --model it was built with")
    for key, value in options.items():
        if value is not None and value != "auto" and manifest["options"].get(key) != value:
            raise IndexDirError(f"{directory}: its {key} is {manifest['options'].get(key)}, not {value}: added "
                                "genomes take the index's own options (drop that option)")
    names = {g["name"] for g in base}
    for i, (name, ref) in enumerate(parts):
        check_genome_name(name)
        if any(name == other for other, _ in parts[:i]):
            raise OptionsError(f"two genomes are named {name}; name them apart with --genome NAME")
        if name in names:
            where = ref.path if isinstance(ref, Reference) else ref
            raise IndexDirError(f"{directory}: already holds a genome named {name}; add {where} under another "
                                "name with --genome NAME")
    loaded = [(name, ref if isinstance(ref, Reference) else Reference.load(ref)) for name, ref in parts]
    sums = {g["checksum"]: g["name"] for g in base}
    for name, ref in loaded:
        if ref.checksum() in sums:
            raise IndexDirError(f"{ref.path}: the same sequences as genome {sums[ref.checksum()]}; a genome goes "
                                f"into {directory} once")
        sums[ref.checksum()] = name
    return loaded


def _embed_and_commit(index: Index, parts: list[tuple[str, Reference]], encoder: Encoder, partial: Path,
                      progress: Callable | None, chunk: int, workers: int = 1, engine=None) -> None:
    """Embed the genomes `parts` after the index's vectors, then put the new files and manifest in place."""
    manifest, directory = index.manifest, index.directory
    new = Reference.combine(parts)
    options = IndexOptions(**manifest["options"])
    n_old = manifest["n_fragments"]
    first, carried = divmod(n_old, options.shard_size)
    keys = ["shards", "coarse_shards"] if options.index_kind in COARSE_KINDS else ["shards"]
    for key in keys:
        if len(manifest[key]) != first + bool(carried):
            raise IndexDirError(f"{directory}: {len(manifest[key])} {key} files for {n_old} fragments in shards of "
                                f"{options.shard_size}; rebuild the index with --rebuild-index")
    last = {key: (directory / manifest[key][-1], manifest["checksums"]) if carried else None for key in keys}
    tiers = [("shards", encoder, new_store(options.index_kind, encoder.dim, options.shard_size), last["shards"])]
    if options.index_kind in COARSE_KINDS:
        coarse = index.coarse_encoder
        tiers.append(("coarse_shards", coarse, CoarseTier(coarse.dim, options.shard_size), last["coarse_shards"]))
    local = new.fragments(options.fragment_len, options.stride)
    log.info("adding %s (%d fragments) to %s (%d fragments)", ", ".join(name for name, _ in parts), len(local),
             directory, n_old)
    expected = {"add": [[g.name, g.checksum] for g in new.genome_table()], "base": manifest["checksums"]}
    names, sums = embed_tiers(new, local, tiers, options, partial, expected, progress, chunk, first, carried,
                              workers=workers, engine=engine)
    fragments = np.concatenate([index.fragments, local + np.array([len(manifest["contigs"]), 0, 0])])
    np.save(partial / FRAGMENTS, fragments)
    sums[FRAGMENTS] = file_checksum(partial / FRAGMENTS)
    sieve_entry = {}
    if options.index_kind in COARSE_KINDS:  # the grown coarse tier gets its sieve anew
        paths = [directory / name for name in manifest["coarse_shards"][:first]] + \
                [partial / name for name in names["coarse_shards"]]  # absolute: `load` joins them as they are
        tier = CoarseTier.load(directory, paths, index.coarse.dim, options.shard_size, len(fragments))
        sieve_entry = dict(make_sieve(tier, SIEVE_PARAMS, partial, sums), coarse_sieve=dict(SIEVE_PARAMS))

    listed = {*manifest["checksums"], fragments_file(manifest)}
    placed = {name: _free_name(name, listed) for name in sums}  # not a file that a reader may be using
    for name, target in placed.items():
        _link(partial / name, directory / target)
    grown = _grown_manifest(manifest, parts, genome_entries(new, options, n_old), len(fragments), first,
                            {key: [placed[name] for name in names[key]] for key in keys})
    every = {**manifest["checksums"], **{placed[name]: value for name, value in sums.items()}}
    grown["fragments_file"] = placed[FRAGMENTS]
    if sieve_entry.get("sieve_file"):
        sieve_entry["sieve_file"] = placed[sieve_entry["sieve_file"]]
    grown.update(sieve_entry)
    grown["checksums"] = {name: every[name] for name in [*grown["shards"], *grown.get("coarse_shards", []),
                                                          placed[FRAGMENTS], *filter(None, [grown.get("sieve_file")])]}
    write_manifest(directory, grown)
    _remove_unlisted(directory, grown)
    shutil.rmtree(partial)


def _grown_manifest(manifest: dict, parts: list[tuple[str, Reference]], added: list[dict], n_fragments: int,
                    first: int, new_shards: dict) -> dict:
    """The manifest with the genomes `parts` (entries `added`) after its own: contigs qualified by
    their genome, the old shards before `first` and then `new_shards` (per tier key)."""
    base = manifest["genomes"]
    contigs = manifest["contigs"] if len(base) > 1 else [[f"{base[0]['name']}:{c}", n] for c, n in manifest["contigs"]]
    contigs += [[f"{name}:{c}", n] for name, ref in parts for c, n in zip(ref.names, ref.lengths)]
    genomes = base + added
    manifest = {key: value for key, value in manifest.items()  # made anew on next open
                if key not in ("sequence", "seeds", "integer_scan")}
    grown = dict(manifest, reference_checksum=genomes_checksum([(g["name"], g["checksum"]) for g in genomes]),
                 contigs=contigs, genomes=genomes, n_fragments=int(n_fragments))
    for key, names in new_shards.items():
        grown[key] = manifest[key][:first] + names
    return grown


def _free_name(name: str, taken: set) -> str:
    """`name`, or `stem.K.ext` with the smallest K not in `taken`."""
    stem, _, ext = name.partition(".")
    k, candidate = 0, name
    while candidate in taken:
        k += 1
        candidate = f"{stem}.{k}.{ext}"
    return candidate


def _link(source: Path, target: Path) -> None:
    """`target` becomes `source`'s file (a hard link; a copy where the file system has none)."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _remove_unlisted(directory: Path, manifest: dict) -> None:
    """Remove our files (shards, fragment tables, the reference's bases and seeds, the saved integer
    scan, a manifest's temporary) that `manifest` does not list."""
    sequence = manifest.get("sequence") or {}
    listed = {MANIFEST, *manifest.get("checksums", {}), fragments_file(manifest), sequence.get("bases"),
              sequence.get("nruns"), *(manifest.get("seeds") or {}).get("files", []),
              *(manifest.get("integer_scan") or {}).get("files", [])}
    for path in directory.iterdir():
        ours = path.name.startswith(("shard", "prefix", "coarse", "fragments", "bases.", "nruns.", "seedkeys.",
                                     "seedpos.", "introws.", "intblocks.", "intnorms.")) or \
            path.name == MANIFEST + ".new"
        if ours and path.name not in listed and path.is_file():
            try:
                path.unlink()
            except OSError:
                pass
