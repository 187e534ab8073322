"""Several genomes in one index: a genome added to an index gives the index (shards, fragment table,
hits) that a build of both at once gives, without touching the old full shards; reads are placed on
`GENOME:contig` end to end; an interrupted add resumes and leaves the old index usable; a moved or
changed FASTA, a name already there and a second writer are refused; one genome stays as it was."""
from __future__ import annotations

import gzip
import json
import os
import shutil

import numpy as np
import pytest
from test_store_index_dir import _Interrupting

from dnaesa.cli import main
from dnaesa.errors import IndexDirError
from dnaesa.evaluate import evaluate_sam
from dnaesa.model.base import load_encoder
from dnaesa.options import IndexOptions
from dnaesa.pipeline import Aligner
from dnaesa.reference import Reference, genome_name
from dnaesa.simulate import simulate_pairs, simulate_reads, write_fastq
from dnaesa.store import index_dir
from dnaesa.store.genomes import add_genomes
from dnaesa.store.index_dir import load_index, open_index

#: 300 bp fragments at stride 50: A makes 1,290 fragments (shards of 1,000 and 290), B 795, so the
#: add fills A's last shard and starts a third
OPTS = dict(fragment_len=300, max_read_len=250, shard_size=1000)


@pytest.fixture(scope="module")
def genomes(tmp_path_factory):
    """Random genomes A (two contigs, plain FASTA), B (one, gzip) and C; their paths by name."""
    rng = np.random.default_rng(17)
    folder = tmp_path_factory.mktemp("genomes")
    paths = {}
    for name, contigs in (("A", [("chr1", 40_000), ("chr2", 25_000)]), ("B", [("chr1", 40_000)]),
                          ("C", [("plasmid", 12_000)])):
        text = "".join(f">{c}\n{''.join(rng.choice(list('ACGT'), n))}\n" for c, n in contigs)
        path = folder / (f"{name}.fa.gz" if name == "B" else f"{name}.fa")
        path.write_bytes(gzip.compress(text.encode()) if name == "B" else text.encode())
        paths[name] = path
    return paths


@pytest.fixture(autouse=True)
def sieve_from_1024_fragments(monkeypatch):
    """The sieve (store/sieve.py) is built from 1,000,000 fragments; these small indexes get one too."""
    from dnaesa.store import sieve

    monkeypatch.setitem(sieve.SIEVE_PARAMS, "min_fragments", 1024)

@pytest.fixture(scope="module")
def encoder():
    return load_encoder("default", "cpu")


def _same_files(one, two, keys=("shards", "coarse_shards")) -> None:
    """The two indexes hold the same bytes, file for file in manifest order."""
    for key in keys:
        assert len(one.manifest.get(key, [])) == len(two.manifest.get(key, []))
        for a, b in zip(one.manifest.get(key, []), two.manifest.get(key, [])):
            assert (one.directory / a).read_bytes() == (two.directory / b).read_bytes(), (key, a, b)
    assert (one.directory / index_dir.fragments_file(one.manifest)).read_bytes() == \
        (two.directory / index_dir.fragments_file(two.manifest)).read_bytes()
    assert bool(one.manifest.get("sieve_file")) == bool(two.manifest.get("sieve_file"))
    if one.manifest.get("sieve_file"):  # a tiered index's sieve (store/sieve.py)
        assert (one.directory / one.manifest["sieve_file"]).read_bytes() == \
            (two.directory / two.manifest["sieve_file"]).read_bytes()
    if one.manifest.get("sequence") and two.manifest.get("sequence"):  # the reference's bases (sequence_file.py)
        for key in ("bases", "nruns"):
            assert (one.directory / one.manifest["sequence"][key]).read_bytes() == \
                (two.directory / two.manifest["sequence"][key]).read_bytes()
    if one.manifest.get("seeds") and two.manifest.get("seeds"):  # a lean index's seed table (seeds.py)
        for a, b in zip(one.manifest["seeds"]["files"], two.manifest["seeds"]["files"], strict=True):
            assert (one.directory / a).read_bytes() == (two.directory / b).read_bytes()
    if one.manifest.get("integer_scan") and two.manifest.get("integer_scan"):  # a flat index's (integer_scan.py)
        for a, b in zip(one.manifest["integer_scan"]["files"], two.manifest["integer_scan"]["files"], strict=True):
            assert (one.directory / a).read_bytes() == (two.directory / b).read_bytes()
    differ = {k for k in one.manifest.keys() | two.manifest.keys() if one.manifest.get(k) != two.manifest.get(k)}
    assert differ <= {"shards", "coarse_shards", "checksums", "fragments_file", "sieve_file", "sequence", "seeds",
                      "integer_scan"}


