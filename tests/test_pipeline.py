"""End to end on lambda phage: placement accuracy, SAM correctness, unmapped reads, index reuse."""
from __future__ import annotations

import gzip
import random
import shutil
import subprocess

import pysam
import pytest

from dnaesa.pipeline import Aligner
from dnaesa.simulate import simulate_reads, write_fastq


def _correct(aln, read, tolerance=5) -> bool:
    lead = aln.cigar[0][1] if aln.cigar[0][0] == 4 else 0
    return (aln.contig == read.contig and aln.reverse == read.reverse
            and abs(aln.ref_start - lead - read.start) <= tolerance)


@pytest.mark.parametrize("length", [100, 150, 250, 400])
def test_places_reads_of_each_length(kmer_aligner, lambda_contigs, length):
    reads = simulate_reads(lambda_contigs, 300, length, seed=length, sub_rate=0.01, indel_rate=0.002)
    results = kmer_aligner.map_batch([r.seq for r in reads])
    correct = sum(bool(hits) and _correct(hits[0], r) for r, hits in zip(reads, results))
    assert correct / len(reads) >= 0.99, f"{correct}/{len(reads)} placed correctly at {length} bp"


def test_places_reads_with_indels_on_both_strands(kmer_aligner, lambda_contigs):
    reads = simulate_reads(lambda_contigs, 600, 250, seed=7, sub_rate=0.01, indel_rate=0.004, max_indel=3)
    assert {r.reverse for r in reads} == {True, False}
    results = kmer_aligner.map_batch([r.seq for r in reads])
    correct = sum(bool(hits) and _correct(hits[0], r) for r, hits in zip(reads, results))
    assert correct / len(reads) >= 0.99
    with_gaps = [h[0] for h in results if h and any(op in (1, 2) for op, _ in h[0].cigar)]
    assert len(with_gaps) > 20, "the simulated indels should show up as I/D in CIGARs"


def test_unmapped_reads(kmer_aligner):
    rng = random.Random(5)
    random_read = "".join(rng.choice("ACGT") for _ in range(250))
    assert kmer_aligner.map(random_read) == []
    assert kmer_aligner.map("N" * 250) == []
    assert kmer_aligner.map("ACGT") == []


def test_sam_agrees_with_reference(kmer_aligner, lambda_contigs, tmp_path):
    reads = simulate_reads(lambda_contigs, 200, 150, seed=11, indel_rate=0.004)
    fq = tmp_path / "reads.fq"
    write_fastq(reads, fq)
    with open(fq, "a") as fh:  # two reads that must come out unmapped, at the end
        fh.write("@junk\n" + "N" * 150 + "\n+\n" + "I" * 150 + "\n")
        fh.write("@short\nACGTAC\n+\nIIIIII\n")
    out = tmp_path / "out.sam"
    summary = kmer_aligner.align_file(str(fq), str(out))
    assert summary.reads == 202
    ref = dict(lambda_contigs)
    by_name = {r.name: r for r in reads}
    with pysam.AlignmentFile(str(out)) as sam:
        header = sam.header.to_dict()
        records = list(sam)
    assert header["SQ"] == [{"SN": n, "LN": len(s)} for n, s in lambda_contigs]
    assert header["PG"][0]["ID"] == "dnaesa"
    assert [r.query_name for r in records] == [r.name for r in reads] + ["junk", "short"]
    for rec in records[:-2]:
        sim = by_name[rec.query_name]
        assert rec.query_length == len(sim.seq) == rec.infer_query_length()
        assert not rec.is_secondary and rec.mapping_quality <= 60
        # SEQ is the forward-strand sequence: reverse reads come back reverse-complemented
        expected = sim.seq if not rec.is_reverse else _revcomp(sim.seq)
        assert rec.query_sequence == expected
        assert rec.qual == (sim.qual if not rec.is_reverse else sim.qual[::-1])
        # NM and MD agree with the reference, base by base
        pairs = rec.get_aligned_pairs(with_seq=True)
        contig = ref[rec.reference_name]
        mismatches = sum(1 for q, r, b in pairs if q is not None and r is not None
                         and rec.query_sequence[q] != contig[r])
        gaps = sum(n for op, n in rec.cigartuples if op in (1, 2))
        assert rec.get_tag("NM") == mismatches + gaps
        for _q, r, b in pairs:
            if r is not None:
                assert b.upper() == contig[r]
        # POS is the first aligned reference base
        first = next(r for q, r in rec.get_aligned_pairs() if r is not None and q is not None)
        assert rec.reference_start == first
    for rec in records[-2:]:
        assert rec.is_unmapped and rec.mapping_quality == 0 and rec.reference_name is None


