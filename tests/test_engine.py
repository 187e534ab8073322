"""The local engine and the batch plumbing of the pipeline: candidate arrays, vectorised candidate
selection (against the per-read code it replaced), several batches in flight, worker search, errors."""
from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

from dnaesa.align.candidates import WINDOW_SLACK, Candidate, CandidateBatch, CandidateFinder
from dnaesa.engine.local import MIN_PARALLEL_READS, LocalEngine
from dnaesa.io.sam import SamFormatter
from dnaesa.pipeline import Aligner
from dnaesa.simulate import simulate_reads, write_fastq


def _batch() -> CandidateBatch:
    windows = np.array([[0, 10, 20, -1], [0, 30, 40, 0], [1, 5, 9, 1]], dtype=np.int64)
    return CandidateBatch(np.array([0, 2, 2, 3], dtype=np.int64), windows)


def test_candidate_batch_lists_and_slices():
    batch = _batch()
    assert len(batch) == 3
    assert batch.lists() == [[Candidate(0, 10, 20, None), Candidate(0, 30, 40, False)], [], [Candidate(1, 5, 9, True)]]
    tail = batch.slice(1, 3)
    assert len(tail) == 2 and tail.lists() == batch.lists()[1:]
    assert batch.slice(0, 1).lists() == batch.lists()[:1]
    assert CandidateBatch.empty(2).lists() == [[], []]
    back = pickle.loads(pickle.dumps(tail))
    assert back.lists() == tail.lists()
    assert all(type(x) is int for c in batch.lists()[0] for x in (c.contig_index, c.start, c.end))


def _reference_candidates(aligner, scores, ids, strands, read_len):
    """The per-read code the vectorised selection replaced (kept here as the specification)."""
    o = aligner.options
    ok = ids >= 0
    if not ok.any():
        return []
    best = scores[ok].max()
    if best <= 0:
        return []
    keep = np.flatnonzero(ok & (scores >= best * o.candidate_ratio))
    keep = keep[np.argsort(-scores[keep], kind="stable")][: o.max_candidates]
    pad = read_len + WINDOW_SLACK
    lengths = aligner.reference.lengths
    out = []
    for j in keep:
        ci, st, en = aligner.index.fragments[ids[j]]
        orientation = None if strands[j] < 0 else bool(strands[j])
        out.append(Candidate(int(ci), max(int(st) - pad, 0), min(int(en) + pad, lengths[ci]), orientation))
    return out


@pytest.mark.parametrize("max_candidates, ratio", [(16, 0.6), (3, 0.6), (5, 0.0), (16, 1.0)])
def test_vectorised_candidates_match_per_read_code(kmer_aligner, max_candidates, ratio):
    rng = np.random.default_rng(max_candidates)
    n, k = 400, 12
    nfrag = len(kmer_aligner.index.fragments)
    # coarse scores make ties; some reads have no positive score, some padded (-1) hits
    scores = (rng.integers(-4, 40, size=(n, k)) / 40).astype(np.float32)
    scores[:20] = -np.abs(scores[:20])
    ids = rng.integers(0, nfrag, size=(n, k))
    ids[20:60, 8:] = -1
    ids[60:70] = -1
    strands = rng.integers(-1, 2, size=(n, k)).astype(np.int8)
    lens = rng.integers(40, 400, size=n)
    opts = kmer_aligner.options
    object.__setattr__(opts, "max_candidates", max_candidates)
    object.__setattr__(opts, "candidate_ratio", ratio)
    try:
        got = kmer_aligner.find_candidates.windows_from_hits(scores, ids, strands, lens).lists()
        want = [_reference_candidates(kmer_aligner, scores[i], ids[i], strands[i], int(lens[i])) for i in range(n)]
    finally:
        object.__setattr__(opts, "max_candidates", 16)
        object.__setattr__(opts, "candidate_ratio", 0.6)
    assert got == want
    assert sum(map(len, want)) > n and not any(want[60:70])