@pytest.mark.parametrize("kind", ["int4", "tiered", "flat", "lean"])
def test_added_genome_equals_building_both_at_once(genomes, encoder, tmp_path, kind):
    a, b = Reference.load(genomes["A"]), Reference.load(genomes["B"])
    opts = IndexOptions(index_kind=kind, **OPTS)
    grown = open_index(a, encoder, opts, tmp_path / "grown")
    assert grown.manifest["shards"] == [f"shard000.{'faiss' if kind == 'flat' else 'npy'}", grown.manifest["shards"][1]]
    full_shard = tmp_path / "grown" / grown.manifest["shards"][0]
    inode = full_shard.stat().st_ino
    grown = add_genomes(tmp_path / "grown", [("B", genomes["B"])], encoder, chunk=256,
                        workers=2 if kind == "tiered" else 1)  # in worker processes: the same bytes
    both = open_index(Reference.combine([("A", a), ("B", b)]), encoder, opts, tmp_path / "both")
    assert grown.store.ntotal == both.store.ntotal == 1_290 + 795 and len(grown.manifest["shards"]) == 3
    assert full_shard.stat().st_ino == inode  # the full shard of A was not rewritten
    _same_files(grown, both)
    assert [c for c, _ in grown.manifest["contigs"]] == ["A:chr1", "A:chr2", "B:chr1"]
    assert [(g["name"], g["fragments"]) for g in grown.manifest["genomes"]] == [("A", [0, 1290]), ("B", [1290, 2085])]
    assert sorted(p.name for p in (tmp_path / "grown").iterdir()) == sorted(
        ["manifest.json", grown.manifest["fragments_file"], *grown.manifest["shards"],
         *grown.manifest.get("coarse_shards", []), *filter(None, [grown.manifest.get("sieve_file")])])
    # nothing of the old index left over
    assert (kind in ("tiered", "lean")) == bool(grown.manifest.get("sieve_file"))
    if kind in ("lean", "flat"):  # its bases, seeds (and a flat one's saved integer scan) are made anew when it
        # is next opened: the same as a build's
        reopened = open_index(Reference.combine([("A", a), ("B", b)]), encoder, opts, tmp_path / "grown")
        assert reopened.seeds is not None and (kind == "lean" or reopened.manifest.get("integer_scan"))
        _same_files(reopened, both)
    assert not list(tmp_path.glob("*.partial"))
    queries = encoder.encode([b.fetch(0, s, s + 150) for s in range(0, 39_000, 1_500)])
    if kind == "lean":  # its stored tier only re-ranks: every fragment, on the prefix
        every = np.tile(np.arange(grown.store.ntotal), (len(queries), 1))
        np.testing.assert_array_equal(load_index(tmp_path / "grown").store.rerank(queries, every, 8)[1],
                                      load_index(tmp_path / "both").store.rerank(queries, every, 8)[1])
    else:
        np.testing.assert_array_equal(load_index(tmp_path / "grown").store.search(queries, 8)[1],
                                      load_index(tmp_path / "both").store.search(queries, 8)[1])


def _contigs(named: dict) -> list[tuple[str, str]]:
    """(GENOME:contig, sequence) of the genomes `named` (name -> FASTA path)."""
    return [(f"{genome}:{name}", seq) for genome, path in named.items()
            for name, seq in zip(Reference.load(path).names, Reference.load(path).seqs)]


