"""Paired-end and split reads: flags, mate fields and TLEN as the SAM specification says; the insert
size estimated; mates chosen jointly (a unique mate vouches for one in a repeat); mate rescue; bad pairs;
supplementary records with SA tags for reads split by a deletion, a contig end or a chimera."""
from __future__ import annotations

import random

import pysam
import pytest

from dnaesa.align.candidates import Candidate
from dnaesa.align.pairing import InsertSize, estimate_insert_size, parse_insert_size
from dnaesa.align.place import place_pair, place_read
from dnaesa.align.refine import Refiner
from dnaesa.cli import main
from dnaesa.errors import OptionsError
from dnaesa.options import MapOptions
from dnaesa.reference import Reference
from dnaesa.simulate import parse_truth, simulate_pairs, write_fastq


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory, lambda_contigs):
    folder = tmp_path_factory.mktemp("pairs")
    pairs = simulate_pairs(lambda_contigs, 600, 150, seed=7)
    write_fastq([p[0] for p in pairs], folder / "r1.fq")
    write_fastq([p[1] for p in pairs], folder / "r2.fq")
    write_fastq([read for pair in pairs for read in pair], folder / "inter.fq")
    return folder


@pytest.fixture()
def align(tmp_path_factory, lambda_ref, capsys):
    index = ["--encoder", "kmer", "--device", "cpu", "--index", str(tmp_path_factory.getbasetemp() / "pairs.idx")]

    def run(*files, extra=()):
        *reads, out = files
        code = main(["-q", "align", *map(str, reads), str(lambda_ref), "-o", str(out), *extra, *index])
        return code, capsys.readouterr().err.strip().splitlines()

    return run


def _records(path) -> list[pysam.AlignedSegment]:
    with pysam.AlignmentFile(str(path)) as fh:
        return list(fh)


def test_pairs_flags_mate_fields_and_tlen(pair_files, align, tmp_path):
    out = tmp_path / "pe.sam"
    code, err = align(pair_files / "r1.fq", pair_files / "r2.fq", out)
    assert code == 0, err
    recs = _records(out)
    assert len(recs) == 1200
    correct = 0
    assert sum(r.is_proper_pair for r in recs) >= 0.99 * 1200  # inserts beyond mean +- 4 sd are not proper
    for one, two in zip(recs[0::2], recs[1::2]):
        assert one.query_name == two.query_name and one.is_read1 and two.is_read2
        assert one.is_proper_pair == two.is_proper_pair
        for me, mate in ((one, two), (two, one)):
            assert me.is_paired
            assert me.next_reference_id == mate.reference_id and me.next_reference_start == mate.reference_start
            assert me.mate_is_reverse == mate.is_reverse
            assert me.get_tag("MC") == mate.cigarstring and me.get_tag("MQ") == mate.mapping_quality
        assert one.template_length == -two.template_length != 0
        left = one if one.reference_start <= two.reference_start else two
        assert left.template_length == max(one.reference_end, two.reference_end) - left.reference_start
        assert one.is_reverse != two.is_reverse
        truth = parse_truth(one.query_name)
        fwd = two if one.is_reverse else one
        correct += abs(fwd.reference_start - truth.start) <= 5
    assert correct >= 0.99 * 600


def test_interleaved_equals_two_files(pair_files, align, tmp_path):
    assert align(pair_files / "r1.fq", pair_files / "r2.fq", tmp_path / "a.sam")[0] == 0
    assert align(pair_files / "inter.fq", tmp_path / "b.sam", extra=["--interleaved"])[0] == 0
    body = [(tmp_path / n).read_text().split("@PG")[1].split("\n", 1)[1] for n in ("a.sam", "b.sam")]
    assert body[0] == body[1]


def test_given_insert_size_and_bam(pair_files, align, tmp_path):
    code, err = align(pair_files / "r1.fq", pair_files / "r2.fq", tmp_path / "pe.bam", extra=["-I", "400,40"])
    assert code == 0, err
    recs = _records(tmp_path / "pe.bam")
    assert len(recs) == 1200 and sum(r.is_proper_pair for r in recs) >= 1190


@pytest.mark.parametrize("text", ["400", "x,1", "-5,3", "400,0", "1,2,3"])
def test_bad_insert_size(text):
    if text == "400":
        assert parse_insert_size(text) == InsertSize(400.0, 40.0)
        return
    with pytest.raises(OptionsError):
        parse_insert_size(text)