def test_search_of_a_strand_aware_encoder(kmer_aligner, lambda_contigs, monkeypatch):
    """An encoder that is not strand-symmetric: reads and reverse complements are searched, and
    candidates carry the strand of the half they came from."""
    reads = simulate_reads(lambda_contigs, 20, 150, seed=3)
    seqs = [r.seq for r in reads]
    monkeypatch.setattr(kmer_aligner.encoder, "strand_symmetric", False, raising=False)
    batch = kmer_aligner.find_candidates(seqs)
    assert len(batch) == 20 and set(batch.windows[:, 3].tolist()) <= {0, 1}
    assert {c.reverse for cands in batch.lists() for c in cands} == {False, True}


@pytest.fixture(scope="module")
def small_batch_aligner(lambda_ref, tmp_path_factory):
    """Batches of 300 reads, two secondaries: several batches in flight in two workers."""
    return Aligner(lambda_ref, "kmer", index=tmp_path_factory.mktemp("idx2") / "lambda.idx", device="cpu",
                   batch_size=300, secondary=2)


def _reads_file(tmp_path, lambda_contigs, n=1300, extra=""):
    reads = simulate_reads(lambda_contigs, n, 150, seed=21, indel_rate=0.003)
    fq = tmp_path / "reads.fq"
    write_fastq(reads, fq)
    with open(fq, "a") as fh:
        fh.write("@junk\n" + "N" * 150 + "\n+\n" + "I" * 150 + "\n" + extra)
    return reads, fq


@pytest.mark.parametrize("suffix", ["sam", "bam"])
def test_parallel_output_equals_serial(small_batch_aligner, lambda_contigs, tmp_path, monkeypatch, suffix):
    """Worker search and formatting, several batches in flight: the same bytes as one process."""
    import pysam

    a = small_batch_aligner
    reads, fq = _reads_file(tmp_path, lambda_contigs)
    calls = []
    search = a.find_candidates
    monkeypatch.setattr(a, "find_candidates", lambda seqs: calls.append(len(seqs)) or search(seqs))
    summary = a.align_file(str(fq), str(tmp_path / f"par.{suffix}"), read_group="g", command_line="cl")
    assert a.engine.parallel and a.engine._pool is None  # closed at the end
    # full batches were searched in the workers; only the short last one (< MIN_PARALLEL_READS) here
    assert calls == [1301 % 300] and 1301 % 300 < MIN_PARALLEL_READS
    assert (summary.reads, summary.mapped) == (1301, 1300)
    workers, a.engine = a.engine, LocalEngine(a.refiner, 1)
    try:
        serial = a.align_file(str(fq), str(tmp_path / f"one.{suffix}"), read_group="g", command_line="cl")
    finally:
        a.engine = workers
    assert (serial.reads, serial.mapped) == (summary.reads, summary.mapped)
    if suffix == "sam":
        text = (tmp_path / "par.sam").read_bytes()
        assert text == (tmp_path / "one.sam").read_bytes()
        names = [line.split(b"\t")[0].decode() for line in text.splitlines() if not line.startswith(b"@")
                 and not int(line.split(b"\t")[1]) & 256]
        assert names == [r.name for r in reads] + ["junk"]  # input order
    else:
        assert pysam.view(str(tmp_path / "par.bam")) == pysam.view(str(tmp_path / "one.bam"))


def test_candidates_from_main_process(small_batch_aligner, lambda_contigs, tmp_path):
    """As on CUDA: the main process searches and sends candidate arrays; same output."""
    a = small_batch_aligner
    _, fq = _reads_file(tmp_path, lambda_contigs, n=700)
    a.align_file(str(fq), str(tmp_path / "w.sam"), command_line="cl")
    a.search_in_workers = False
    try:
        a.align_file(str(fq), str(tmp_path / "m.sam"), command_line="cl")
    finally:
        a.search_in_workers = True
    assert (tmp_path / "w.sam").read_bytes() == (tmp_path / "m.sam").read_bytes()