def test_reads_are_placed_on_their_genome_end_to_end(genomes, tmp_path, capsys):
    folder = str(tmp_path / "idx")
    assert main(["-q", "index", str(genomes["A"]), "--index", folder, "--store", "int4"]) == 0
    assert main(["-q", "index", str(genomes["B"]), "--index", folder, "--add"]) == 0
    assert main(["-q", "index", str(genomes["C"]), "--index", folder, "--add", "--genome", "plasmids"]) == 0
    contigs = _contigs({"A": genomes["A"], "B": genomes["B"], "plasmids": genomes["C"]})
    write_fastq(simulate_reads(contigs, 300, 150, seed=4), tmp_path / "reads.fq")
    out = tmp_path / "out.sam"
    assert main(["-q", "align", str(tmp_path / "reads.fq"), folder, "-o", str(out)]) == 0
    report = evaluate_sam(out)
    assert report.total == 300 and report.correct >= 297
    sq = [line.split("\t")[1] for line in out.read_text().splitlines() if line.startswith("@SQ")]
    assert sq == ["SN:A:chr1", "SN:A:chr2", "SN:B:chr1", "SN:plasmids:plasmid"]
    records = [line.split("\t") for line in out.read_text().splitlines() if not line.startswith("@")]
    assert {r[2].split(":")[0] for r in records} == {"A", "B", "plasmids"}
    # one of the genomes' FASTA with --index brings the others: the same records
    again = tmp_path / "again.sam"
    assert main(["-q", "align", str(tmp_path / "reads.fq"), str(genomes["B"]), "--index", folder, "-o", str(again)]) == 0
    assert [ln for ln in again.read_text().splitlines() if not ln.startswith("@PG")] == \
        [ln for ln in out.read_text().splitlines() if not ln.startswith("@PG")]
    # pairs across the genomes: RNEXT names the mate's genome
    pairs = simulate_pairs(contigs, 150, 150, seed=5)
    write_fastq([p[0] for p in pairs], tmp_path / "r1.fq")
    write_fastq([p[1] for p in pairs], tmp_path / "r2.fq")
    paired = tmp_path / "pairs.sam"
    assert main(["-q", "align", str(tmp_path / "r1.fq"), str(tmp_path / "r2.fq"), folder, "-o", str(paired)]) == 0
    assert evaluate_sam(paired).correct >= 297
    # the Python API: the folder as the reference
    aligner = Aligner(folder, device="cpu")
    seq = dict(contigs)["plasmids:plasmid"][5_000:5_150]
    hit = aligner.map(seq)[0]
    assert (hit.contig, hit.ref_start) == ("plasmids:plasmid", 5_000)
    assert capsys.readouterr().err == ""


def test_several_genomes_at_once_from_the_command_line(genomes, tmp_path):
    both, grown = str(tmp_path / "both"), str(tmp_path / "grown")
    assert main(["-q", "index", str(genomes["A"]), str(genomes["B"]), "--index", both, "--store", "int4"]) == 0
    assert main(["-q", "index", str(genomes["A"]), "--index", grown, "--store", "int4"]) == 0
    assert main(["-q", "index", str(genomes["B"]), "--index", grown, "--add"]) == 0
    _same_files(load_index(tmp_path / "both"), load_index(tmp_path / "grown"))
    assert main(["-q", "index", str(genomes["B"]), str(genomes["A"]), "--index", both]) == 0  # found as it is
    assert json.loads((tmp_path / "both" / "manifest.json").read_text())["genomes"][0]["name"] == "A"


def test_interrupted_add_resumes_and_leaves_the_old_index_usable(genomes, encoder, tmp_path):
    a = Reference.load(genomes["A"])
    opts = IndexOptions(index_kind="int4", **OPTS)
    folder = tmp_path / "idx"
    old = open_index(a, encoder, opts, folder)
    old_manifest = (folder / "manifest.json").read_text()
    queries = encoder.encode([a.fetch(1, s, s + 150) for s in range(0, 24_000, 2_000)])
    before = old.store.search(queries, 5)
    with pytest.raises(KeyboardInterrupt):  # 3 chunks of 256 fill A's last shard (710 more): it is written
        add_genomes(folder, [("B", genomes["B"])], _Interrupting(encoder, 3), chunk=256)
    assert (folder / "manifest.json").read_text() == old_manifest
    assert (tmp_path / "idx.add.partial" / "shard001.npy").exists() and not (tmp_path / "idx.partial").exists()
    usable = load_index(folder)
    assert usable.store.ntotal == 1_290
    np.testing.assert_array_equal(usable.store.search(queries, 5)[1], before[1])
    resumed = _Interrupting(encoder, 100)
    grown = add_genomes(folder, [("B", genomes["B"])], resumed, chunk=256)
    assert resumed.embedded == 795 - 710  # only the fragments after the finished shard
    assert not (tmp_path / "idx.add.partial").exists()
    both = open_index(Reference.combine([("A", a), ("B", Reference.load(genomes["B"]))]), encoder, opts,
                      tmp_path / "both")
    _same_files(grown, both)


