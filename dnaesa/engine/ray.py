"""The Ray engine (`--engine ray`, the optional extra `pip install -e '.[ray]'`): batches of reads
aligned by actors of a Ray cluster, the SAM written by the driver in input order.

Design, as a user with a cluster would want it:
- Each actor builds its own `Aligner` once, from paths: the reference and the index directory,
  which must be reachable from every node (a shared filesystem); the driver builds the index
  first when it is missing, so actors only load it (code stores are memory-mapped, so actors on
  one node share their pages). Actors hold the encoder, the store and the refiner for the whole
  run; a task carries only a batch of reads and returns its SAM text.
- The driver parses reads, keeps at most `IN_FLIGHT_PER_ACTOR` batches per actor in flight
  (back-pressure: a slow writer or a huge input never fills memory), and writes each batch's
  records when its turn in input order comes. The records are made by the same functions as the
  local engine's (`format_reads`), so the SAM equals the local one apart from @PG.
- Faults: actors are created with `max_restarts` and their tasks with `max_task_retries`, so an
  actor that dies is replaced by Ray and its batches are run again; each batch is written once,
  in order, so nothing is lost or duplicated. When retries run out the run stops with one error
  line and no output.
- Pairs: the driver estimates the insert size (as the local engine does, from the first pairs)
  and the actors pair mates with it.
- Index building (`dnaesa index --engine ray`, and `align --engine ray` when its index is
  missing): the shards are written by the actors. `index_dir.ShardWriter` cuts the build into
  spans of one shard each; an actor encodes its span's fragments and writes the shard (every tier's
  file) straight into the index's build folder, returning only the files' names and checksums, so
  no vectors cross the network; the driver records the shards in order in `progress.json`, so an
  interrupted build resumes after the last recorded one, and the index is the same bytes as a local
  build's (tested). That needs the build folder on a filesystem every actor sees (as aligning with
  Ray does): the driver writes a file of a random name there and asks every actor whether it sees
  it. When one does not (nodes without a shared filesystem), the build falls back to the actors
  encoding chunks and the driver writing the shards: `RayEngine.encoded_chunks` then has the
  contract of `store.parallel_embed.encoded_chunks` (each chunk's vectors, in order). Either way
  the job (the reference, the fragment table and the tiers' encoders, checked by the driver against
  the manifest) is put in the object store once with `ray.put` and each `_ChunkActor` fetches it
  once, on its first task (and again only when Ray restarts it); a task carries a span's number or a
  chunk's first fragment. Why not load from the FASTA path, as the align actors do: the reference
  being indexed is not always one file (several genomes combined into one index, a coarse tier
  added to an int4 index), the encoders must be the very ones the driver checked, and a FASTA is
  not parsed again per actor; the price is one copy of the reference per actor (as loading it would
  cost). The driver holds the object until the build ends, so a restarted actor finds it. Encoders
  run numpy's OpenBLAS on one thread wherever they run (`parallel_embed.encode_on_one_thread`):
  one thread rounds some products differently from several. A full disk met by an actor is the
  same one error line as a local build's.
- Resources: the actors' CPUs and GPUs (`--ray-gpus-per-worker`) are reserved at once, in a
  placement group, before any work is sent: a cluster that cannot hold them all (a GPU asked of a
  cluster without one, more actors than CPUs) is one error line, at once for the local cluster a
  run starts and after `PLACEMENT_SECONDS` for a cluster joined (which may be scaling up), never a
  run that waits forever on actors Ray cannot place. Align actors given GPUs search on CUDA
  (`device="cuda"`: one that finds no GPU fails, and the run ends with one error line); the
  index-building actors encode with numpy and ask for no GPU.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Iterator

from dnaesa.errors import DnaesaError, IndexDirError, OptionsError, WorkerError

if TYPE_CHECKING:  # pragma: no cover
    from dnaesa.pipeline import Aligner, Summary

#: batches in flight per actor: enough to keep every actor busy while the driver writes
IN_FLIGHT_PER_ACTOR = 2
#: how often an actor is replaced, and a batch retried, before the run gives up
MAX_RESTARTS = 3
#: how long a cluster joined (not started by the run) may take to find room for the actors;
#: `DNAESA_RAY_PLACEMENT_SECONDS` overrides
PLACEMENT_SECONDS = 120
#: test hook: an actor process exits while aligning this batch number (once per run folder)
KILL_HOOK = "DNAESA_RAY_TEST_KILL_BATCH"
#: test hook for index building: "LO:PATH", an actor exits while encoding the chunk starting at
#: fragment LO (or a shard holding it), once (while PATH does not exist; it creates it)
KILL_CHUNK_HOOK = "DNAESA_RAY_TEST_KILL_CHUNK"
#: test hook for index building: set, the actors do not see the build folder (as on nodes without
#: a shared filesystem), so the driver writes the shards
UNSHARED_HOOK = "DNAESA_RAY_TEST_UNSHARED"


def _ray():
    try:
        import ray
    except ImportError:
        raise OptionsError("--engine ray needs Ray: pip install -e '.[ray]'") from None
    return ray


def _bundle(group, i: int):
    """The scheduling strategy that puts actor `i` in bundle `i` of the placement group `group`."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)


