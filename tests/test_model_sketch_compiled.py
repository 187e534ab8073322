"""The count sketch's compiled embedding (`model/_sketch.c`): numpy's vectors to the bit, for both
sketch encoders, any k and dim, N, lower case, other letters, sequences shorter than a window; and
numpy alone where it cannot promise that (weights off the 0.5 grid), or where it is not built."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from dnaesa import compiled
from dnaesa.model import kmer
from dnaesa.model.base import load_encoder

BUILT = compiled.load(compiled.SKETCH) is not None


def _sequences(lambda_contigs):
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), n)) for n in rng.integers(0, 400, 200)]
    genome = lambda_contigs[0][1]
    seqs += [genome[s : s + 1250] for s in range(0, 20000, 997)]  # fragments
    seqs += ["ACGTNNACGTACGTTTGACNNNNACGT" * 5, "acgtacgtaacgtgggtttacgatcga" * 4, "", "A", "ACGTACG",
             "A" * 300, "ACGTÄÖACGTACGTAC" * 10, "ACGTRYKMACGTTTGGCCAA" * 8, genome]  # the last: 48 kb
    return seqs


def _numpy(encoder, seqs, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(kmer, "compiled_sketch", lambda *args: False)
        return encoder.encode(seqs)


@pytest.mark.skipif(not BUILT, reason="the compiled sketch was not built (no C compiler)")
@pytest.mark.parametrize("make", [lambda: load_encoder("default", "cpu"), lambda: kmer.KmerSketchEncoder(),
                                  lambda: kmer.KmerSketchEncoder(k=12, dim=1024, seed=3),
                                  lambda: kmer.KmerSketchEncoder(k=21, dim=256, seed=1)])
def test_compiled_sketch_is_numpys_to_the_bit(lambda_contigs, monkeypatch, make):
    encoder = make()
    seqs = _sequences(lambda_contigs)
    calls = []
    real = kmer.compiled_sketch
    monkeypatch.setattr(kmer, "compiled_sketch", lambda *args: calls.append(1) or real(*args))
    fast = encoder.encode(seqs, batch_size=64)
    assert len(calls) == -(-len(seqs) // 64)
    np.testing.assert_array_equal(fast.view(np.int32), _numpy(encoder, seqs, monkeypatch).view(np.int32))


def test_weights_off_the_half_grid_stay_with_numpy(lambda_contigs):
    out = np.zeros((3, 1024), np.float32)
    seqs = _sequences(lambda_contigs)[:3]
    assert not kmer.compiled_sketch(seqs, out, [(list(range(8)), 8, 0, 1.0), ([0, 1, 3, 4], 5, 1, 1.3)])
    assert kmer.compiled_sketch(seqs, out, [(list(range(8)), 8, 0, 1.0), ([0, 1, 3, 4], 5, 1, 1.5)]) == BUILT


def test_not_built_one_warning_and_the_same_vectors(lambda_contigs, monkeypatch, caplog):
    encoder = load_encoder("default", "cpu")
    seqs = _sequences(lambda_contigs)[:50]
    want = encoder.encode(seqs)
    monkeypatch.setattr(compiled, "_libs", {})
    monkeypatch.setattr(compiled, "UNAVAILABLE", {})
    monkeypatch.setattr(compiled.importlib.util, "find_spec", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="dnaesa"):
        got = encoder.encode(seqs)
        encoder.encode(seqs[:3])
        from dnaesa.store.integer_scan import kernel

        assert kernel() is None  # the other kernels are missing too: one line for all, for the run
    assert len(caplog.records) == 1 and caplog.records[0].message.count("not built") == len(compiled.KERNELS) == 3
    assert caplog.records[0].message.startswith(compiled.MISSING_WARNING)
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def test_align_file_loads_the_kernels_before_its_workers_fork(monkeypatch, tmp_path):
    """The workers inherit them: none loads (or warns about) a kernel on its own."""
    import shutil
    from pathlib import Path

    from dnaesa import Aligner

    examples = Path(__file__).resolve().parent.parent / "examples"
    for name in ("lambda_phage.fa.gz", "reads.fq.gz"):
        shutil.copy(examples / name, tmp_path / name)
    aligner = Aligner(str(tmp_path / "lambda_phage.fa.gz"), threads=2)
    monkeypatch.setattr(compiled, "_libs", {})
    aligner.align_file(str(tmp_path / "reads.fq.gz"), str(tmp_path / "out.sam"))
    assert set(compiled._libs) == set(compiled.KERNELS)


def test_an_index_build_loads_the_kernels_before_its_workers_fork(monkeypatch):
    from dnaesa.store.parallel_embed import encoded_chunks

    monkeypatch.setattr(compiled, "_libs", {})
    assert list(encoded_chunks(lambda lo: [lo], [0, 1, 2], 2)) == [[0], [1], [2]]
    assert set(compiled._libs) == set(compiled.KERNELS)
