"""Seeds (store/seeds.py): the sampled k-mers (compiled and numpy paths alike, strand-free), the
fragments a read's seeds point to, which reads they may settle, the table kept in a lean index
(made once, checked, remade when stale, left out where it cannot be written or read), and reads
placed with seeds as without."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from dnaesa import compiled
from dnaesa.dna import reverse_complement
from dnaesa.model.base import load_encoder
from dnaesa.options import IndexOptions
from dnaesa.pipeline import Aligner
from dnaesa.reference import Reference
from dnaesa.store import seeds
from dnaesa.store.index_dir import open_index
from dnaesa.store.sequence_file import PackedSequence, pack

PARAMS = seeds.SEED_PARAMS
K = PARAMS["k"]


@pytest.fixture(autouse=True)
def small_sieve(monkeypatch):
    """The coarse tier's sieve is built from 1,000,000 fragments; these small indexes get one too."""
    from dnaesa.store import sieve

    monkeypatch.setitem(sieve.SIEVE_PARAMS, "min_fragments", 1024)


def _codes(text: str) -> np.ndarray:
    return seeds._CODES[np.frombuffer(text.encode(), dtype=np.uint8)]


@pytest.mark.skipif(compiled.load(compiled.SEEDS) is None, reason="the seeds kernel is not built")
@pytest.mark.parametrize("k, sample", [(5, 1), (19, 16), (31, 4), (32, 2)])
def test_compiled_and_numpy_sampling_agree(k, sample):
    rng = np.random.default_rng(k)
    for n in (0, k - 1, k, k + 1, 5_000):
        codes = rng.integers(0, 4, n).astype(np.uint8)
        codes[rng.random(n) < 0.02] = 4  # Ns break the k-mers over them
        got = seeds.sampled_kmers(codes, k, sample)
        want = seeds._sampled_kmers_numpy(codes, k, sample)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert len(want[0]) > 5_000 // sample // 3  # the test is not all empty


def test_sampling_is_strand_free_and_skips_ns():
    rng = np.random.default_rng(1)
    seq = "".join(rng.choice(list("ACGT"), 4_000))
    fwd_keys, fwd_pos = seeds.sampled_kmers(_codes(seq), K, 16)
    rev_keys, rev_pos = seeds.sampled_kmers(_codes(reverse_complement(seq)), K, 16)
    assert len(fwd_keys) > 100
    # the same k-mers on the other strand: keys equal but for the strand bit, positions mirrored
    order = np.argsort(len(seq) - K - rev_pos)
    assert np.array_equal(len(seq) - K - rev_pos[order], fwd_pos)
    assert np.array_equal(rev_keys[order] ^ np.uint32(1), fwd_keys)
    broken = seq[:1000] + "N" + seq[1001:]
    keys, pos = seeds.sampled_kmers(_codes(broken), K, 16)
    assert not ((pos > 1000 - K) & (pos <= 1000)).any()
    assert set(pos) == set(fwd_pos[(fwd_pos <= 1000 - K) | (fwd_pos > 1000)])


def _built(ref: Reference, tmp_path) -> tuple[np.ndarray, np.ndarray]:
    """The seed table of `ref`, made from its packed bases as an index makes it."""
    pack(ref.seqs, tmp_path / "b.npy", tmp_path / "n.npy")
    return seeds.build(PackedSequence(np.load(tmp_path / "b.npy"), np.load(tmp_path / "n.npy"), ref.lengths), PARAMS)


def _table(ref: Reference, tmp_path) -> seeds.SeedTable:
    return seeds.SeedTable(*_built(ref, tmp_path), PARAMS, ref.fragments(1250, 1000), ref.lengths)


def test_the_table_holds_every_sampled_kmer_sorted(random_ref, tmp_path):
    ref = Reference.load(random_ref)
    keys, positions = _built(ref, tmp_path)
    assert np.all(keys[1:] >= keys[:-1])
    want_keys, want_pos = [], []
    for ci, seq in enumerate(ref.seqs):
        k, p = seeds._sampled_kmers_numpy(_codes(seq), K, PARAMS["sample"])
        want_keys.append(k)
        want_pos.append(p + sum(ref.lengths[:ci]))
    order = np.lexsort((np.concatenate(want_pos), np.concatenate(want_keys)))
    assert np.array_equal(keys, np.concatenate(want_keys)[order])
    assert np.array_equal(positions, np.concatenate(want_pos)[order])