def test_mismatched_mate_names(pair_files, align, tmp_path):
    lines = (pair_files / "r2.fq").read_text().splitlines()
    lines[4 * 5] = "@someone_else/2"
    bad = tmp_path / "bad2.fq"
    bad.write_text("\n".join(lines) + "\n")
    code, err = align(pair_files / "r1.fq", bad, tmp_path / "o.sam")
    assert code == 2 and len(err) == 1 and "bad2.fq: record 6 (someone_else)" in err[0]
    assert not (tmp_path / "o.sam").exists()


def test_mate_files_of_different_lengths(pair_files, align, tmp_path):
    short = tmp_path / "short2.fq"
    short.write_text("\n".join((pair_files / "r2.fq").read_text().splitlines()[: 4 * 100]) + "\n")
    code, err = align(pair_files / "r1.fq", short, tmp_path / "o.sam")
    assert code == 2 and len(err) == 1 and "short2.fq: record 101" in err[0] and "ends after 100 reads" in err[0]
    assert not (tmp_path / "o.sam").exists()


def test_odd_interleaved_file(pair_files, align, tmp_path):
    odd = tmp_path / "odd.fq"
    odd.write_text("\n".join((pair_files / "inter.fq").read_text().splitlines()[: 4 * 7]) + "\n")
    code, err = align(odd, tmp_path / "o.sam", extra=["--interleaved"])
    assert code == 2 and len(err) == 1 and "odd.fq: record 7" in err[0]


def test_unmapped_mate_takes_its_partners_position(pair_files, align, tmp_path, lambda_contigs):
    seq = lambda_contigs[0][1]
    rng = random.Random(3)
    junk = "".join(rng.choice("ACGT") for _ in range(150))
    r1 = tmp_path / "u1.fq"
    r2 = tmp_path / "u2.fq"
    r1.write_text(f"@p/1\n{seq[10_000:10_150]}\n+\n{'I' * 150}\n")
    r2.write_text(f"@p/2\n{junk}\n+\n{'I' * 150}\n")
    code, err = align(r1, r2, tmp_path / "o.sam", extra=["-I", "400,40"])
    assert code == 0, err
    one, two = _records(tmp_path / "o.sam")
    assert not one.is_unmapped and one.mate_is_unmapped and not one.is_proper_pair
    assert two.is_unmapped and two.reference_id == one.reference_id and two.reference_start == one.reference_start
    assert one.next_reference_start == one.reference_start and two.next_reference_start == one.reference_start
    assert one.template_length == two.template_length == 0


def _repeat_reference(lambda_contigs) -> Reference:
    """Lambda with 300 bp at 20,000 copied over 30,000: two exact copies, unique around them."""
    name, seq = lambda_contigs[0]
    return Reference("rep", [name], [seq[:30_000] + seq[20_000:20_300] + seq[30_300:]])


def test_unique_mate_vouches_for_one_in_a_repeat(lambda_contigs):
    ref = _repeat_reference(lambda_contigs)
    seq = ref.seqs[0]
    refiner = Refiner(ref, MapOptions())
    mate1 = seq[20_100:20_250]  # inside the repeat: two equal placements
    mate2 = seq[20_350:20_500]  # unique, 250 bp downstream
    from dnaesa.dna import reverse_complement

    mate2 = reverse_complement(mate2)
    whole = [Candidate(0, 0, len(seq), None)]
    alone = place_read(refiner, mate1, whole)
    assert len(alone) >= 2 and alone[0].mapq == 0
    choice = place_pair(refiner, (mate1, mate2), [(whole, None), (whole, None)], InsertSize(400, 40), ref.lengths)
    assert choice.proper and choice.first.ref_start == 20_100 and choice.first.mapq >= 20


def test_mate_rescue_finds_a_mate_the_search_missed(lambda_contigs):
    ref = Reference("lambda", [lambda_contigs[0][0]], [lambda_contigs[0][1]])
    seq = ref.seqs[0]
    from dnaesa.dna import reverse_complement

    mate1, mate2 = seq[5_000:5_150], reverse_complement(seq[5_250:5_400])
    refiner = Refiner(ref, MapOptions())
    found = [Candidate(0, 4_800, 5_400, None)]
    choice = place_pair(refiner, (mate1, mate2), [(found, None), ([], None)], InsertSize(400, 40), ref.lengths)
    assert choice.proper and choice.second is not None and choice.second.ref_start == 5_250 and choice.second.reverse
    without = place_pair(refiner, (mate1, mate2), [(found, None), ([], None)], None, ref.lengths)
    assert without.second is None and not without.proper


def test_insert_size_estimate_ignores_outliers():
    from dnaesa.align.types import Alignment

    def aln(start, reverse):
        return Alignment("c", 0, start, start + 100, reverse, [(0, 100)], 0, "100", 100, mapq=60)

    pairs = [([aln(1000 * i, False)], [aln(1000 * i + 300 + (i % 5) * 10, True)]) for i in range(100)]
    pairs += [([aln(500_000 + i, False)], [aln(900_000, True)]) for i in range(3)]  # chimeras
    est = estimate_insert_size(pairs)
    assert est.orientation == "FR" and 415 <= est.mean <= 425 and 5 <= est.sd <= 20 and est.pairs == 103


