"""`VectorStore`: inner-product search over unit vectors, in shards searched one by one and merged.

Shards bound the memory of one FAISS index and let a store hold many genomes; each shard is an exact
`IndexFlatIP` (default) or an `IndexHNSWFlat` for large references. On `device="cuda"` the shards go
to faiss-gpu when it is installed; without it, the vectors go to the GPU as float16 and search is a
matrix product plus top-k in torch, which returns the same hits as the exact CPU index (up to ties
and float16 rounding).
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

HNSW_M = 32
RECONSTRUCT_CHUNK = 16384
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_fast_bf16() -> bool:
    """True on x86 CPUs that compute bfloat16 natively (AMX or AVX512-BF16): Linux /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in _BF16_FLAGS)
    except OSError:
        pass
    return False
HNSW_EF_SEARCH = 128


def _new_shard(dim: int, kind: str) -> faiss.Index:
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def _read_shard(path: str) -> faiss.Index:
    try:
        return faiss.read_index(path)
    except RuntimeError as err:  # FAISS reports a truncated or foreign file this way
        raise ValueError(f"{path}: not a readable FAISS index ({str(err).splitlines()[0][:120]}); rebuild the index") from err


def _write_shards(shards: list[faiss.Index], directory: str | Path, first: int) -> list[str]:
    """Write shards as shard{first:03d}.faiss, ... into `directory`; returns the names."""
    names = []
    for n, shard in enumerate(shards, start=first):
        names.append(f"shard{n:03d}.faiss")
        faiss.write_index(shard, str(Path(directory) / names[-1]))
    return names