def test_reads_point_to_the_fragment_that_holds_them(random_ref, tmp_path):
    ref = Reference.load(random_ref)
    table = _table(ref, tmp_path)
    frags = ref.fragments(1250, 1000)
    rng = np.random.default_rng(2)
    starts = rng.integers(0, 500_000 - 250, 100)
    reads = [ref.fetch(1, s, s + 250) for s in starts]
    reads[:30] = [reverse_complement(r) for r in reads[:30]]
    reads[30:40] = [r[:100] + ("A" if r[100] != "A" else "C") + r[101:] for r in reads[30:40]]  # a mismatch
    reads.append("".join(rng.choice(list("ACGT"), 250)))  # from nowhere: no seed is found
    reads.append("ACGT" * 10)  # too short to hold a sampled k-mer, perhaps: never an error
    picked, usable = table.candidates(reads, 8, max_occ=256)
    for row, s in zip(picked[:100], starts):
        holds = [i for i in row if i >= 0 and frags[i][0] == 1 and frags[i][1] <= s and s + 250 <= frags[i][2]]
        assert holds and row[0] in holds  # the most votes go to a fragment that holds the read
    assert usable[:100].all() and not usable[100]
    assert (picked[100] == -1).all()
    # half the seeds (the first pass) still find reads close to the reference, from fewer hits
    halved, usable = table.candidates(reads[:100], 8, max_occ=256, half=True)
    assert usable.all() and (halved[:, 0] == picked[:100, 0]).all()
    lens = np.full(100, 250)
    assert 0.3 < len(table._hits(reads[:100], lens, 256, True)[0]) / len(table._hits(reads[:100], lens, 256, False)[0]) < 0.7


def test_a_long_read_votes_for_a_few_fragments_a_hit(random_ref, tmp_path, monkeypatch):
    """A 400 kb read (320 fragments long) must not make each of its hits vote for every fragment it
    spans (a 1 Mb read took 24 GB so): a few votes a hit, and its candidates start where it does."""
    ref = Reference.load(random_ref)
    table = _table(ref, tmp_path)
    table.compiled = False  # the numpy path's expansion is counted; the compiled one votes alike (tested below)
    read = ref.fetch(0, 100_000, 500_000)
    sizes = []
    real = seeds.ranges
    monkeypatch.setattr(seeds, "ranges", lambda starts, counts: sizes.append((len(counts), int(counts.sum()))) or
                        real(starts, counts))
    picked, usable = table.candidates([read], 4, max_occ=256)
    hits, votes = sizes[-1]  # the votes' expansion: one range of fragments per hit
    assert hits > 2_000 and votes <= 3 * hits
    frags = ref.fragments(1250, 1000)
    assert usable[0] and frags[picked[0, 0]][0] == 0 and 99_000 <= frags[picked[0, 0]][1] <= 100_000
    table.compiled = True
    assert np.array_equal(table.candidates([read], 4, max_occ=256)[0], picked)


def _with_copies(ref: Reference, unit: str, places, contig: int = 0) -> Reference:
    """`ref` with `unit` written over contig `contig` at each of `places`."""
    seqs = list(ref.seqs)
    for at in places:
        seqs[contig] = seqs[contig][:at] + unit + seqs[contig][at + len(unit) :]
    return Reference("rep.fa", ref.names, seqs)


def test_a_read_with_a_frequent_seed_is_left_to_the_dense_search(random_ref, tmp_path):
    ref = Reference.load(random_ref)
    repeat = ref.fetch(0, 1000, 1300)
    ref = _with_copies(ref, repeat * 40, [100_000])  # 41 copies of 300 bp
    table = _table(ref, tmp_path)
    _, usable = table.candidates([repeat[20:270], ref.fetch(1, 5000, 5250)], 64, max_occ=16)
    assert usable.tolist() == [False, True]
    _, usable = table.candidates([repeat[20:270]], 64, max_occ=64)
    assert usable.tolist() == [True]


def test_a_read_with_a_few_frequent_seeds_may_still_be_settled_by_the_rest(random_ref, tmp_path):
    ref = Reference.load(random_ref)
    ref = _with_copies(ref, ref.fetch(0, 1000, 1100) * 40, [100_000])  # 41 copies of 100 bp
    table = _table(ref, tmp_path)
    read = ref.fetch(0, 103_950, 104_200)  # the last copy's 50 bases, then 200 of unique sequence
    picked, usable = table.candidates([read], 64, max_occ=16)
    assert not usable[0]  # a seed seen 41 times: by default the read goes to the dense search
    _, usable = table.candidates([read], 64, max_occ=16, frequent_share=0.5)
    assert usable[0]  # most of its seeds are unique: they speak for it
    frags = ref.fragments(1250, 1000)
    assert frags[picked[0, 0]][1] <= 103_950 and 104_200 <= frags[picked[0, 0]][2]