def test_bam_output_sorted_indexed(kmer_aligner, lambda_contigs, tmp_path):
    reads = simulate_reads(lambda_contigs, 50, 250, seed=3)
    fq = tmp_path / "reads.fq.gz"
    with gzip.open(fq, "wt") as fh:
        for r in reads:
            fh.write(f"@{r.name}\n{r.seq}\n+\n{r.qual}\n")
    out = tmp_path / "out.bam"
    kmer_aligner.align_file(str(fq), str(out), read_group="@RG\\tID:g1\\tSM:s1")
    with pysam.AlignmentFile(str(out)) as bam:
        assert bam.header.to_dict()["HD"]["SO"] == "coordinate"
        assert bam.header.to_dict()["RG"][0]["ID"] == "g1"
        recs = list(bam)
        assert len(recs) == 50 and all(r.get_tag("RG") == "g1" for r in recs)
        starts = [r.reference_start for r in recs]
        assert starts == sorted(starts)
    assert (tmp_path / "out.bam.bai").exists()
    if shutil.which("samtools"):
        subprocess.run(["samtools", "quickcheck", str(out)], check=True)


def test_secondary_alignments_for_a_repeat(tmp_path):
    rng = random.Random(9)
    unit = "".join(rng.choice("ACGT") for _ in range(400))
    filler = ["".join(rng.choice("ACGT") for _ in range(3000)) for _ in range(3)]
    ref = tmp_path / "rep.fa"
    ref.write_text(">rep\n" + filler[0] + unit + filler[1] + unit + filler[2] + "\n")
    aligner = Aligner(ref, "kmer", index=tmp_path / "idx", secondary=1, device="cpu")
    hits = aligner.map(unit[50:300])
    assert len(hits) == 2 and hits[0].mapq == 0 and hits[0].sub_score == hits[0].score
    unique = aligner.map(filler[1][100:350])
    assert len(unique) == 1 and unique[0].mapq == 60


def test_index_reused_and_rebuilt_when_reference_changes(tmp_path, lambda_contigs, caplog):
    name, seq = lambda_contigs[0]
    ref = tmp_path / "ref.fa"
    ref.write_text(f">{name}\n{seq[:20000]}\n")
    caplog.set_level("INFO", logger="dnaesa")
    Aligner(ref, "kmer", device="cpu")
    index_dir = tmp_path / "ref.fa.dnaesa-index"
    assert (index_dir / "manifest.json").exists()
    stamp = (index_dir / "manifest.json").stat().st_mtime_ns
    caplog.clear()
    Aligner(ref, "kmer", device="cpu")
    assert (index_dir / "manifest.json").stat().st_mtime_ns == stamp
    assert "building" not in caplog.text
    ref.write_text(f">{name}\n{seq[:20000]}ACGTACGTTT\n")
    aligner = Aligner(ref, "kmer", device="cpu")
    assert "reference changed" in caplog.text
    assert aligner.reference.lengths == [20010]
    other = Aligner(ref, "kmer", device="cpu", max_read_len=400)
    assert other.index.manifest["options"]["max_read_len"] == 400


def _revcomp(seq: str) -> str:
    return seq.translate(str.maketrans("ACGTN", "TGCAN"))[::-1]


def test_tandem_copy_in_the_same_window_counts_against_mapq(tmp_path):
    """Two copies 300 bp apart fall in one candidate window; the second must still be found."""
    rng = random.Random(21)
    unit = "".join(rng.choice("ACGT") for _ in range(200))
    spacer = "".join(rng.choice("ACGT") for _ in range(300))
    flank = ["".join(rng.choice("ACGT") for _ in range(4000)) for _ in range(2)]
    ref = tmp_path / "tandem.fa"
    ref.write_text(">t\n" + flank[0] + unit + spacer + unit + flank[1] + "\n")
    aligner = Aligner(ref, "kmer", index=tmp_path / "idx", device="cpu", secondary=1)
    hits = aligner.map(unit[20:180])
    assert len(hits) == 2 and hits[0].score == hits[1].score and hits[0].mapq == 0
    assert sorted(h.ref_start for h in hits) == [4020, 4520]


def test_small_reference_aligns_without_importing_torch(lambda_ref, tmp_path):
    """Time to the first record: importing torch costs a second or more, and a flat store of a
    few Mb is searched by FAISS, with the numpy encoder (issue 12)."""
    import subprocess
    import sys

    code = ("import sys; from dnaesa.pipeline import Aligner; "
            f"a = Aligner({str(lambda_ref)!r}, index={str(tmp_path / 'idx')!r}, device='auto', threads=1); "
            "s = a.reference.seqs[0]; assert a.map(s[1000:1150])[0].ref_start == 1000; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