class VectorStore:
    """Unit vectors with ids 0..n-1 in insertion order; `search` -> (scores, ids), best first."""

    def __init__(self, dim: int, kind: str = "flat", shard_size: int = 1_000_000):
        self.dim, self.kind, self.shard_size = dim, kind, shard_size
        self.shards: list[faiss.Index] = []
        #: shard files not read yet (`load(..., ntotal=N)`) and how many vectors they hold in all:
        #: read when first needed, or one at a time by `to()` on its way to a torch matrix
        self._unread: list[str] = []
        self._unread_ntotal = 0
        self.device, self.backend = "cpu", "faiss"
        self._gpu_shards: list | None = None
        self._torch_matrix = None

    @property
    def ntotal(self) -> int:
        if not self.shards and not self._unread and self._torch_matrix is not None:  # FAISS copy released by `to`
            return int(self._torch_matrix.shape[0])
        return sum(s.ntotal for s in self.shards) + self._unread_ntotal

    def _read_all(self) -> list[faiss.Index]:
        """The FAISS shards, reading any that were left on disk."""
        if self._unread:
            shards = [_read_shard(path) for path in self._unread]
            if sum(s.ntotal for s in shards) != self._unread_ntotal:
                raise ValueError(f"{self._unread[0]}: the shard files hold {sum(s.ntotal for s in shards)} vectors, "
                                 f"the manifest says {self._unread_ntotal}; rebuild the index")
            self.shards += shards
            self._unread, self._unread_ntotal = [], 0
        return self.shards

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._read_all()
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        done = 0
        while done < len(vectors):
            if not self.shards or self.shards[-1].ntotal >= self.shard_size:
                self.shards.append(_new_shard(self.dim, self.kind))
            room = self.shard_size - self.shards[-1].ntotal
            self.shards[-1].add(vectors[done : done + room])
            done += room
        self._gpu_shards = self._torch_matrix = None

    def to(self, device: str, backend: str = "auto", keep_faiss: bool = True) -> "VectorStore":
        """Search on `device` ("cpu" or "cuda") with `backend` from now on.

        "faiss": the FAISS shards (faiss-gpu on cuda). "torch": a matrix product plus top-k in torch,
        float32 on cpu, float16 on cuda. "torch-bf16": the same in bfloat16, which on CPUs with
        AMX or AVX512-BF16 runs 3-4x faster than FAISS's float32 (measured: 10,000 queries against
        4,640 vectors of 4,096 dims, 2 cores: 0.65 s against 2.45 s; top-1 hit agreed for 99.7%).
        "auto": faiss-gpu when installed, else torch, on cuda; torch-bf16 on a CPU with fast
        bfloat16, else faiss. With a torch backend and `keep_faiss=False` the FAISS shards are
        dropped (a search-only store: half the memory of a bfloat16 one), and it cannot move again."""
        if not self.shards and not self._unread and self._torch_matrix is not None:
            raise ValueError("this store released its FAISS shards; load it again to search elsewhere")
        if backend == "auto":
            if device == "cuda":
                backend = "faiss" if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0 else "torch"
            else:
                backend = "torch-bf16" if cpu_has_fast_bf16() else "faiss"
        if backend not in ("faiss", "torch", "torch-bf16"):
            raise ValueError(f"unknown search backend {backend!r}: use auto, faiss, torch or torch-bf16")
        self.device, self.backend = device, backend
        self._gpu_shards = self._torch_matrix = None
        if backend.startswith("torch"):
            import torch

            dtype = torch.bfloat16 if backend == "torch-bf16" else torch.float16 if device == "cuda" else torch.float32
            # converted slice by slice into one preallocated matrix; shard files not read yet are read
            # one at a time and, without keep_faiss, dropped once copied: the peak is the matrix
            # plus one float32 shard
            matrix = torch.empty((self.ntotal, self.dim), dtype=dtype, device=device)
            kept, row = [], 0
            for shard in [*self.shards, *self._unread]:
                shard = _read_shard(shard) if isinstance(shard, str) else shard
                if row + shard.ntotal > len(matrix):
                    raise ValueError(f"the shard files hold more vectors than the manifest's {len(matrix)}; rebuild the index")
                for lo in range(0, shard.ntotal, RECONSTRUCT_CHUNK):
                    part = shard.reconstruct_n(lo, min(RECONSTRUCT_CHUNK, shard.ntotal - lo))
                    matrix[row : row + len(part)] = torch.from_numpy(part)
                    row += len(part)
                if keep_faiss or not row:
                    kept.append(shard)
                del shard
            if row != len(matrix):
                raise ValueError(f"the shard files hold {row} vectors, the manifest says {len(matrix)}; rebuild the index")
            self.shards, self._unread, self._unread_ntotal = kept if keep_faiss or not row else [], [], 0
            self._torch_matrix = matrix
        elif device == "cuda":
            self._gpu_shards = [faiss.index_cpu_to_all_gpus(s) for s in self._read_all()]
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` inner products of each query: (scores float32 (n, k), ids int64 (n, k)), -1 ids pad."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k_eff = min(k, max(self.ntotal, 1))
        if self._torch_matrix is not None:
            scores, ids = self._search_torch(queries, k_eff)
        else:
            scores, ids = self._search_shards(queries, k_eff)
        if k_eff < k:
            pad = k - k_eff
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return scores, ids

    def _search_shards(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        shards = self._gpu_shards or self._read_all()
        all_scores, all_ids, offset = [], [], 0
        for shard in shards:
            if shard.ntotal:
                s, i = shard.search(queries, min(k, shard.ntotal))
                all_scores.append(s)
                all_ids.append(np.where(i >= 0, i + offset, -1))
            offset += shard.ntotal
        scores = np.concatenate(all_scores, axis=1)
        ids = np.concatenate(all_ids, axis=1)
        if len(all_scores) == 1:
            return scores, ids
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)

    def _search_torch(self, queries: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by matrix products, `chunk` queries at a time: the score block is chunk x
        fragments (1,024 x 70,000 in bfloat16 = 143 MB), and on CPU every worker process holds one."""
        import torch

        matrix = self._torch_matrix
        out_s, out_i = [], []
        for lo in range(0, len(queries), chunk):
            q = torch.from_numpy(queries[lo : lo + chunk]).to(matrix.device, dtype=matrix.dtype)
            s, i = torch.topk(q @ matrix.T, k, dim=1)
            out_s.append(s.float().cpu().numpy())
            out_i.append(i.cpu().numpy().astype(np.int64))
        return np.concatenate(out_s), np.concatenate(out_i)

    def save(self, directory: str | Path) -> list[str]:
        """Write one file per shard into `directory`; returns their names (for the manifest)."""
        return _write_shards(self._read_all(), directory, 0)

    def spill(self, directory: str | Path, first: int, keep_last: bool = True) -> list[str]:
        """Write the shards in memory to `directory` as shard{first}, shard{first+1}, ... and drop
        them from memory (with `keep_last`, all but the last, which may still grow): an index is
        built with one shard in memory at a time. Returns the names written."""
        ready = self.shards[:-1] if keep_last else self.shards
        names = _write_shards(ready, directory, first)
        self.shards = self.shards[len(ready):]
        return names

    @classmethod
    def load(cls, directory: str | Path, shard_names: list[str], dim: int, kind: str, shard_size: int,
             ntotal: int | None = None) -> "VectorStore":
        """The store saved in `directory`. Given `ntotal` (the vectors in all shards, from the
        manifest), the shard files are read only when first needed, so that `to(..., keep_faiss=False)`
        can convert them one at a time."""
        store = cls(dim, kind, shard_size)
        paths = [str(Path(directory) / name) for name in shard_names]
        if ntotal is None:
            store.shards = [faiss.read_index(path) for path in paths]
        else:
            store._unread, store._unread_ntotal = paths, int(ntotal)
        return store