def test_a_repeat_of_more_copies_than_the_candidates_hold_is_left_to_the_dense_search(random_ref, tmp_path):
    """Seeds each seen under `max_occ` times, but in more places than `limit` fragments hold: the
    copies tie on votes, and those left out might be the read's own; the exhaustive search sees all."""
    ref = Reference.load(random_ref)
    repeat = ref.fetch(0, 1000, 1300)
    ref = _with_copies(ref, repeat, range(20_000, 620_000, 6_000))  # 100 copies, 6 kb apart: 100 to 200 fragments
    table = _table(ref, tmp_path)
    reads = [repeat[20:270], ref.fetch(1, 5000, 5250)]
    picked, usable = table.candidates(reads, 64, max_occ=256)
    assert usable.tolist() == [False, True] and (picked[0] >= 0).all()
    _, usable = table.candidates(reads, 512, max_occ=256)  # room for every copy
    assert usable.tolist() == [True, True]


def test_a_flat_index_keeps_seeds_and_places_reads_as_its_exhaustive_search(random_ref, tmp_path, monkeypatch):
    ref = Reference.load(random_ref)
    reads, starts = _reads(ref, 150, 6)
    reads = [r[:60] + ("A" if r[60] != "A" else "C") + r[61:] if i % 4 == 1 else r for i, r in enumerate(reads)]
    reads += ["".join(np.random.default_rng(5).choice(list("ACGT"), 250))]  # unplaceable: the exhaustive search
    common = dict(model="default", index=tmp_path / "f", device="cpu", index_kind="flat", threads=1)
    on = Aligner(ref, **common)
    off = Aligner(ref, **common, seed_candidates=0)
    assert on.index.seeds is not None and on.index.manifest["seeds"]["params"] == seeds.SEED_PARAMS
    calls = []
    real = on.index.store.search
    monkeypatch.setattr(on.index.store, "search", lambda v, k: calls.append(len(v)) or real(v, k))
    got = on.map_batch(reads)
    assert calls == [1]  # only the read from nowhere was searched exhaustively
    want = off.map_batch(reads)
    assert [[(a.contig, a.ref_start, a.reverse, a.cigar, a.mapq, a.score) for a in r] for r in got] == \
        [[(a.contig, a.ref_start, a.reverse, a.cigar, a.mapq, a.score) for a in r] for r in want]
    assert sum(bool(r) and r[0].ref_start == s for r, s in zip(got, starts)) == 150 and not got[-1]


@pytest.mark.skipif(compiled.load(compiled.SEEDS) is None, reason="the seeds kernel is not built")
def test_compiled_and_numpy_lookups_agree(random_ref, tmp_path):
    """The compiled lookup (`_seeds.c`) against the numpy one: the same fragments in the same order
    and the same verdicts, on reads with errors, both strands, repeats of a few and of many copies
    (frequent and crowded), N, no k-mer at all, a read at a contig's end and one longer than a fragment."""
    ref = Reference.load(random_ref)
    repeat = ref.fetch(0, 1000, 1300)
    ref = _with_copies(ref, repeat, range(20_000, 620_000, 6_000))  # 100 copies
    ref = _with_copies(ref, repeat[:200] * 6, [10_000], contig=1)  # a tandem of 6
    seqs = ref.seqs
    table = _table(ref, tmp_path)
    rng = np.random.default_rng(9)
    reads = []
    for _ in range(300):
        ci = int(rng.integers(0, 2))
        s = int(rng.integers(0, ref.lengths[ci] - 250))
        read = list(ref.fetch(ci, s, s + int(rng.choice([100, 150, 250]))))
        for i in rng.choice(len(read), int(rng.integers(0, 12)), replace=False):
            read[i] = "ACGTN"[int(rng.integers(0, 5))]
        read = "".join(read)
        reads.append(reverse_complement(read) if rng.random() < 0.5 else read)
    reads += [repeat[10:260], repeat[30:190].lower(), seqs[1][10_050:10_300], "", "ACGT", "N" * 150,
              ref.fetch(1, 499_800, 500_000), ref.fetch(0, 50_000, 53_000)]
    for half in (False, True):
        for limit, max_occ, share in ((64, 256, 0.0), (8, 256, 0.0), (64, 50, 0.0), (3, 4, 0.0), (64, 4, 0.3)):
            table.compiled = True
            got = table.candidates(reads, limit, max_occ, half, share)
            table.compiled = False
            want = table.candidates(reads, limit, max_occ, half, share)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    assert not want[1].all() and want[1].any()