@pytest.fixture(scope="module")
def split_reads(tmp_path_factory, lambda_contigs):
    """Reads across a 300 bp deletion, across the contig's end and start (a circular genome's
    origin), and a chimera of two distant loci on opposite strands."""
    from dnaesa.dna import reverse_complement

    seq = lambda_contigs[0][1]
    reads = {"deletion": seq[20_000:20_125] + seq[20_425:20_550], "origin": seq[-130:] + seq[:120],
             "chimera": seq[5_000:5_125] + reverse_complement(seq[30_000:30_125])}
    path = tmp_path_factory.mktemp("split") / "split.fq"
    path.write_text("".join(f"@{name}\n{read}\n+\n{'I' * len(read)}\n" for name, read in reads.items()))
    return path


@pytest.mark.parametrize("mark_secondary", [False, True])
def test_split_reads_get_supplementary_records_with_sa(split_reads, align, tmp_path, lambda_contigs, mark_secondary):
    length = len(lambda_contigs[0][1])
    code, err = align(split_reads, tmp_path / "o.sam", extra=["-M"] if mark_secondary else [])
    assert code == 0, err
    recs = _records(tmp_path / "o.sam")
    by_name: dict = {}
    for r in recs:
        by_name.setdefault(r.query_name, []).append(r)
    want = {"deletion": {20_000, 20_425}, "origin": {0, length - 130}, "chimera": {5_000, 30_000}}
    for name, starts in want.items():
        primary = [r for r in by_name[name] if not r.is_supplementary and not r.is_secondary]
        other = [r for r in by_name[name] if (r.is_secondary if mark_secondary else r.is_supplementary)]
        assert len(primary) == 1 and len(other) == 1, name
        assert {primary[0].reference_start, other[0].reference_start} == starts, name
        assert primary[0].mapping_quality >= 20, name  # the other half is no rival placement
        assert other[0].query_sequence and len(other[0].query_sequence) == 250
        for me, part in ((primary[0], other[0]), (other[0], primary[0])):
            rname, pos, strand, cigar, _, _ = me.get_tag("SA").rstrip(";").split(",")
            assert int(pos) - 1 == part.reference_start and cigar == part.cigarstring
            assert strand == ("-" if part.is_reverse else "+")
    chimera = by_name["chimera"]
    assert chimera[0].is_reverse != chimera[1].is_reverse


def test_split_mate_in_a_pair(align, tmp_path, lambda_contigs):
    """Mate 1 crosses a 300 bp deletion: its other part is a supplementary record that keeps the
    pair's flags and mate fields (not proper, TLEN 0), with SA tags both ways."""
    from dnaesa.dna import reverse_complement

    seq = lambda_contigs[0][1]
    one = seq[20_000:20_075] + seq[20_375:20_450]  # 75 + 75 across a 300 bp deletion
    two = reverse_complement(seq[20_500:20_650])
    (tmp_path / "s1.fq").write_text(f"@q/1\n{one}\n+\n{'I' * 150}\n")
    (tmp_path / "s2.fq").write_text(f"@q/2\n{two}\n+\n{'I' * 150}\n")
    code, err = align(tmp_path / "s1.fq", tmp_path / "s2.fq", tmp_path / "o.sam", extra=["-I", "500,80"])
    assert code == 0, err
    recs = _records(tmp_path / "o.sam")
    supp = [r for r in recs if r.is_supplementary]
    first = [r for r in recs if r.is_read1 and not r.is_supplementary]
    assert len(supp) == 1 and len(first) == 1 and supp[0].is_read1 and supp[0].is_paired
    assert {first[0].reference_start, supp[0].reference_start} == {20_000, 20_375}
    mate = next(r for r in recs if r.is_read2)
    assert supp[0].next_reference_start == mate.reference_start and supp[0].template_length == 0
    assert first[0].has_tag("SA") and supp[0].has_tag("SA")


def test_hard_clipped_supplementary(split_reads, align, tmp_path):
    code, err = align(split_reads, tmp_path / "o.sam", extra=["--hard-clip"])
    assert code == 0, err
    for rec in _records(tmp_path / "o.sam"):
        if rec.is_supplementary:
            assert "H" in rec.cigarstring and "S" not in rec.cigarstring
            assert len(rec.query_sequence) == rec.query_alignment_length < 250
        else:
            assert "H" not in rec.cigarstring and len(rec.query_sequence) == 250
