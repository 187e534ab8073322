"""Single-nucleotide tokenizer, a `tokenizers` WordLevel model saved as `tokenizer.json` beside the weights.

Vocabulary: [PAD]=0, A=1, C=2, G=3, T=4, N=5. Input is upper-cased and every character other than
ACGT becomes N. The model's k-mer and spaced-seed features come from the sequences through
`dnaesa.model.kmer` (the count sketch's own code); these ids feed the optional context network, and
`DnaKmerWeightModel.forward(input_ids)` decodes them back when given ids alone. Tokens are never
subwords: character tokens keep nucleotide resolution and transfer across genomes (a BPE vocabulary
learnt on one genome's repeats does not).

`encode_batch` is the fast path used at run time: a 256-entry byte lookup table derived from the
saved vocabulary, equal to what the `tokenizers` pipeline gives (a test checks it) but without a
Python object per base.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel

VOCAB = {"[PAD]": 0, "A": 1, "C": 2, "G": 3, "T": 4, "N": 5}
PAD_ID = VOCAB["[PAD]"]
TOKENIZER_FILE = "tokenizer.json"


def build_tokenizer() -> Tokenizer:
    """The `tokenizers` pipeline: uppercase, non-ACGT -> N, one token per base."""
    tok = Tokenizer(WordLevel(vocab=dict(VOCAB), unk_token="N"))
    tok.normalizer = normalizers.Sequence([_uppercase(), normalizers.Replace(Regex("[^ACGT]"), "N")])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.add_special_tokens(["[PAD]"])
    return tok


def _uppercase() -> normalizers.Normalizer:
    """acgt -> ACGT (tokenizers has Lowercase but no Uppercase normalizer)."""
    return normalizers.Sequence([normalizers.Replace(b, b.upper()) for b in "acgtn"])


class DnaTokenizer:
    """Sequences -> padded (n, max_len) int64 id matrix, and back."""

    def __init__(self, tokenizer: Tokenizer | None = None):
        self.tokenizer = tokenizer or build_tokenizer()
        vocab = self.tokenizer.get_vocab()
        if any(vocab.get(t) != i for t, i in VOCAB.items()):
            raise ValueError(f"tokenizer vocabulary {vocab} is not the nucleotide vocabulary {VOCAB}")
        self._byte_to_id = np.full(256, VOCAB["N"], dtype=np.int64)
        for base in "ACGT":
            self._byte_to_id[ord(base)] = self._byte_to_id[ord(base.lower())] = VOCAB[base]
        self._id_to_char = np.frombuffer(b"-ACGTN", dtype=np.uint8)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "DnaTokenizer":
        file = Path(path) / TOKENIZER_FILE
        if not file.exists():
            raise ValueError(f"{path}: no {TOKENIZER_FILE}; save the model with TransformerEncoder.save_pretrained")
        return cls(Tokenizer.from_file(str(file)))

    def save_pretrained(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(Path(path) / TOKENIZER_FILE))

    def encode_with_library(self, seq: str) -> list[int]:
        """Ids through the `tokenizers` pipeline (slow; the reference for `encode_batch`)."""
        return self.tokenizer.encode(seq).ids

    def encode_batch(self, seqs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (ids (n, max_len) int64 padded with PAD_ID, lengths (n,) int64)."""
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        ids = np.full((len(seqs), int(lengths.max(initial=1))), PAD_ID, dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = self._byte_to_id[np.frombuffer(s.encode("ascii", "replace"), dtype=np.uint8)]
        return ids, lengths

    def decode(self, ids: Sequence[int]) -> str:
        arr = np.asarray(ids, dtype=np.int64)
        return self._id_to_char[arr[arr != PAD_ID]].tobytes().decode("ascii")
