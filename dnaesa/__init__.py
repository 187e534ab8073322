"""dnaesa: DNA read alignment by embedding, vector search and dynamic-programming alignment.

    >>> from dnaesa import Aligner
    >>> aligner = Aligner("ref.fa")              # builds or reuses ref.fa.dnaesa-index/
    >>> for hit in aligner.map("ACGT..."):       # primary first
    ...     print(hit.contig, hit.ref_start, hit.strand, hit.cigar_string, hit.mapq)
    >>> aligner.align_file("reads.fq", "out.bam")
"""
__version__ = "0.1.0"

__all__ = ["Aligner", "Alignment", "load_encoder", "VectorStore", "__version__"]


def __getattr__(name: str):
    # imported lazily so that `import dnaesa` (and `--help`) stays fast and torch-free
    if name == "Aligner":
        from dnaesa.pipeline import Aligner

        return Aligner
    if name == "Alignment":
        from dnaesa.align.types import Alignment

        return Alignment
    if name == "load_encoder":
        from dnaesa.model.base import load_encoder

        return load_encoder
    if name == "VectorStore":
        from dnaesa.store.vector_store import VectorStore

        return VectorStore
    raise AttributeError(name)