def _reads(ref: Reference, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, 700_000 - 250, n)
    reads = [ref.fetch(0, s, s + 250) for s in starts]
    return [reverse_complement(r) if i % 3 == 0 else r for i, r in enumerate(reads)], starts


def test_reads_place_with_seeds_as_without_and_seeds_settle_them(random_ref, tmp_path, monkeypatch):
    ref = Reference.load(random_ref)
    reads, starts = _reads(ref, 150, 4)
    reads += ["".join(np.random.default_rng(5).choice(list("ACGT"), 250))]  # unplaceable: the dense path
    common = dict(model="default", index=tmp_path / "l", device="cpu", index_kind="lean", threads=1)
    on = Aligner(ref, **common)
    off = Aligner(ref, **common, seed_candidates=0)
    assert on.index.seeds is not None
    tier = on.find_candidates.coarse[1]
    calls = []
    real = tier.search
    monkeypatch.setattr(tier, "search", lambda *a: calls.append(len(a[0])) or real(*a))
    got = on.map_batch(reads)
    assert calls == [1, 1]  # only the read from nowhere took the coarse tier (then, scoring low, its wide pass)
    want = off.map_batch(reads)
    assert [[(a.contig, a.ref_start, a.reverse, a.cigar, a.mapq) for a in r] for r in got] == \
        [[(a.contig, a.ref_start, a.reverse, a.cigar, a.mapq) for a in r] for r in want]
    assert sum(bool(r) and r[0].ref_start == s for r, s in zip(got, starts)) == 150


def test_the_lean_index_keeps_its_seeds_and_remakes_stale_ones(random_ref, tmp_path, monkeypatch, caplog):
    ref = Reference.load(random_ref)
    enc = load_encoder("default", "cpu")
    opts = IndexOptions(index_kind="lean")
    folder = tmp_path / "l"
    index = open_index(ref, enc, opts, folder)
    entry = index.manifest["seeds"]
    names = seeds.file_names(index.manifest["reference_checksum"])
    assert entry["files"] == list(names) and json.loads((folder / "manifest.json").read_text())["seeds"] == entry
    stamps = {name: (folder / name).stat().st_mtime_ns for name in names}
    again = open_index(ref, enc, opts, folder)  # kept: not made again
    assert again.seeds is not None and {name: (folder / name).stat().st_mtime_ns for name in names} == stamps
    denser = seeds.SEED_PARAMS["sample"] // 2
    monkeypatch.setitem(seeds.SEED_PARAMS, "sample", denser)  # other parameters: made anew
    with caplog.at_level(logging.INFO, logger="dnaesa"):
        remade = open_index(ref, enc, opts, folder)
    assert "making the seed table" in caplog.text and remade.manifest["seeds"]["params"]["sample"] == denser
    assert len(remade.seeds.keys) > 1.5 * len(again.seeds.keys)
    assert sorted(p.name for p in folder.glob("seed*")) == sorted(names)  # nothing stale left beside them


def test_a_damaged_seed_table_is_made_anew(random_ref, tmp_path, caplog):
    ref = Reference.load(random_ref)
    enc = load_encoder("default", "cpu")
    opts = IndexOptions(index_kind="lean")
    folder = tmp_path / "l"
    open_index(ref, enc, opts, folder)
    name = seeds.file_names(json.loads((folder / "manifest.json").read_text())["reference_checksum"])[1]
    good = (folder / name).read_bytes()
    data = bytearray(good)
    data[-1] ^= 1
    (folder / name).write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="dnaesa"):
        index = open_index(ref, enc, opts, folder)
    assert "checksum" in caplog.text and "making the seed table anew" in caplog.text
    assert index.seeds is not None and (folder / name).read_bytes() == good
    (folder / name).unlink()  # gone (a user's clean-up): made anew too, not left without seeds
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dnaesa"):
        index = open_index(ref, enc, opts, folder)
    assert "No such file" in caplog.text and "making the seed table anew" in caplog.text
    assert index.seeds is not None and (folder / name).read_bytes() == good


