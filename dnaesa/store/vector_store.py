"""`VectorStore`: inner-product search over unit vectors, in shards searched one by one and merged.

Store kinds (`IndexOptions.index_kind`, `dnaesa index --store KIND`):

- `flat`: exact FAISS `IndexFlatIP` shards (float32 on disk, 4 x dim bytes a vector). On CPU, when
  the vectors are scaled integer vectors (the count-sketch encoders'), they are searched by the
  integer scan (`integer_scan.py`: int8 blocks made at the first search, exact scores, ties to
  the lower id; 3x FAISS's speed on E. coli); else by FAISS, or converted once into one torch
  matrix (bfloat16 on CPUs with AMX / AVX512-BF16).
- `hnsw`: FAISS `IndexHNSWFlat` shards (graph search; approximate).
- `int8`, `int4`: integer codes of each vector (`codes.py`; dim or dim / 2 bytes a vector), one
  `.npy` file a shard, memory-mapped read-only and searched shard by shard with a merged top k, so
  resident memory stays bounded by the pages touched and worker processes share them.

On `device="cuda"` FAISS shards go to faiss-gpu when it is installed; without it, the vectors go to
the GPU as float16 and search is a matrix product plus top-k in torch; code shards are copied to
the GPU and unpacked there one at a time. A shard's file is checked against its checksum (from the
manifest) when first read, and a float shard holding NaN or infinity is refused.
"""
from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np

from dnaesa.errors import IndexDirError
from dnaesa.runtime import cpu_has_fast_bf16
from dnaesa.store.codes import (
    CODE_KINDS,
    code_norms,
    code_width,
    prefix_columns,
    quantize,
    rerank_code_rows,
    search_code_shards,
)

STORE_KINDS = ("flat", "hnsw", *CODE_KINDS)
HNSW_M = 32
HNSW_EF_SEARCH = 128
RECONSTRUCT_CHUNK = 16384
#: the integer scan's int8 copy of a flat store at most this large (4,096 dims: 1 M fragments,
#: beyond what `auto` makes flat); a larger flat store is searched by FAISS from its memory map
SCAN_MAX_BYTES = 4 << 30
#: files checksummed at a time when an index is loaded
VERIFY_THREADS = 4

log = logging.getLogger("dnaesa")