def _one_error(capsys, *words) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dnaesa: error: ") and all(w in err for w in words), err
    return err


def test_moved_or_changed_fasta_is_refused_in_one_line(genomes, tmp_path, capsys):
    for name in ("A", "B"):
        shutil.copy(genomes[name], tmp_path / genomes[name].name)
    a, b = tmp_path / genomes["A"].name, tmp_path / genomes["B"].name
    folder = str(tmp_path / "idx")
    assert main(["-q", "index", str(a), str(b), "--index", folder]) == 0
    write_fastq(simulate_reads(_contigs({"A": a}), 20, 150, seed=1), tmp_path / "reads.fq")
    align = ["-q", "align", str(tmp_path / "reads.fq"), folder, "-o", str(tmp_path / "out.sam")]
    moved = tmp_path / "moved.fa.gz"
    b.rename(moved)
    assert main(align) == 2
    _one_error(capsys, str(b), "genome B", "no such file")
    assert not (tmp_path / "out.sam").exists()
    # given at its new place it serves; `dnaesa index NEW --index DIR` records the place
    assert main(["-q", "align", str(tmp_path / "reads.fq"), str(moved), "--index", folder, "-o", str(tmp_path / "x.sam")]) == 0
    assert main(["-q", "index", str(moved), "--index", folder]) == 0
    assert main(align) == 0
    text = a.read_text().replace("ACGT", "ACGA", 1)  # one base changed
    a.write_text(text)
    assert main(align) == 2
    _one_error(capsys, str(a), "changed since it was indexed as genome A")
    assert main(["-q", "align", str(tmp_path / "reads.fq"), str(a), "--index", folder, "-o", str(tmp_path / "y.sam")]) == 2
    _one_error(capsys, "changed since it was indexed as genome A")
    assert main(["-q", "align", str(tmp_path / "reads.fq"), str(genomes["C"]), "--index", folder]) == 2
    _one_error(capsys, "holds the genomes A, B", "not one of them")


def test_names_writers_and_folders_are_checked(genomes, tmp_path, capsys):
    folder = tmp_path / "idx"
    assert main(["-q", "index", str(genomes["A"]), "--index", str(folder)]) == 0
    manifest = (folder / "manifest.json").read_text()
    assert main(["-q", "index", str(genomes["C"]), "--index", str(folder), "--add", "--genome", "A"]) == 2
    _one_error(capsys, "already holds a genome named A", "--genome NAME")
    renamed = tmp_path / "C.fa"
    shutil.copy(genomes["A"], renamed)
    assert main(["-q", "index", str(renamed), "--index", str(folder), "--add"]) == 2
    _one_error(capsys, "the same sequences as genome A")
    assert main(["-q", "index", str(genomes["C"]), "--index", str(folder), "--add", "--genome", "a:b"]) == 2
    _one_error(capsys, "genome name 'a:b'")
    assert main(["-q", "index", str(genomes["C"]), "--index", str(folder), "--add", "--store", "int4"]) == 2
    _one_error(capsys, "index_kind is flat, not int4")
    assert main(["-q", "index", str(genomes["C"]), "--index", str(folder), "--add", "--encoder", "kmer"]) == 2
    _one_error(capsys, "built with the encoder")
    lock = index_dir.lock_partial(tmp_path / "idx.partial")  # another writer
    assert main(["-q", "index", str(genomes["C"]), "--index", str(folder), "--add"]) == 2
    _one_error(capsys, "another dnaesa process is writing this index")
    os.close(lock)
    assert (folder / "manifest.json").read_text() == manifest and not (tmp_path / "idx.add.partial").exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep").write_text("x")
    assert main(["-q", "index", str(genomes["C"]), "--index", str(other), "--add"]) == 2
    _one_error(capsys, "is not a dnaesa index")
    assert [p.name for p in other.iterdir()] == ["keep"]
    assert main(["-q", "index", str(genomes["C"]), "--add"]) == 2
    _one_error(capsys, "--add needs --index DIR")
    assert main(["-q", "index", str(genomes["A"]), str(genomes["C"]), "--index", str(folder)]) == 2
    _one_error(capsys, "built for other input", "--add")  # an index of A, asked for A and C
    with pytest.raises(IndexDirError, match="holds no index"):
        add_genomes(tmp_path / "none", [("C", genomes["C"])], load_encoder("default", "cpu"))