def test_bad_record_after_batches_in_flight(small_batch_aligner, lambda_contigs, tmp_path):
    from dnaesa.errors import InputError

    a = small_batch_aligner
    _, fq = _reads_file(tmp_path, lambda_contigs, n=1000, extra="@bad\nACGT\n+\nII\n")
    out = tmp_path / "out.sam"
    with pytest.raises(InputError, match="record 1002"):
        a.align_file(str(fq), str(out))
    assert not out.exists() and list(tmp_path.iterdir()) == [fq]
    assert a.engine._pool is None
    assert a.map_batch([lambda_contigs[0][1][100:250]])[0]  # still usable


def test_worker_error_reaches_the_caller(kmer_aligner, lambda_contigs):
    """A search or alignment failing in a worker raises from `get()`, in the main process."""
    engine = LocalEngine(kmer_aligner.refiner, 2)
    seqs = [lambda_contigs[0][1][i : i + 100] for i in range(0, 100 * MIN_PARALLEL_READS, 100)]
    names, quals = [f"r{i}" for i in range(len(seqs))], [None] * len(seqs)

    def failing_search(batch):
        raise RuntimeError(f"search failed on {len(batch)} reads")

    try:
        engine.start(SamFormatter([lambda_contigs[0][0]]), failing_search)
        with pytest.raises(RuntimeError, match=f"search failed on {len(seqs)} reads"):
            engine.submit(names, seqs, quals).get()
        # a formatter that rejects every record: the error of an aligning chunk
        engine.start(SamFormatter([]), kmer_aligner.find_candidates)
        with pytest.raises(IndexError):
            engine.submit(names, seqs, quals).get()
        engine.start(SamFormatter([lambda_contigs[0][0]]), kmer_aligner.find_candidates)
        texts, mapped = engine.submit(names, seqs, quals).get()
        assert mapped == len(seqs) and "".join(texts).count("\n") == len(seqs)
    finally:
        engine.terminate()



def test_a_search_that_ends_after_terminate_starts_no_pool(kmer_aligner, lambda_contigs):
    """A batch whose search result arrives after `terminate()` (a signal mid-run) fails; the old
    pool's result thread must not start a new pool (it did: that pool's exit handler then waited
    forever on a lock that its killed worker held, and the run never ended)."""
    from dnaesa.errors import WorkerError

    engine = LocalEngine(kmer_aligner.refiner, 2)
    seqs = [lambda_contigs[0][1][i : i + 100] for i in range(0, 100 * MIN_PARALLEL_READS, 100)]
    names, quals = [f"r{i}" for i in range(len(seqs))], [None] * len(seqs)

    def slow_search(batch):
        time.sleep(30)
        return kmer_aligner.find_candidates(batch)

    engine.start(SamFormatter([lambda_contigs[0][0]]), slow_search)
    job = engine.submit(names, seqs, quals)
    engine.terminate()
    job._searched(kmer_aligner.find_candidates(seqs))  # the late result, as the result thread delivers it
    assert engine._pool is None
    with pytest.raises(WorkerError, match="stopped"):
        job.get()

def test_pool_waits_on_workers_not_results(kmer_aligner, lambda_contigs):
    """The pool's maintenance thread does not watch the result pipe (it would spin on every
    result); many results come back and the pool closes cleanly."""
    engine = LocalEngine(kmer_aligner.refiner, 2)
    seqs = [lambda_contigs[0][1][i : i + 120] for i in range(0, 120 * MIN_PARALLEL_READS, 120)]
    candidates = kmer_aligner.find_candidates(seqs)
    try:
        jobs = [engine.place(seqs, candidates) for _ in range(4)]
        pool = engine._pool
        assert pool._outqueue._reader not in pool._get_sentinels()
        results = [job.get() for job in jobs]
        assert all(r == results[0] for r in results) and sum(map(bool, results[0])) == len(seqs)
    finally:
        engine.close()
    assert engine._pool is None and not pool._worker_handler.is_alive()


