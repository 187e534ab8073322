"""The trained-encoder model: tokenizer, sketch equivalence at init, save/load, the shipped default."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dnaesa.model.base import DEFAULT_MODEL_DIR, load_encoder
from dnaesa.model.tokenizer import DnaTokenizer
from dnaesa.model.transformer import DnaSketchConfig, DnaSketchModel, TransformerEncoder, sign_table

TINY = dict(dim=64, hash_bits=12, seed_patterns=["111111111111", "11111111"], initial_scales=[1.0, 0.0],
            d_model=16, n_layers=1, n_heads=2, ff_dim=32, stem_kernel=8, stride=4, attention_window=8)


def random_seqs(n: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_tokenizer_round_trip_and_fast_path_matches_library():
    tok = DnaTokenizer()
    seqs = ["ACGTacgtNRYx", "A", "TTTTGGGGCCCCAAAA"]
    ids, lengths = tok.encode_batch(seqs)
    for row, n, s in zip(ids, lengths, seqs):
        assert list(row[:n]) == tok.encode_with_library(s)
        assert tok.decode(row) == "".join(c if c in "ACGT" else "N" for c in s.upper())
    assert (ids[1, 1:] == 0).all()


def test_tokenizer_save_load(tmp_path):
    tok = DnaTokenizer()
    tok.save_pretrained(tmp_path)
    again = DnaTokenizer.from_pretrained(tmp_path)
    assert again.encode_with_library("ACGTN") == tok.encode_with_library("ACGTN")


def dense_sketch(seq: str, k: int = 12, hash_bits: int = 12, dim: int = 64) -> np.ndarray:
    """Reference: the sum of the seeded +-1 rows of each distinct hashed k-mer without N, normalised."""
    table = sign_table(hash_bits, dim, 0).numpy()
    code = {"A": 0, "C": 1, "G": 2, "T": 3}
    buckets = set()
    for i in range(len(seq) - k + 1):
        if all(c in code for c in seq[i : i + k]):
            value = 0
            for c in seq[i : i + k]:
                value = value * 4 + code[c]
            buckets.add((value * 0x9E3779B97F4A7C15 % (1 << 64)) >> (64 - hash_bits))
    vec = table[sorted(buckets)].sum(0) if buckets else np.zeros(dim, np.float32)
    return vec / max(np.linalg.norm(vec), 1e-12)


def test_untrained_model_is_exactly_the_dense_12mer_sketch():
    seqs = random_seqs(3, 300) + ["ACGTNNNN" * 40, "AT" * 200, "ACG"]
    model = TransformerEncoder(DnaSketchModel(DnaSketchConfig(**TINY)))
    np.testing.assert_allclose(model.encode(seqs), np.stack([dense_sketch(s) for s in seqs]), atol=1e-5)


def perturbed_encoder(seed: int = 0) -> TransformerEncoder:
    torch.manual_seed(seed)
    model = DnaSketchModel(DnaSketchConfig(**TINY))
    with torch.no_grad():
        model.head.weight.normal_(0, 0.3)
        model.scales[1] = 0.5
    return TransformerEncoder(model)


def test_embeddings_are_unit_rows():
    vecs = perturbed_encoder().encode(random_seqs(7, 250) + random_seqs(3, 1250, seed=1), batch_size=4)
    assert vecs.shape == (10, 64) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_save_load_gives_identical_embeddings_and_identity(tmp_path):
    enc = perturbed_encoder()
    seqs = random_seqs(6, 250) + random_seqs(2, 1250, seed=3)
    enc.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    loaded = load_encoder(str(tmp_path), device="cpu")
    assert isinstance(loaded, TransformerEncoder)
    assert np.array_equal(loaded.encode(seqs), enc.encode(seqs))
    assert loaded.identity() == enc.identity()
    assert perturbed_encoder(seed=1).identity() != enc.identity()


def test_batching_does_not_change_embeddings():
    enc = perturbed_encoder()
    seqs = random_seqs(5, 250) + random_seqs(3, 400, seed=2)
    np.testing.assert_allclose(enc.encode(seqs, batch_size=3), enc.encode(seqs, batch_size=64), atol=1e-5)


def test_config_validates_itself():
    with pytest.raises(ValueError, match="seed pattern"):
        DnaSketchConfig(seed_patterns=["1021"], initial_scales=[1.0])
    with pytest.raises(ValueError, match="differ in length"):
        DnaSketchConfig(seed_patterns=["11111111"], initial_scales=[1.0, 0.0])


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "config.json").exists(), reason="no default model shipped")
def test_shipped_default_model_loads_offline_and_encodes():
    enc = load_encoder("default", device="cpu")
    assert isinstance(enc, TransformerEncoder)
    vecs = enc.encode(random_seqs(4, 250))
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    enc = perturbed_encoder()
    seqs = random_seqs(6, 250)
    cpu = enc.encode(seqs)
    gpu = TransformerEncoder(enc.model, device="cuda").encode(seqs)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