def test_seeds_that_cannot_be_written_leave_the_index_serving(random_ref, tmp_path, monkeypatch, caplog):
    ref = Reference.load(random_ref)
    real_save = np.save

    def full_disk(path, array):
        if "seedpos" in str(path):
            raise OSError(28, "No space left on device")
        return real_save(path, array)

    monkeypatch.setattr(np, "save", full_disk)
    with caplog.at_level(logging.INFO, logger="dnaesa"):
        aligner = Aligner(ref, "default", index=tmp_path / "l", device="cpu", index_kind="lean", threads=1)
    assert aligner.index.seeds is None and "No space left on device" in caplog.text
    assert "seeds" not in json.loads((tmp_path / "l" / "manifest.json").read_text())
    assert not list((tmp_path / "l").glob("seed*"))  # no partial file left
    reads, starts = _reads(ref, 20, 7)
    assert sum(bool(r) and r[0].ref_start == s for r, s in zip(aligner.map_batch(reads), starts)) == 20


def test_merged_hits_keep_each_id_once_best_first_ties_to_the_lower_id():
    from dnaesa.align.candidates import merge_hits

    inf = np.inf
    dense = (np.array([[0.9, 0.5, -inf], [0.3, 0.2, 0.1]], np.float32), np.array([[7, 3, -1], [4, 5, 6]]))
    seeded = (np.array([[0.9, 0.5, 0.4], [-inf, -inf, -inf]], np.float32), np.array([[2, 3, 9], [-1, -1, -1]]))
    scores, ids = merge_hits(dense, seeded, 4)
    assert ids.tolist() == [[2, 7, 3, 9], [4, 5, 6, -1]]
    assert scores.tolist() == [[np.float32(0.9), np.float32(0.9), np.float32(0.5), np.float32(0.4)],
                               [np.float32(0.3), np.float32(0.2), np.float32(0.1), -inf]]


def test_a_read_the_coarse_tier_misses_is_found_by_its_seeds(random_ref, tmp_path):
    """A read left to the coarse tier (here: a narrow one, 16 picks, for 15%-divergent reads) still
    has its seeds' fragments scored, and the better of the two searches wins."""
    ref = Reference.load(random_ref)
    rng = np.random.default_rng(9)
    starts = rng.integers(0, 500_000 - 250, 80)
    table = np.frombuffer(b"ACGT", np.uint8)

    def mutate(s: str) -> str:
        b = np.frombuffer(s.encode(), np.uint8).copy()
        hit = rng.random(len(b)) < 0.15
        b[hit] = table[(np.searchsorted(table, b[hit]) + rng.integers(1, 4, hit.sum())) % 4]
        return b.tobytes().decode()

    reads = [mutate(ref.fetch(1, s, s + 250)) for s in starts]
    narrow = dict(model="default", index=tmp_path / "l", device="cpu", index_kind="lean", threads=1,
                  coarse_candidates=16, prefilter_candidates=16, wide_below=0)
    frags = None

    def found(aligner) -> int:
        _, ids, _ = aligner.find_candidates._search(reads, 16)
        return sum(any(frags[i][0] == 1 and frags[i][1] <= s and s + 250 <= frags[i][2] for i in row[:1] if i >= 0)
                   for row, s in zip(ids, starts))

    off = Aligner(ref, **narrow, seed_candidates=0)
    frags = off.index.fragments
    on = Aligner(ref, **narrow)
    assert found(on) >= found(off) + 4  # 56 against 51 when written


def _locus_and_close_copy(tmp_path, seed: int, chr2) -> tuple:
    """A reference: chr1 holds a random 250 bp locus at 30,000 in complex sequence, `copy` a 2%
    divergent copy of it in poly-A, chr2 what `chr2(rand)` makes. Returns (its path, the locus)."""
    rng = np.random.default_rng(seed)

    def rand(n):
        return "".join(rng.choice(list("ACGT"), n))

    locus = rand(250)
    copy = list(locus)
    for i in rng.choice(250, 5, replace=False):
        copy[i] = "ACGT"[("ACGT".index(copy[i]) + 1) % 4]
    ref = tmp_path / "ref.fa"
    ref.write_text(f">chr1\n{rand(30_000)}{locus}{rand(30_000)}\n>copy\n{'A' * 500}{''.join(copy)}{'A' * 500}\n"
                   f">chr2\n{chr2(rand, locus)}\n")
    return ref, locus