def test_rescue_tier_is_tried_only_when_the_first_tier_places_nothing(kmer_aligner):
    from dnaesa.align.place import place_read

    seq = kmer_aligner.reference.seqs[0]
    read = seq[20_000:20_150]
    right = Candidate(0, 19_500, 20_700, None)
    wrong = Candidate(0, 40_000, 41_200, None)
    assert place_read(kmer_aligner.refiner, read, [wrong]) == []
    calls = []
    rescued = place_read(kmer_aligner.refiner, read, [wrong], lambda: calls.append(1) or [right])
    assert calls == [1] and rescued and rescued[0].ref_start == 20_000 and rescued[0].cigar == [(0, 150)]
    calls.clear()
    again = place_read(kmer_aligner.refiner, read, [right], lambda: calls.append(1) or [wrong])
    assert calls == [] and again[0].ref_start == 20_000  # placed by the first tier: no rescue


def test_rescue_tier_only_for_reads_that_look_like_some_fragment(kmer_aligner):
    """A read whose best embedding score is near what a read inside a fragment scores gets a rescue
    tier (up to rescue_candidates of rescue_top_k hits, unpruned); an unrelated sequence gets none."""
    o = kmer_aligner.options
    seq = kmer_aligner.reference.seqs[0]
    rng = np.random.default_rng(5)
    unrelated = "".join(rng.choice(list("ACGT"), 150))
    finder = kmer_aligner.find_candidates
    assert finder.seeds is not None  # a flat index keeps seeds: a read they settle has only their hits
    reads = [seq[30_000:30_150], unrelated]
    seeded = finder(reads)
    dense = CandidateFinder(finder.encoder, finder.store, finder.fragments, kmer_aligner.reference.lengths, o,
                            finder.fragment_len)  # no seeds: the exhaustive search's hits
    batch = dense(reads)
    assert seeded.lists() == batch.lists() and np.diff(seeded.rescue_tier().offsets).tolist() == [2, 0]
    assert batch.rescue_tier() is not None
    counts = np.diff(batch.rescue_tier().offsets)
    n_frag = len(kmer_aligner.index.fragments)
    # every hit scoring >= 0 (ratio 0: unpruned), past the first tier's 16
    assert o.max_candidates < counts[0] <= min(o.rescue_candidates, n_frag, o.rescue_top_k) and counts[1] == 0
    assert np.diff(batch.offsets)[0] <= o.max_candidates
    # the first tier is what a search of top_k alone gives
    from dataclasses import replace

    plain = CandidateFinder(finder.encoder, finder.store, finder.fragments, kmer_aligner.reference.lengths,
                            replace(o, rescue_top_k=0), finder.fragment_len)
    alone = plain(reads)
    assert alone.rescue is None and alone.lists() == batch.lists()


def test_rescue_tier_made_when_asked_the_same_windows(kmer_aligner):
    """The rescue tier waits until a read asks for it (`PendingTier`); read by read, whole, or after
    pickling (made before it travels, without the finder) it gives the windows that making it at
    once gives."""
    from dnaesa.align.candidates import PendingTier

    seq = kmer_aligner.reference.seqs[0]
    reads = [seq[30_000:30_150], seq[10_000:10_250], "".join(np.random.default_rng(6).choice(list("ACGT"), 150))]
    finder = kmer_aligner.find_candidates
    pending = finder(reads)
    assert isinstance(pending.rescue, PendingTier)
    whole = pending.rescue.made()
    per_read = [rescue() for _, rescue in pending.tiers()]
    assert per_read == whole.lists() and sum(map(len, per_read)) > 0
    travelled = pickle.loads(pickle.dumps(finder(reads)))
    assert isinstance(travelled.rescue, CandidateBatch) and travelled.rescue.lists() == whole.lists()
    assert len(pickle.dumps(finder(reads))) < 100_000  # the store did not travel with it
    sliced = finder(reads).slice(1, 3)
    assert isinstance(sliced.rescue, PendingTier) and sliced.rescue_tier().lists() == whole.lists()[1:3]