def _release(group) -> None:
    """Free a placement group (`RayEngine._reserve`), if any."""
    if group is None:
        return
    from ray.util.placement_group import remove_placement_group

    try:
        remove_placement_group(group)
    except Exception:  # noqa: BLE001 - a cluster gone: nothing to free
        pass


class _Actor:
    """One Ray actor: an `Aligner` built from paths, formatting batches of reads as SAM text."""

    def __init__(self, spec: dict, formatter, pairing=None):
        from dnaesa.pipeline import Aligner

        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.aligner = Aligner(spec["ref"], model=spec["model"], index=spec["index"], device=spec["device"],
                               threads=1, preset=spec["preset"], **spec["options"])
        self.formatter, self.pairing = formatter, pairing
        self.kill = spec.get("kill")

    def format(self, number: int, names: list[str], seqs: list[str], quals: list) -> tuple[str, int]:
        from dnaesa.engine.local import format_pairs, format_reads

        if self.kill and number == self.kill[0] and not os.path.exists(self.kill[1]):
            open(self.kill[1], "w").close()
            os._exit(1)  # the test hook: die mid-run, once
        a = self.aligner
        if self.pairing is not None:
            return format_pairs(a.refiner, self.formatter, self.pairing, names, seqs, quals, a.find_candidates(seqs),
                                search=a.find_candidates)
        return format_reads(a.refiner, self.formatter, names, seqs, quals, a.find_candidates(seqs),
                            search=a.find_candidates)


class _ChunkActor:
    """One Ray actor building an index: it encodes chunks, or writes whole shards. Each task
    carries the job's object reference (in a list, which Ray passes as it is: a few bytes) and the
    actor fetches the object on its first task only, keeping it: once per actor, and once more
    after a restart. (Not a constructor argument: Ray warns, on stderr even with -q, about
    restartable actors whose constructor takes objects of the store.)"""

    def __init__(self, kill: tuple | None = None, unshared: bool = False):
        try:
            import torch

            torch.set_num_threads(1)  # the actors are the parallelism
        except ImportError:  # pragma: no cover
            pass
        self.job, self.kill, self.unshared = None, kill, unshared

    def _get(self, shared: list, lo: int, hi: int):
        if self.kill and lo <= self.kill[0] < hi and not os.path.exists(self.kill[1]):
            open(self.kill[1], "w").close()
            os._exit(1)  # the test hook: die mid-build, once
        if self.job is None:
            import ray

            self.job = ray.get(shared[0])
        return self.job

    def sees(self, path: str) -> bool:
        """Whether the file `path` (the driver's check file in the build folder) is seen here."""
        return not self.unshared and os.path.exists(path)

    def encode(self, shared: list, lo: int) -> list:
        return self._get(shared, lo, lo + 1)(lo)

    def write(self, shared: list, span: int, lo: int, hi: int):
        return self._get(shared, lo, hi)(span)