@pytest.mark.parametrize("index_kind, top_k", [("flat", 16), ("lean", 16), ("flat", 1)])
def test_the_most_voted_fragment_is_aligned_though_a_close_copy_scores_higher(tmp_path, index_kind, top_k):
    """A read's locus sits in complex sequence; a 2% divergent copy of it sits in poly-A. The copy's
    fragment holds few other k-mers, so its cosine with the read is higher, and the true fragment's
    falls below `candidate_ratio` x it. Its seeds vote for the true fragment most, which is aligned
    too: the read is placed at its locus, without mismatches, with the copy as second best (at 3.1 Gb
    such reads went to the copy at MAPQ 60). Also when it ranks past the first `top_k` hits (here 1)."""
    ref, locus = _locus_and_close_copy(tmp_path, 7, lambda rand, _: rand(50_000))
    aligner = Aligner(str(ref), index=str(tmp_path / "idx"), index_kind=index_kind, top_k=top_k)
    finder = aligner.find_candidates
    scores, ids, voted = finder._search([locus], 16)
    frags = aligner.index.fragments
    true = np.flatnonzero((frags[:, 0] == 0) & (frags[:, 1] <= 30_000) & (frags[:, 2] >= 30_250))
    assert voted[0, 0] in true and set(voted[0][voted[0] >= 0]) <= set(true)
    best_true = scores[0][np.isin(ids[0], true)].max()
    assert best_true < aligner.options.candidate_ratio * scores[0, 0]  # the case: pruned by score alone
    best, second = aligner.map(locus)[:2]
    assert (best.contig, best.ref_start, best.nm) == ("chr1", 30_000, 0) and best.mapq > 0
    assert best.sub_score == second.score and second.contig == "copy"


def test_a_tandem_repeat_does_not_outvote_the_reads_locus(tmp_path):
    """A read is half unique sequence, half a tandem repeat whose array lies elsewhere (longer, and
    in the first contig, so it would win ties). Each k-mer of the read votes once for a fragment,
    however often it occurs in the read and the array, so the read's own locus gets the most votes;
    compiled and numpy lookups agree."""
    rng = np.random.default_rng(11)

    def rand(n):
        return "".join(rng.choice(list("ACGT"), n))

    unit = "ACGTTGCAAGT"
    read = rand(150) + (unit * 10)[:100]
    ref = tmp_path / "ref.fa"
    ref.write_text(f">array\n{rand(5_000)}{unit * 150}{rand(5_000)}\n>chr1\n{rand(20_000)}{read}{rand(20_000)}\n")
    aligner = Aligner(str(ref), index=str(tmp_path / "idx"), index_kind="flat")
    table = aligner.index.seeds
    frags = aligner.index.fragments
    locus = np.flatnonzero((frags[:, 0] == 1) & (frags[:, 1] <= 20_000) & (frags[:, 2] >= 20_250))
    array = np.flatnonzero((frags[:, 0] == 0) & (frags[:, 1] < 6_650) & (frags[:, 2] > 5_000))
    found = {}
    for compiled_path in (True, False):
        table.compiled = compiled_path
        picked, usable = table.candidates([read], 8, 256)
        found[compiled_path] = picked
        assert usable[0] and picked[0, 0] in locus
        assert set(array) & set(picked[0])  # the array's fragments are voted for, just less
    assert np.array_equal(found[True], found[False])
    placed = aligner.map(read)[0]
    assert (placed.contig, placed.ref_start, placed.nm) == ("chr1", 20_000, 0)


def test_copies_tied_in_votes_are_all_aligned(tmp_path):
    """As above, and the locus has an exact twin in complex sequence on another contig: both get
    the most votes (tied), both are aligned, and the read has MAPQ 0 (with only the first of them
    aligned it had MAPQ 60, as at 300 Mb for reads from an inverted duplication)."""
    ref, locus = _locus_and_close_copy(tmp_path, 8, lambda rand, locus: rand(20_000) + reverse_complement(locus) + rand(20_000))
    aligner = Aligner(str(ref), index=str(tmp_path / "idx"), index_kind="flat")
    placed = aligner.map(locus)
    spots = {(a.contig, a.ref_start, a.nm) for a in placed[:2]}
    assert spots == {("chr1", 30_000, 0), ("chr2", 20_000, 0)}
    assert placed[0].mapq == 0 and placed[0].sub_score == placed[0].score