@pytest.mark.parametrize("path, name", [("ref/ecoli_k12.fa.gz", "ecoli_k12"), ("GRCh38.p14.FASTA", "GRCh38.p14"),
                                        ("x.fna", "x"), ("plain", "plain"), (".fa", ".fa")])
def test_genome_named_by_its_file(path, name):
    assert genome_name(path) == name


def test_one_genome_stays_as_it_was(genomes, tmp_path, capsys):
    folder = tmp_path / "idx"
    aligner = Aligner(str(genomes["A"]), index=folder, device="cpu")
    assert aligner.reference.names == ["chr1", "chr2"] and aligner.reference.genomes == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [c for c, _ in manifest["contigs"]] == ["chr1", "chr2"]
    assert manifest["reference_checksum"] == Reference.load(genomes["A"]).checksum()
    assert manifest["genomes"] == [{"name": "A", "path": str(genomes["A"]), "checksum": manifest["reference_checksum"],
                                    "contigs": 2, "fragments": [0, manifest["n_fragments"]]}]
    # the folder alone stands for its one genome: the same names
    assert Aligner(str(folder), device="cpu").reference.names == ["chr1", "chr2"]
    # an index of an older dnaesa (no genomes recorded) is used as before; --add asks to record it first
    del manifest["genomes"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert Aligner(str(genomes["A"]), index=folder, device="cpu").index.store.ntotal == manifest["n_fragments"]
    assert main(["-q", "index", str(genomes["B"]), "--index", str(folder), "--add"]) == 2
    _one_error(capsys, "does not record its genome", "dnaesa index REF.fa --index")
    assert main(["-q", "index", str(genomes["A"]), "--index", str(folder), "--genome", "first"]) == 0
    assert main(["-q", "index", str(genomes["B"]), "--index", str(folder), "--add"]) == 0
    assert [g["name"] for g in load_index(folder).manifest["genomes"]] == ["first", "B"]


def test_an_index_of_several_genomes_keeps_their_bases_after_an_add(genomes, tmp_path, monkeypatch):
    """After `--add`, the next run reads every genome's FASTA and keeps their bases (one stamp per
    genome); later runs, given the folder or one genome's FASTA, read the bases instead and write
    the same records."""
    from dnaesa.store import sequence_file

    monkeypatch.setattr(sequence_file, "DECODE_UP_TO", 0)  # packed, as at genome scale
    folder = tmp_path / "idx"
    assert main(["-q", "index", str(genomes["A"]), "--index", str(folder)]) == 0
    assert main(["-q", "index", str(genomes["B"]), "--index", str(folder), "--add"]) == 0
    assert "sequence" not in json.loads((folder / "manifest.json").read_text())  # the add drops A's
    assert not list(folder.glob("bases.*"))
    write_fastq(simulate_reads(_contigs({"A": genomes["A"], "B": genomes["B"]}), 60, 150, seed=3), tmp_path / "r.fq")
    runs = {}
    for name, ref in (("first", [str(folder)]), ("folder", [str(folder)]),
                      ("fasta", [str(genomes["B"]), "--index", str(folder)])):
        assert main(["-q", "align", str(tmp_path / "r.fq"), *ref, "-o", str(tmp_path / f"{name}.sam")]) == 0
        runs[name] = [line for line in (tmp_path / f"{name}.sam").read_text().splitlines() if not line.startswith("@PG")]
    entry = json.loads((folder / "manifest.json").read_text())["sequence"]
    assert entry["stamps"] == [sequence_file.stamp(genomes["A"]), sequence_file.stamp(genomes["B"])]
    assert runs["first"] == runs["folder"] == runs["fasta"] and any("\tB:chr1\t" in line for line in runs["first"])
    packed = Aligner(str(folder), device="cpu").reference
    assert isinstance(packed.seqs, sequence_file.PackedSequence) and packed.names == ["A:chr1", "A:chr2", "B:chr1"]
    assert packed.fetch(2, 100, 200) == Reference.load(genomes["B"]).fetch(0, 100, 200)