def _reachable(address: str, timeout: float = 5.0) -> None:
    """DnaesaError unless something listens at HOST:PORT (the head node's GCS)."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise OptionsError(f"--ray-address wants auto or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise DnaesaError(f"cannot reach the Ray cluster at {address} ({err.strerror or err})") from None


class RayEngine:
    """Runs `align_file` of an `Aligner` on a Ray cluster: `workers` actors of `cpus_per_worker`
    CPUs (and `gpus_per_worker` GPUs) each; `address` "auto", "HOST:PORT" or None (a local
    cluster started for this run)."""

    def __init__(self, workers: int = 2, address: str | None = None, cpus_per_worker: int = 1,
                 gpus_per_worker: float = 0.0):
        if workers < 1:
            raise OptionsError(f"--ray-workers must be at least 1, got {workers}")
        self.workers, self.address = workers, address
        self.cpus, self.gpus = cpus_per_worker, gpus_per_worker

    def _connect(self):
        ray = _ray()
        if self.address and self.address != "auto":
            _reachable(self.address)  # ray.init would retry an unreachable address for minutes
        if ray.is_initialized():  # a cluster this process joined already (the API, tests)
            return ray, False
        kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_log = logging.getLogger("ray")
        level = ray_log.level
        ray_log.setLevel(logging.ERROR)  # not its notes at start-up (token authentication...)
        try:
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.workers * self.cpus, object_store_memory=256 * 1024 * 1024, **kwargs)
        except Exception as err:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
            where = self.address or "a local cluster"
            raise DnaesaError(f"cannot start or reach Ray at {where}: {str(err).splitlines()[0][:200]}") from None
        finally:
            ray_log.setLevel(level)
        return ray, True

    def align_file(self, aligner: Aligner, spec: dict, batches, pairing, inputs: tuple, out: str | None,
                   read_group: str | None, command_line: str, progress, split_as_secondary: bool = False,
                   hard_clip: bool = False) -> Summary:
        """What `Aligner.align_file` does, with the `batches` of reads (of mates, interleaved, with
        `pairing`) aligned by actors."""
        from dnaesa.io.sam import SamWriter
        from dnaesa.pipeline import Summary

        ray, started = self._connect()
        summary, t0 = Summary(), time.perf_counter()  # the driver's insert-size estimate came before
        group = None
        try:
            actor_class = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=MAX_RESTARTS,
                                     max_task_retries=MAX_RESTARTS)(_Actor)
            group = self._reserve(ray, self.workers, self.gpus, started)
            with SamWriter(out, aligner.reference.contigs, command_line, read_group=read_group,
                           secondary=0 if pairing else aligner.options.secondary,
                           inputs=(*inputs, aligner.reference.path), reference=aligner.reference,
                           split_as_secondary=split_as_secondary, hard_clip=hard_clip) as writer:
                actors = [actor_class.options(scheduling_strategy=_bundle(group, i)).remote(spec, writer.formatter,
                                                                                             pairing)
                          for i in range(self.workers)]
                in_flight: deque = deque()
                limit = IN_FLIGHT_PER_ACTOR * self.workers
                for number, (batch, position) in enumerate(batches):
                    actor = actors[number % len(actors)]
                    job = actor.format.remote(number, [r.name for r in batch], [r.seq for r in batch],
                                              [r.qual for r in batch])
                    in_flight.append((len(batch), position, job))
                    while len(in_flight) >= limit:
                        self._write(ray, *in_flight.popleft(), writer, summary, progress)
                while in_flight:
                    self._write(ray, *in_flight.popleft(), writer, summary, progress)
        finally:
            _release(group)
            if started:
                ray.shutdown()
        summary.seconds = time.perf_counter() - t0
        return summary

    def encoded_chunks(self, encode, starts, shards=None) -> Iterator:
        """`encode(lo)` for each chunk start `lo` of `starts`, in order, computed by `workers`
        actors (`_ChunkActor`, `encode` put in the object store once), `IN_FLIGHT_PER_ACTOR`
        chunks each in flight: `parallel_embed.encoded_chunks` on a Ray cluster. With `shards` (an
        `index_dir.ShardWriter`) the first item says who writes the shards: True when every actor
        sees `shards.check`, and then come `shards(i)`'s results for each of its spans, in order,
        computed by the actors; else False, and then the chunks. An actor that dies is replaced and
        its task run again; when retries run out, an IndexDirError."""
        tasks = len(shards.spans) if shards is not None else len(starts)
        if not tasks:
            if shards is not None:
                yield False
            return
        ray, started = self._connect()
        actors: list = []
        group = None
        try:
            actor_class = ray.remote(num_cpus=self.cpus, max_restarts=MAX_RESTARTS,  # numpy encoders: no GPU
                                     max_task_retries=MAX_RESTARTS)(_ChunkActor)
            kill = os.environ.get(KILL_CHUNK_HOOK)
            kill = (int(kill.partition(":")[0]), kill.partition(":")[2]) if kill else None
            n = min(self.workers, tasks)
            group = self._reserve(ray, n, 0.0, started)
            actors = [actor_class.options(scheduling_strategy=_bundle(group, i)).remote(kill, bool(os.environ.get(
                UNSHARED_HOOK))) for i in range(n)]
            if shards is not None:
                written = all(self._chunk(ray, actor.sees.remote(str(shards.check))) for actor in actors)
                yield written
                if written:
                    shared = ray.put(shards)
                    yield from self._in_order(ray, (actors[i % n].write.remote([shared], i, *shards.spans[i][1:])
                                                    for i in range(tasks)), n)
                    return
            shared = ray.put(encode)
            yield from self._in_order(ray, (actors[i % n].encode.remote([shared], lo) for i, lo in enumerate(starts)),
                                      n)
        finally:
            for actor in actors:  # free their CPUs now, not when the handles are collected
                try:
                    ray.kill(actor)
                except Exception:  # noqa: BLE001 - a dead actor, a cluster gone: nothing to free
                    pass
            _release(group)
            if started:
                ray.shutdown()

    def _in_order(self, ray, jobs: Iterator, n: int) -> Iterator:
        """The results of `jobs` (submitted as they are drawn), in order, `IN_FLIGHT_PER_ACTOR` x
        `n` in flight."""
        in_flight: deque = deque()
        for job in jobs:
            in_flight.append(job)
            if len(in_flight) >= IN_FLIGHT_PER_ACTOR * n:
                yield self._chunk(ray, in_flight.popleft())
        while in_flight:
            yield self._chunk(ray, in_flight.popleft())

    def _reserve(self, ray, n: int, gpus: float, started: bool):
        """A placement group reserving `n` actors' CPUs and `gpus` GPUs each. A cluster that cannot
        hold them is a DnaesaError: at once when this run started it (its resources are all there
        is), else after `PLACEMENT_SECONDS`."""
        from ray.util.placement_group import placement_group

        bundle = {"CPU": float(self.cpus), **({"GPU": float(gpus)} if gpus else {})}
        total = ray.cluster_resources()
        short = [name for name, need in bundle.items() if need * n > total.get(name, 0.0)]
        wait = float(os.environ.get("DNAESA_RAY_PLACEMENT_SECONDS", PLACEMENT_SECONDS))
        group = None if short and started else placement_group([bundle] * n, strategy="PACK")
        if group is not None and group.wait(timeout_seconds=wait):
            return group
        _release(group)
        where = "the local Ray cluster" if started else f"the Ray cluster at {self.address or 'auto'}"
        has = ", ".join(f"{total.get(name, 0.0):g} {name}" for name in bundle)
        each = ", ".join(f"{v:g} {k}" for k, v in bundle.items())
        raise DnaesaError(f"{where} cannot hold {n} actor(s) of {each} each (it has {has} in all"
                          f"{'' if started else f'; waited {wait:g} s'}): lower --ray-workers or "
                          "--ray-gpus-per-worker, or add nodes")

    @staticmethod
    def _chunk(ray, job) -> list:
        try:
            return ray.get(job)
        except ray.exceptions.RayError as err:
            raise IndexDirError(f"a Ray actor embedding the index failed and retries ran out ({type(err).__name__}); "
                                "stopped: run again to resume the build") from None

    @staticmethod
    def _write(ray, n_reads: int, position, job, writer, summary, progress) -> None:
        try:
            text, mapped = ray.get(job)
        except ray.exceptions.RayError as err:
            raise WorkerError(f"a Ray actor failed and retries ran out ({type(err).__name__}); stopped, "
                              "no output written") from None
        writer.write_text(text)
        summary.reads += n_reads
        summary.mapped += mapped
        progress.update(n_reads, position)
