"""Compact encoder (issue 10): features, strand symmetry, save/load round trip, numpy path, baselines."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dnaesa.model.base import load_encoder
from dnaesa.model.compact import (
    DEFAULT_CHANNELS,
    CompactSketchEncoder,
    ProjectedSketchEncoder,
    _rank,
    canonical_count,
    channel_bins,
    channel_offsets,
    compact_features,
    normalize_channels,
)
from dnaesa.model.compact_hf import CompactTorchEncoder, DnaCompactConfig, DnaCompactModel
from dnaesa.model.kmer import canonical_kmer_occurrences, canonical_spaced_kmers, sketch_coordinates
from dnaesa.reference import reverse_complement


def random_seqs(n, max_len=1500, seed=0, n_rate=0.04):
    rng = np.random.default_rng(seed)
    p = [(1 - n_rate) / 4] * 4 + [n_rate]
    return ["".join(rng.choice(list("ACGTN"), int(L), p=p)) for L in rng.integers(0, max_len, n)]


def test_features_equal_kmer_py_counts():
    """Each channel's counts are kmer.py's canonical occurrences (exact codes ranked, or hashed)."""
    channels = normalize_channels(DEFAULT_CHANNELS)
    seqs = random_seqs(120, 600)
    X, totals = compact_features(seqs, channels)
    offsets = channel_offsets(channels)
    assert X.shape == (len(seqs), offsets[-1]) and offsets[-1] == 136 + 512 + 2080 + 4096 + 4096
    for j, ch in enumerate(channels):
        bins = channel_bins(ch)
        if ch["kind"] == "kmer":
            si, _, code = canonical_kmer_occurrences(seqs, ch["k"])
        else:  # kmer.py gives distinct seeds; count occurrences from its window codes instead
            si, code = canonical_spaced_kmers(seqs, ch["pattern"])
        if ch["kind"] == "kmer" and bins == canonical_count(ch["k"]) and ch["bins"] == 4 ** ch["k"]:
            coord = _rank(ch["k"])[code.astype(np.int64)]
        else:
            coord, _ = sketch_coordinates(code, ch["bins"], 1 + j)
        ref = np.bincount(si * bins + coord, minlength=len(seqs) * bins).reshape(len(seqs), bins)
        got = X[:, offsets[j]:offsets[j + 1]]
        if ch["kind"] == "spaced":
            np.testing.assert_array_equal(np.minimum(got, 1) > 0, ref > 0)  # same seeds present
        else:
            np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(totals[:, j], got.sum(1))


def small_model(dim=32, seed=0):
    cfg = DnaCompactConfig(channels=[{"kind": "kmer", "k": 4}, {"kind": "kmer", "k": 6, "bins": 256},
                                     {"kind": "spaced", "pattern": "11011011011", "bins": 256}], dim=dim)
    model = DnaCompactModel(cfg)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(rng.standard_normal(tuple(model.weight.shape)).astype(np.float32)))
        model.mu.copy_(torch.from_numpy(rng.random(cfg.n_features).astype(np.float32) / 100))
    return model


def test_strand_symmetric_unit_rows():
    enc = CompactTorchEncoder(small_model())
    seqs = [s for s in random_seqs(50, 800, seed=1) if len(s) > 20]
    a, b = enc.encode(seqs), enc.encode([reverse_complement(s) for s in seqs])
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_save_load_round_trip_identical_and_numpy_path_matches(tmp_path):
    enc = CompactTorchEncoder(small_model())
    enc.save_pretrained(tmp_path / "m")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (tmp_path / "m" / name).exists()
    seqs = random_seqs(80, 1500, seed=2)
    again = CompactTorchEncoder.from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(enc.encode(seqs), again.encode(seqs))
    fast = load_encoder(str(tmp_path / "m"), device="cpu")
    assert isinstance(fast, CompactSketchEncoder) and fast.dim == 32 and fast.strand_symmetric
    np.testing.assert_allclose(fast.encode(seqs), enc.encode(seqs), atol=2e-5)
    assert fast.identity() == load_encoder(str(tmp_path / "m"), device="cpu").identity()


def test_empty_and_all_n_sequences_give_finite_rows():
    enc = CompactTorchEncoder(small_model())
    vecs = enc.encode(["", "NNNN", "ACGTACGTAC"])
    assert np.isfinite(vecs).all()


def test_bad_channels_are_errors():
    with pytest.raises(ValueError):
        normalize_channels([{"kind": "spaced", "pattern": "1101"}])
    with pytest.raises(ValueError):
        normalize_channels([{"kind": "kmer", "k": 8, "bins": 1000}])
    with pytest.raises(ValueError):
        normalize_channels([{"kind": "other"}])


def test_baselines_have_unit_rows_of_dimension_d():
    seqs = random_seqs(20, 1300, seed=3)
    for enc in (ProjectedSketchEncoder.random(64, sketch_dim=256), ProjectedSketchEncoder.pca(random_seqs(200, 1300, seed=4), 64, sketch_dim=256)):
        v = enc.encode(seqs)
        assert v.shape == (20, 64)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


COMPACT_BUNDLE = "compact256"


def test_bundled_compact_model_loads_offline_and_places_lambda_reads(lambda_reads_placed):
    from dnaesa.model.base import BUNDLED_DIR

    if not (BUNDLED_DIR / COMPACT_BUNDLE / "config.json").exists():
        pytest.skip("no bundled compact model")
    enc = load_encoder(COMPACT_BUNDLE, device="cpu")
    assert isinstance(enc, CompactSketchEncoder) and enc.dim == 256
    size = sum(f.stat().st_size for f in (BUNDLED_DIR / COMPACT_BUNDLE).iterdir())
    assert size <= 25 * 2 ** 20
    placed, total, aligner = lambda_reads_placed(COMPACT_BUNDLE)
    assert aligner.encoder.identity() == enc.identity()
    assert placed >= 0.99 * total, f"{placed}/{total}"


def test_compact_transformer_directory_loads_as_itself(tmp_path):
    """A saved compact Transformer loads through `load_encoder` with its own weights (the same
    embeddings as the model saved, strand-free, a stable identity that follows the weights);
    the k-mer weight model's loader refuses it rather than start its missing weights afresh."""
    from dnaesa.model.compact_transformer import DnaTinyTransformerConfig, DnaTinyTransformerModel
    from dnaesa.model.transformer import TransformerEncoder

    torch.manual_seed(0)
    model = DnaTinyTransformerModel(DnaTinyTransformerConfig(dim=16, k=3, d_model=32, ff_dim=32, layers=1)).eval()
    CompactTorchEncoder(model).save_pretrained(tmp_path)
    seqs = random_seqs(12, 400, seed=3)
    loaded = load_encoder(str(tmp_path), device="cpu")
    assert type(loaded).__name__ == "TinyTransformerEncoder" and loaded.dim == 16
    with torch.no_grad():
        expected = model.embed(seqs).numpy()
    got = loaded.encode(seqs)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(loaded.encode([reverse_complement(s) for s in seqs]), got, atol=1e-5)
    assert loaded.identity() == load_encoder(str(tmp_path), device="cpu").identity()
    with torch.no_grad():
        loaded.model.out.bias.add_(0.5)
    assert loaded.identity() != load_encoder(str(tmp_path), device="cpu").identity()
    with pytest.raises(ValueError, match="dnaesa-compact-transformer"):
        TransformerEncoder.from_pretrained(tmp_path)
