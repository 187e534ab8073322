"""The reference's bases kept in the index (`store/sequence_file.py`): packing, windows, and when a
run reads them instead of the FASTA."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from dnaesa.cli import main
from dnaesa.pipeline import Aligner
from dnaesa.reference import Reference
from dnaesa.simulate import simulate_reads, write_fastq
from dnaesa.store import sequence_file
from dnaesa.store.sequence_file import PackedSequence


def _random_contigs(rng, lengths) -> list[str]:
    seqs = []
    for n in lengths:
        s = rng.choice(np.frombuffer(b"ACGT", np.uint8), n)
        for _ in range(rng.integers(0, 4)):  # runs of N, some at the ends
            lo = int(rng.integers(0, n))
            s[lo : lo + int(rng.integers(1, 40))] = ord("N")
        if n > 2 and rng.random() < 0.5:
            s[:2] = ord("N")
        seqs.append(s.tobytes().decode())
    return seqs


@pytest.mark.parametrize("chunk", [8, 64, 1 << 24])
def test_packed_bases_give_back_every_window(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(sequence_file, "PACK_CHUNK", chunk)  # runs of N across chunk edges
    rng = np.random.default_rng(chunk)
    seqs = _random_contigs(rng, [1, 3, 4, 5, 97, 250, 1001, 7]) + ["N" * 13, "ACGTN" * 9]
    sequence_file.pack(seqs, tmp_path / "b.npy", tmp_path / "n.npy")
    packed = PackedSequence(np.load(tmp_path / "b.npy", mmap_mode="r"), np.load(tmp_path / "n.npy"),
                            [len(s) for s in seqs])
    assert len(packed) == len(seqs) and list(packed) == seqs and packed[-1] == seqs[-1]
    assert np.load(tmp_path / "b.npy").nbytes == (sum(map(len, seqs)) + 3) // 4
    runs = np.load(tmp_path / "n.npy")
    assert (runs[1:, 0] > runs[:-1, 1]).all()  # touching runs were merged
    for _ in range(2000):
        ci = int(rng.integers(len(seqs)))
        a, b = sorted(int(x) for x in rng.integers(-5, len(seqs[ci]) + 5, 2))
        assert packed.fetch(ci, a, b) == seqs[ci][max(a, 0) : max(b, 0)]
    ref = Reference("x.fa", [f"c{i}" for i in range(len(seqs))], packed)
    assert ref.lengths == [len(s) for s in seqs] and ref.fetch(6, 10, 60) == seqs[6][10:60]


def test_the_sequence_tier_scores_the_same_from_packed_bases(random_ref, tmp_path):
    from dnaesa.model.base import load_encoder
    from dnaesa.store.sequence_tier import SequenceTier

    ref = Reference.load(random_ref)

    def with_ns(s: str) -> str:  # runs of N: at the start and end, inside a fragment, two in one, across a boundary
        for a, b in ((0, 5), (1000, 1037), (3100, 3102), (3500, 3600), (4990, 5013), (len(s) - 7, len(s))):
            s = s[:a] + "N" * (b - a) + s[b:]
        return s

    seqs = [with_ns(s) for s in ref.seqs]
    sequence_file.pack(seqs, tmp_path / "b.npy", tmp_path / "n.npy")
    packed = Reference(ref.path, ref.names, PackedSequence(np.load(tmp_path / "b.npy", mmap_mode="r"),
                                                           np.load(tmp_path / "n.npy"), [len(s) for s in seqs]))
    text = Reference(ref.path, ref.names, seqs)
    enc = load_encoder("default", "cpu")
    fragments = text.fragments(1250, 1000)
    last = len(seqs[0])  # rows that run past a contig's end, or lie beyond it, are clipped as `fetch` clips them
    fragments = np.concatenate([fragments, [[0, last - 100, last + 50], [0, last + 10, last + 20], [1, -5, 40]]])
    rng = np.random.default_rng(2)
    queries = enc.encode([text.fetch(0, s, s + 250) for s in rng.integers(0, 600_000, 8)])
    ids = np.concatenate([rng.integers(0, len(fragments), 300), np.arange(6), len(fragments) - np.arange(1, 5)])
    reads = rng.integers(0, 8, len(ids))
    a = SequenceTier(enc, text, fragments).scores(queries, reads, ids)
    b = SequenceTier(enc, packed, fragments).scores(queries, reads, ids)
    np.testing.assert_array_equal(a, b)


@pytest.fixture()
def lambda_copy(lambda_contigs, tmp_path, monkeypatch):
    """lambda in a FASTA of its own; runs keep its bases packed (`DECODE_UP_TO` = 0), as at scale."""
    monkeypatch.setattr(sequence_file, "DECODE_UP_TO", 0)
    ref = tmp_path / "lambda.fa"
    ref.write_text("".join(f">{name}\n{seq}\n" for name, seq in lambda_contigs))
    reads = tmp_path / "reads.fq"
    write_fastq(simulate_reads(lambda_contigs, 200, 150, seed=4), reads)
    return ref, reads


def test_a_second_run_reads_the_bases_from_the_index_and_writes_the_same_sam(lambda_copy, tmp_path):
    ref, reads = lambda_copy
    index = tmp_path / "idx"
    assert main(["-q", "align", str(reads), str(ref), "--encoder", "kmer", "--index", str(index),
                 "-o", str(tmp_path / "first.sam")]) == 0
    manifest = json.loads((index / "manifest.json").read_text())
    entry = manifest["sequence"]
    assert entry["stamps"] == [sequence_file.stamp(ref)] and (index / entry["bases"]).is_file()

    aligner = Aligner(str(ref), "kmer", index=index, device="cpu")
    assert isinstance(aligner.reference.seqs, PackedSequence)
    assert aligner.reference.checksum() == manifest["reference_checksum"]
    assert list(aligner.reference.seqs) == Reference.load(ref).seqs
    assert main(["-q", "align", str(reads), str(ref), "--encoder", "kmer", "--index", str(index),
                 "-o", str(tmp_path / "second.sam")]) == 0
    assert main(["-q", "align", str(reads), str(index), "--encoder", "kmer", "-o", str(tmp_path / "folder.sam")]) == 0
    first = [line for line in (tmp_path / "first.sam").read_text().splitlines() if not line.startswith("@PG")]
    for other in ("second.sam", "folder.sam"):
        assert [line for line in (tmp_path / other).read_text().splitlines() if not line.startswith("@PG")] == first


def test_a_touched_fasta_is_read_again_and_a_changed_one_is_not_served_from_the_index(lambda_copy, tmp_path):
    ref, reads = lambda_copy
    index = tmp_path / "idx"
    Aligner(str(ref), "kmer", index=index, device="cpu")
    st = os.stat(ref)
    os.utime(ref, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the same bases, a new time
    again = Aligner(str(ref), "kmer", index=index, device="cpu")
    assert isinstance(again.reference.seqs, list)  # read from the FASTA
    assert json.loads((index / "manifest.json").read_text())["sequence"]["stamps"] == [sequence_file.stamp(ref)]
    assert isinstance(Aligner(str(ref), "kmer", index=index, device="cpu").reference.seqs, PackedSequence)

    text = ref.read_text()
    ref.write_text(text.replace("ACGT", "ACGA", 1))  # one base changed
    code = main(["-q", "align", str(reads), str(ref), "--encoder", "kmer", "--index", str(index),
                 "-o", str(tmp_path / "x.sam")])
    assert code == 2 and not (tmp_path / "x.sam").exists()  # built for other input: refused, as before


def test_damaged_bases_are_not_used_and_are_written_anew(lambda_copy, tmp_path, caplog):
    ref, _ = lambda_copy
    index = tmp_path / "idx"
    Aligner(str(ref), "kmer", index=index, device="cpu")
    entry = json.loads((index / "manifest.json").read_text())["sequence"]
    bases = index / entry["bases"]
    data = bytearray(bases.read_bytes())
    data[-3] ^= 0xFF
    bases.write_bytes(bytes(data))
    aligner = Aligner(str(ref), "kmer", index=index, device="cpu")
    assert isinstance(aligner.reference.seqs, list) and "cannot be used" in caplog.text
    again = Aligner(str(ref), "kmer", index=index, device="cpu")
    assert isinstance(again.reference.seqs, PackedSequence) and list(again.reference.seqs) == Reference.load(ref).seqs


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_index_serves_without_its_bases(lambda_copy, tmp_path):
    ref, reads = lambda_copy
    index = tmp_path / "idx"
    Aligner(str(ref), "kmer", index=index, device="cpu")
    manifest = json.loads((index / "manifest.json").read_text())
    manifest.pop("sequence")
    (index / "manifest.json").write_text(json.dumps(manifest))
    for path in index.glob("*s.*.npy"):
        path.unlink()
    index.chmod(0o555)
    try:
        assert main(["-q", "align", str(reads), str(ref), "--encoder", "kmer", "--index", str(index),
                     "-o", str(tmp_path / "o.sam")]) == 0
    finally:
        index.chmod(0o755)


def test_a_small_reference_is_read_from_the_index_as_text(lambda_copy, tmp_path, monkeypatch):
    ref, _ = lambda_copy
    index = tmp_path / "idx"
    Aligner(str(ref), "kmer", index=index, device="cpu")
    monkeypatch.setattr(sequence_file, "DECODE_UP_TO", 64_000_000)
    loads = []
    monkeypatch.setattr(Reference, "load", classmethod(lambda cls, path: loads.append(path)))
    aligner = Aligner(str(ref), "kmer", index=index, device="cpu")
    assert loads == [] and isinstance(aligner.reference.seqs, list)
    monkeypatch.undo()
    assert aligner.reference.seqs == Reference.load(ref).seqs


def test_a_full_disk_while_packing_leaves_no_file_and_the_run_goes_on(lambda_copy, tmp_path, monkeypatch):
    ref, reads = lambda_copy
    index = tmp_path / "idx"
    calls = []

    def full(codes):  # the second chunk's write finds the disk full (a memory map would die of SIGBUS)
        calls.append(1)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real(codes)

    real = sequence_file._pack4
    monkeypatch.setattr(sequence_file, "PACK_CHUNK", 4096)
    monkeypatch.setattr(sequence_file, "_pack4", full)
    assert main(["-q", "align", str(reads), str(ref), "--encoder", "kmer", "--index", str(index),
                 "-o", str(tmp_path / "o.sam")]) == 0
    assert len(calls) == 2 and "sequence" not in json.loads((index / "manifest.json").read_text())
    assert not list(index.glob("bases.*")) and not list(index.glob("nruns.*"))
    assert (tmp_path / "o.sam").read_text().count("\n") > 200
