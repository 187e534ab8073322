"""The k-mer count-sketch encoder: unit rows, strand symmetry, containment ranks the true fragment first."""
from __future__ import annotations

import numpy as np

from dnaesa.dna import reverse_complement
from dnaesa.model.kmer import KmerSketchEncoder, canonical_kmers


def test_canonical_kmers_are_distinct_and_strand_free():
    idx, kmers = canonical_kmers(["ACGTTGCAACGTTGCA", "TGCAACGTTGCAACGT", "NNNN", "ACG"], 4)
    first = set(kmers[idx == 0].tolist())
    assert len(first) == (idx == 0).sum()  # distinct within a sequence
    assert first == set(kmers[idx == 1].tolist())  # the reverse complement has the same canonical set
    assert not (idx >= 2).any()  # N-only and too-short sequences have none


def test_encode_unit_rows_symmetric_and_containment(lambda_contigs):
    seq = lambda_contigs[0][1]
    enc = KmerSketchEncoder()
    fragments = [seq[i : i + 1250] for i in range(0, 40000, 1000)]
    read = seq[10300:10550]
    vecs = enc.encode(fragments + [read, reverse_complement(read), "N" * 100, ""])
    assert vecs.dtype == np.float32 and vecs.shape == (len(fragments) + 4, enc.dim)
    assert np.allclose(np.linalg.norm(vecs[:-2], axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vecs[-4], vecs[-3])
    assert not vecs[-2:].any() and np.isfinite(vecs).all()
    scores = vecs[: len(fragments)] @ vecs[-4]
    assert int(np.argmax(scores)) == 10
    assert scores[10] > 0.3 and np.sort(scores)[-2] < 0.15


def test_identity_changes_with_parameters():
    assert KmerSketchEncoder().identity() == KmerSketchEncoder().identity()
    assert KmerSketchEncoder(k=11).identity() != KmerSketchEncoder().identity()
