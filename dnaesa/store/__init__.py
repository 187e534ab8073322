"""The vector store (sharded FAISS, CPU or GPU) and the on-disk index directory with its manifest."""
from dnaesa.store.vector_store import VectorStore

__all__ = ["VectorStore"]