def file_checksum(path: str | Path, block: int = 1 << 24) -> str:
    """`sha256:<hex>` of a file, read in blocks (about 1.6 GB/s here)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def verify_files(paths: list, checksums: dict | None) -> None:
    """Check each file of `paths` against `checksums` (name -> checksum; None: no check), several
    at a time on threads (hashlib and file reads release the GIL: the same CPU, less wait); an
    IndexDirError names the first that does not match."""
    if checksums is None or not paths:
        return
    if len(paths) == 1:
        found = [file_checksum(paths[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(VERIFY_THREADS, len(paths))) as pool:
            found = list(pool.map(file_checksum, paths))
    for path, value in zip(paths, found):
        want = checksums.get(Path(path).name)
        if want is None or value != want:
            raise IndexDirError(f"{path}: the shard file does not match the manifest's checksum (damaged or replaced); "
                                "rebuild the index with --rebuild-index")


def _new_shard(dim: int, kind: str):
    if kind in CODE_KINDS:
        return np.zeros((0, code_width(kind, dim)), dtype=np.uint8)
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def _size(shard) -> int:
    return len(shard) if isinstance(shard, np.ndarray) else shard.ntotal


def _read_shard(path: str, kind: str, checksums: dict | None = None):
    """A shard file: a FAISS index, or (code kinds) a read-only memory map of its codes. Checked
    against `checksums` (name -> checksum) when given; float vectors must be finite."""
    verify_files([path], checksums)
    if kind in CODE_KINDS:
        try:
            return np.load(path, mmap_mode="c")
        except (OSError, ValueError) as err:
            raise IndexDirError(f"{path}: not a readable shard ({err}); rebuild the index with --rebuild-index") from err
    try:
        shard = faiss.read_index(path)
    except RuntimeError as err:  # FAISS reports a truncated or foreign file this way
        raise IndexDirError(f"{path}: not a readable FAISS index ({str(err).splitlines()[0][:120]}); "
                            "rebuild the index with --rebuild-index") from err
    flat = faiss.downcast_index(shard.storage) if isinstance(shard, faiss.IndexHNSW) else shard
    if not np.isfinite(_flat_vectors(flat)).all():
        raise IndexDirError(f"{path}: holds NaN or infinite vectors (a damaged index); rebuild it with --rebuild-index")
    return shard


def _flat_vectors(shard) -> np.ndarray:
    """The vectors of a FAISS flat index, (n, d) float32, a view of its memory (no copy)."""
    if not shard.ntotal:
        return np.zeros((0, shard.d), dtype=np.float32)
    return faiss.rev_swig_ptr(shard.get_xb(), shard.ntotal * shard.d).reshape(shard.ntotal, shard.d)


def _write_shards(shards: list, directory: str | Path, first: int) -> list[str]:
    """Write shards as shard{first:03d}.faiss (or .npy for codes), ... into `directory`; returns the names."""
    names = []
    for n, shard in enumerate(shards, start=first):
        path = Path(directory) / f"shard{n:03d}.{'npy' if isinstance(shard, np.ndarray) else 'faiss'}"
        if isinstance(shard, np.ndarray):
            np.save(path, shard)
        else:
            faiss.write_index(shard, str(path))
        names.append(path.name)
    return names


class VectorStore:
    """Unit vectors with ids 0..n-1 in insertion order; `search` -> (scores, ids), best first."""

    def __init__(self, dim: int, kind: str = "flat", shard_size: int = 1_000_000):
        if kind not in STORE_KINDS:
            raise ValueError(f"unknown store kind {kind!r}: use one of {', '.join(STORE_KINDS)}")
        self.dim, self.kind, self.shard_size = dim, kind, shard_size
        #: FAISS indexes, or (code kinds) uint8 code arrays / memory maps
        self.shards: list = []
        #: shard files not read yet (`load(..., ntotal=N)`) and how many vectors they hold in all:
        #: read when first needed, or one at a time by `to()` on its way to a torch matrix
        self._unread: list[str] = []
        self._unread_ntotal = 0
        self._checksums: dict | None = None
        #: coordinates clipped to the code range while adding (code kinds)
        self.clipped = 0
        self.device, self.backend = "cpu", "faiss"
        self._gpu_shards: list | None = None
        self._torch_matrix = None
        #: code kinds, prepared by `to`: torch views of the shards and their 1 / |codes|
        self._code_search: tuple[list, list] | None = None
        #: flat kind on CPU with FAISS: the vectors as int8 integer blocks (`integer_scan.py`),
        #: made at the first search (or by `prepare_search`); False when they are not integer vectors
        self._scan = None
        #: where the index keeps a saved copy of that scan, (paths, checksums, largest integer)
        #: (`index_dir.keep_integer_scan`): mapped instead of reading and converting the shards
        self.saved_scan: tuple[list[Path], dict, int] | None = None

    @property
    def codes(self) -> bool:
        return self.kind in CODE_KINDS

    @property
    def ntotal(self) -> int:
        if not self.shards and not self._unread and self._torch_matrix is not None:  # FAISS copy released by `to`
            return int(self._torch_matrix.shape[0])
        return sum(_size(s) for s in self.shards) + self._unread_ntotal

    def _read_all(self) -> list:
        """The shards, reading (and checking) any that were left on disk."""
        if self._unread:
            verify_files(self._unread, self._checksums)
            shards = [_read_shard(path, self.kind) for path in self._unread]
            found = sum(_size(s) for s in shards)
            if found != self._unread_ntotal:
                raise IndexDirError(f"{self._unread[0]}: the shard files hold {found} vectors, the manifest says "
                                    f"{self._unread_ntotal}; rebuild the index with --rebuild-index")
            self.shards += shards
            self._unread, self._unread_ntotal = [], 0
        return self.shards

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._read_all()
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        if self.codes:
            vectors, clipped = quantize(vectors, self.kind)
            self.clipped += clipped
        elif not np.isfinite(vectors).all():
            raise ValueError("the encoder returned NaN or infinite vectors: they cannot be stored")
        self._append(vectors)

    def _append(self, vectors: np.ndarray) -> None:
        """Add rows (codes, or float vectors for FAISS kinds) to the last shard, opening new ones."""
        done = 0
        while done < len(vectors):
            if not self.shards or _size(self.shards[-1]) >= self.shard_size:
                self.shards.append(_new_shard(self.dim, self.kind))
            room = self.shard_size - _size(self.shards[-1])
            part = vectors[done : done + room]
            if self.codes:
                self.shards[-1] = np.concatenate([self.shards[-1], part])
            else:
                self.shards[-1].add(part)
            done += room
        self._gpu_shards = self._torch_matrix = self._code_search = self._scan = None

    def to(self, device: str, backend: str = "auto", keep_faiss: bool = True) -> "VectorStore":
        """Search on `device` ("cpu" or "cuda") with `backend` from now on.

        "faiss": the FAISS shards (faiss-gpu on cuda). "torch": a matrix product plus top-k in torch,
        float32 on cpu, float16 on cuda. "torch-bf16": the same in bfloat16, which on CPUs with
        AMX or AVX512-BF16 runs 3-4x faster than FAISS's float32 (measured: 10,000 queries against
        4,640 vectors of 4,096 dims, 2 cores: 0.65 s against 2.45 s; top-1 hit agreed for 99.7%).
        "auto": faiss-gpu when installed, else torch, on cuda; torch-bf16 on a CPU with fast
        bfloat16, else faiss. With a torch backend and `keep_faiss=False` the FAISS shards are
        dropped (a search-only store: half the memory of a bfloat16 one), and it cannot move again.
        Code kinds are always searched shard by shard by torch (exact integer products on CPU,
        float16 on CUDA, whatever torch backend is named; "faiss" is refused); their shards are
        read and checked here, once, so worker processes forked later share them."""
        if not self.shards and not self._unread and self._torch_matrix is not None:
            raise ValueError("this store released its FAISS shards; load it again to search elsewhere")
        if backend == "auto":
            if self.codes:
                backend = "torch"
            elif device == "cuda":
                backend = "faiss" if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0 else "torch"
            else:
                backend = "torch-bf16" if cpu_has_fast_bf16() else "faiss"
        if backend not in ("faiss", "torch", "torch-bf16") or (self.codes and backend == "faiss"):
            raise ValueError(f"search backend {backend!r} cannot search a {self.kind} store: use auto, torch or torch-bf16"
                             if self.codes else f"unknown search backend {backend!r}: use auto, faiss, torch or torch-bf16")
        self.device, self.backend = device, backend
        self._gpu_shards = self._torch_matrix = self._code_search = self._scan = None
        if self.codes:
            self._prepare_codes()
        elif backend.startswith("torch"):
            self._to_matrix(keep_faiss)
        elif device == "cuda":
            self._gpu_shards = [faiss.index_cpu_to_all_gpus(s) for s in self._read_all()]
        return self

    def _dtype(self):
        import torch

        return torch.bfloat16 if self.backend == "torch-bf16" else torch.float16 if self.device == "cuda" else torch.float32

    def _prepare_codes(self) -> None:
        import torch

        tensors, inv_norms = [], []
        for shard in self._read_all():
            norms = code_norms(shard, self.kind, self.dim)
            inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
            tensors.append(torch.from_numpy(shard).to(self.device))
            inv_norms.append(torch.from_numpy(inv).to(self.device))
        self._code_search = (tensors, inv_norms)

    def _to_matrix(self, keep_faiss: bool) -> None:
        """FAISS shards -> one torch matrix, converted slice by slice into a preallocated matrix;
        shard files not read yet are read one at a time and, without keep_faiss, dropped once
        copied: the peak is the matrix plus one float32 shard."""
        import torch

        matrix = torch.empty((self.ntotal, self.dim), dtype=self._dtype(), device=self.device)
        kept, row = [], 0
        for shard in [*self.shards, *self._unread]:
            shard = _read_shard(shard, self.kind, self._checksums) if isinstance(shard, str) else shard
            if row + shard.ntotal > len(matrix):
                raise IndexDirError(f"the shard files hold more vectors than the manifest's {len(matrix)}; "
                                    "rebuild the index with --rebuild-index")
            for lo in range(0, shard.ntotal, RECONSTRUCT_CHUNK):
                part = shard.reconstruct_n(lo, min(RECONSTRUCT_CHUNK, shard.ntotal - lo))
                matrix[row : row + len(part)] = torch.from_numpy(part)
                row += len(part)
            if keep_faiss or not row:
                kept.append(shard)
            del shard
        if row != len(matrix):
            raise IndexDirError(f"the shard files hold {row} vectors, the manifest says {len(matrix)}; "
                                "rebuild the index with --rebuild-index")
        self.shards, self._unread, self._unread_ntotal = kept if keep_faiss or not row else [], [], 0
        self._torch_matrix = matrix

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` inner products of each query: (scores float32 (n, k), ids int64 (n, k)), -1 ids pad."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k_eff = min(k, max(self.ntotal, 1))
        if self.codes:
            if self._code_search is None:
                self.to(self.device, "auto")
            tensors, inv_norms = self._code_search
            scores, ids = search_code_shards(queries, tensors, inv_norms, self.kind, self.dim, k_eff, self.device)
        elif self._torch_matrix is not None:
            scores, ids = self._search_torch(queries, k_eff)
        else:
            scan = self.integer_scan()
            found = scan.search(queries, k_eff) if scan else None
            scores, ids = found if found is not None else self._search_shards(queries, k_eff)
        if k_eff < k:
            pad = k - k_eff
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return scores, ids

    def open_shards(self) -> None:
        """Read (memory-map) and check the shard files now, so that worker processes forked later
        share them; `rerank` needs nothing else (no norms pass, no copy to a device)."""
        self._read_all()

    def rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int, prefilter: int = 0
               ) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-`k` of each query among its `candidates` (int64 ids (n, C), -1 pads), scored exactly
        as `search` scores them; only the candidates' rows are read. Code kinds: `prefilter` = P:
        only the P best on a prefix of each row are scored in full (`codes.rerank_code_rows`). A
        flat store: by its integer scan (`reranks`), None when a query is not a scaled integer
        vector."""
        if not self.codes:
            if not self.reranks():
                raise ValueError("rerank needs a code store (int8, int4) or a flat one with its integer scan")
            return self.integer_scan().rerank(np.ascontiguousarray(queries, dtype=np.float32), candidates, k)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        return rerank_code_rows(queries, self._read_all(), self.kind, self.dim, self.shard_size, candidates, k,
                                prefilter)

    def reranks(self) -> bool:
        """Whether `rerank` can score chosen ids as `search` would: a code store, or a flat one on
        CPU whose vectors are scaled integer vectors (its integer scan; made now)."""
        return self.codes or self.integer_scan() is not None

    def prepare_search(self) -> None:
        """Make what `search` needs now (the integer blocks of a flat store), so that worker
        processes forked afterwards share it."""
        self.integer_scan()

    def integer_scan(self):
        """The store's `IntegerScan` when a FAISS flat store on CPU holds scaled integer vectors
        (the count-sketch encoders'), made once; else None (FAISS searches)."""
        if self._scan is None:
            self._scan = False
            if (self.kind == "flat" and self.device == "cpu" and self.backend == "faiss" and self.ntotal
                    and self.ntotal * self.dim <= SCAN_MAX_BYTES):
                from dnaesa.store.integer_scan import IntegerScan

                if self.saved_scan is not None:
                    self._scan = self._saved_integer_scan()
                if not self._scan:
                    parts = [_flat_vectors(shard) for shard in self._read_all()]
                    self._scan = IntegerScan.from_vectors(parts, self.dim, self.ntotal) or False
        return self._scan or None

    def _saved_integer_scan(self):
        """The index's saved integer scan, checked and memory-mapped; None when its files are
        damaged or gone (they are removed, so that the next run saves them again; this one reads
        the shards, the slower way to the same scan)."""
        from dnaesa.store.integer_scan import IntegerScan

        paths, checksums, largest = self.saved_scan
        try:
            verify_files(paths, checksums)
            return IntegerScan.load(paths, self.ntotal, self.dim, largest)
        except (IndexDirError, OSError, ValueError) as err:
            log.info("[dnaesa] %s; the integer scan is made from the shards this time", err)
            for path in paths:
                Path(path).unlink(missing_ok=True)
            self.saved_scan = None
            return None

    def _search_shards(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each shard searched by FAISS, the hits merged."""
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
        self._scan = None
        return names

    def refill(self, path: str | Path, checksums: dict | None = None) -> None:
        """Take the shard file `path` (checked against `checksums`) back into memory as the last
        shard, to go on filling it: an index that grows (`dnaesa index --add`) keeps every shard
        but the last one full."""
        self._read_all()
        self.shards.append(_read_shard(str(path), self.kind, checksums))
        self._gpu_shards = self._torch_matrix = self._code_search = self._scan = None

    @classmethod
    def load(cls, directory: str | Path, shard_names: list[str], dim: int, kind: str, shard_size: int,
             ntotal: int | None = None, checksums: dict | None = None) -> "VectorStore":
        """The store saved in `directory`. Given `ntotal` (the vectors in all shards, from the
        manifest), the shard files are read only when first needed, so that `to(..., keep_faiss=False)`
        can convert them one at a time. Given `checksums` (shard name -> `file_checksum`), each
        file is checked when read."""
        store = cls(dim, kind, shard_size)
        store._checksums = checksums
        paths = [str(Path(directory) / name) for name in shard_names]
        if ntotal is None:
            verify_files(paths, checksums)
            store.shards = [_read_shard(path, kind) for path in paths]
        else:
            store._unread, store._unread_ntotal = paths, int(ntotal)
        return store


class PrefixStore(VectorStore):
    """The stored tier of a `lean` index: of each `full_dim`-dim vector's int4 codes, only the first
    1 / `PREFIX_PART` of the bytes (256 of 2,048 at 4,096 dims: `codes.prefix_columns`), which for a
    count sketch are a smaller sketch of the same k-mers. It serves `rerank` only: the prefilter
    that picks which candidates the sequence tier (`sequence_tier.py`) scores in full."""

    def __init__(self, full_dim: int, shard_size: int = 1_000_000):
        self.full_dim = full_dim
        self.columns = prefix_columns(full_dim)
        super().__init__(len(self.columns), "int4", shard_size)

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._read_all()
        if vectors.ndim != 2 or vectors.shape[1] != self.full_dim:
            raise ValueError(f"expected vectors of shape (n, {self.full_dim}), got {vectors.shape}")
        codes, clipped = quantize(vectors, "int4")  # the full vector's codes (its own grid), cut
        self.clipped += clipped
        self._append(np.ascontiguousarray(codes[:, : code_width("int4", self.dim)]))

    def search(self, queries: np.ndarray, k: int):
        raise ValueError("a lean index's stored tier only re-ranks candidates")

    def rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int, prefilter: int = 0):
        """Top-`k` of each query (full-dim vectors) among its `candidates` on the prefix alone."""
        return super().rerank(np.ascontiguousarray(queries[:, self.columns]), candidates, k, 0)

    @classmethod
    def load(cls, directory: str | Path, shard_names: list[str], full_dim: int, shard_size: int, ntotal: int,
             checksums: dict | None = None) -> "PrefixStore":
        """The tier saved in `directory`; its files are read (and checked) when first needed."""
        store = cls(full_dim, shard_size)
        store._checksums = checksums
        store._unread, store._unread_ntotal = [str(Path(directory) / name) for name in shard_names], int(ntotal)
        return store
