"""The trained-encoder model: tokenizer, count-sketch equivalence at init, strand symmetry, save/load, the
shipped default."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dnaesa.model.base import DEFAULT_MODEL_DIR, load_encoder
from dnaesa.model.kmer import KmerSketchEncoder
from dnaesa.model.tokenizer import DnaTokenizer
from dnaesa.model.transformer import DnaKmerWeightConfig, DnaKmerWeightModel, TransformerEncoder
from dnaesa.train.data import reverse_complement

TINY = dict(k=6, dim=64, use_table=True, context_layers=1, d_model=16, n_heads=2, ff_dim=32, stem_kernel=8, stride=4,
            attention_window=8, spaced_seeds=["11011011"])


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


def test_untrained_model_is_exactly_the_count_sketch():
    """Step 0 = KmerSketchEncoder (to the last bit or so: torch's and numpy's sqrt may differ in
    it on some CPUs), with and without the context network."""
    seqs = random_seqs(5, 300) + random_seqs(2, 1250, seed=4) + ["ACGTNNNN" * 40, "AT" * 200, "ACG", ""]
    for context_layers in (-1, 1):
        enc = TransformerEncoder(DnaKmerWeightModel(DnaKmerWeightConfig(**{**TINY, "context_layers": context_layers})))
        np.testing.assert_allclose(enc.encode(seqs, batch_size=4), KmerSketchEncoder(k=6, dim=64).encode(seqs), rtol=0, atol=1e-7)
    default = TransformerEncoder(DnaKmerWeightModel(DnaKmerWeightConfig(spaced_seeds=["11011011011"])))  # k=8, dim=4096
    np.testing.assert_allclose(default.encode(seqs), KmerSketchEncoder().encode(seqs), rtol=0, atol=1e-7)


def perturbed_encoder(seed: int = 0, context_layers: int = 1) -> TransformerEncoder:
    torch.manual_seed(seed)
    model = DnaKmerWeightModel(DnaKmerWeightConfig(**{**TINY, "context_layers": context_layers}))
    with torch.no_grad():
        model.log_weight.normal_(0, 0.5)
        model.spaced_scale.fill_(0.7)
        if context_layers >= 0:
            model.head.weight.normal_(0, 0.5)
            model.head.bias.normal_(0, 0.5)
    return TransformerEncoder(model)


@pytest.mark.parametrize("context_layers", [-1, 0, 1])
def test_trained_weights_keep_exact_strand_symmetry(context_layers):
    enc = perturbed_encoder(context_layers=context_layers)
    assert enc.strand_symmetric
    seqs = random_seqs(4, 250) + random_seqs(2, 1250, seed=5) + ["ACGTTTTTTTTTTACGT" * 20, "ACGTNNACGTAAAACCC" * 9]
    fwd = enc.encode(seqs)
    assert np.array_equal(fwd, enc.encode([reverse_complement(s) for s in seqs]))
    assert not np.array_equal(fwd, KmerSketchEncoder(k=6, dim=64).encode(seqs))  # the weights do change it


def test_gradients_reach_the_table_and_the_context_network():
    model = DnaKmerWeightModel(DnaKmerWeightConfig(**TINY))
    a, b = model.embed(random_seqs(3, 200)), model.embed(random_seqs(3, 600, seed=1))
    (a @ b.T).sum().backward()
    assert model.log_weight.grad.abs().sum() > 0
    assert model.head.weight.grad.abs().sum() > 0
    assert model.spaced_scale.grad.abs().sum() > 0


def test_forward_from_input_ids_matches_embed():
    enc = perturbed_encoder()
    seqs = random_seqs(3, 250)
    ids, _ = DnaTokenizer().encode_batch(seqs)
    with torch.no_grad():
        torch.testing.assert_close(enc.model(torch.from_numpy(ids)), enc.model.embed(seqs))


def test_embeddings_are_unit_rows():
    vecs = perturbed_encoder().encode(random_seqs(7, 250) + random_seqs(3, 1250, seed=1), batch_size=4)
    assert vecs.shape == (10, 64) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("context_layers", [-1, 1])
def test_save_load_gives_identical_embeddings_and_identity(tmp_path, context_layers):
    enc = perturbed_encoder(context_layers=context_layers)
    seqs = random_seqs(6, 250) + random_seqs(2, 1250, seed=3)
    enc.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    loaded = load_encoder(str(tmp_path), device="cpu")
    assert isinstance(loaded, TransformerEncoder)
    assert np.array_equal(loaded.encode(seqs), enc.encode(seqs))
    assert loaded.identity() == enc.identity()
    assert perturbed_encoder(seed=1, context_layers=context_layers).identity() != enc.identity()


def test_batching_does_not_change_embeddings():
    enc = perturbed_encoder()
    seqs = random_seqs(5, 250) + random_seqs(3, 400, seed=2)
    np.testing.assert_allclose(enc.encode(seqs, batch_size=3), enc.encode(seqs, batch_size=64), atol=1e-6)


def test_config_validates_itself():
    with pytest.raises(ValueError, match="k must be"):
        DnaKmerWeightConfig(k=14)
    with pytest.raises(ValueError, match="power of two"):
        DnaKmerWeightConfig(dim=100)
    with pytest.raises(ValueError, match="context_layers"):
        DnaKmerWeightConfig(context_layers=-2)
    with pytest.raises(ValueError, match="palindrome"):
        DnaKmerWeightConfig(spaced_seeds=["1101111"])
    with pytest.raises(ValueError, match="differ in length"):
        DnaKmerWeightConfig(spaced_seeds=["11011011"], spaced_scales=[1.0, 2.0])


def test_spaced_seeds_are_canonical_and_skip_ns():
    from dnaesa.model.kmer import canonical_spaced_kmers

    seqs = ["ACGTTGCAACGTAGGA", reverse_complement("ACGTTGCAACGTAGGA"), "ACGNACGTACG", "ACG"]
    idx, codes = canonical_spaced_kmers(seqs, "11011")
    assert set(codes[idx == 0].tolist()) == set(codes[idx == 1].tolist())
    assert len(set(codes[idx == 0].tolist())) == (idx == 0).sum()
    assert (idx == 2).sum() == 2 and not (idx == 3).any()  # ACGTACG has 2 N-free 5-spans; ACG none


def test_default_model_ships_and_its_numpy_path_matches_the_transformers_model():
    """The bundled default is a saved `DnaKmerWeightModel`; `load_encoder` runs it as the numpy
    `SketchModelEncoder`, which must give the embeddings the transformers model gives."""
    from dnaesa.model.kmer import SketchModelEncoder

    assert (DEFAULT_MODEL_DIR / "config.json").exists() and (DEFAULT_MODEL_DIR / "model.safetensors").exists()
    fast = load_encoder("default", device="cpu")
    assert isinstance(fast, SketchModelEncoder) and fast.strand_symmetric
    slow = TransformerEncoder.from_pretrained(DEFAULT_MODEL_DIR)
    assert float(slow.model.spaced_scale.detach()[0]) != 0.0  # the shipped model is more than the plain sketch
    seqs = random_seqs(64, 250) + random_seqs(16, 1250) + ["ACGTNNACGTACGTAC" * 20, "ACG"]
    a, b = fast.encode(seqs), slow.encode(seqs)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert (a.argmax(1) == b.argmax(1)).all()
    assert fast.identity() != slow.identity() and fast.identity().startswith("sketch-model:")
    np.testing.assert_array_equal(fast.encode(seqs[:8]), fast.encode([reverse_complement(s) for s in seqs[:8]]))


def test_sketch_model_with_zero_scales_is_the_plain_sketch(tmp_path):
    from dnaesa.model.kmer import KmerSketchEncoder, SketchModelEncoder

    model = DnaKmerWeightModel(DnaKmerWeightConfig(use_table=False, spaced_seeds=["11011011011"]))
    TransformerEncoder(model).save_pretrained(tmp_path / "m")
    seqs = random_seqs(20, 300)
    np.testing.assert_array_equal(SketchModelEncoder(tmp_path / "m").encode(seqs), KmerSketchEncoder().encode(seqs))
    with pytest.raises(ValueError, match="sketch-only"):
        TransformerEncoder(DnaKmerWeightModel(DnaKmerWeightConfig(use_table=True))).save_pretrained(tmp_path / "t")
        SketchModelEncoder(tmp_path / "t")


def test_bundled_model_loads_offline_and_places_lambda_reads(lambda_reads_placed):
    """The bundled default model works end to end, offline."""
    name = "default"
    enc = load_encoder(name, device="cpu")
    assert enc.strand_symmetric
    vecs = enc.encode(random_seqs(4, 250))
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    placed, total, aligner = lambda_reads_placed(name)
    assert aligner.encoder.identity() == enc.identity()
    assert placed >= 0.99 * total, f"{placed}/{total}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    enc = perturbed_encoder()
    seqs = random_seqs(6, 250)
    cpu = enc.encode(seqs)
    gpu = TransformerEncoder(enc.model, device="cuda").encode(seqs)  # the model moves to the GPU
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
