"""Engines: who runs :func:`~shipyard.batch.chunks.score_chunk` on each chunk, and in what order results return.

Both engines take chunks from the caller's thread, which reads the input, keep a bounded window of
chunks in flight (``window``, by default twice the workers), and yield results in chunk order. Memory
therefore stays at a few chunks whatever the size of the input.

**local** runs chunks on a thread pool with one thread per core. Threads, not processes: the heavy
parts of scoring (Parquet decoding, NumPy, BLAS, scikit-learn's tree traversal) release the GIL, and
threads share the loaded model and the chunks without pickling them (a process pool would copy each
100,000-row chunk of 30 float features, 24 MB, into a worker and the scores back). Measured on the
project's 2-core machine: two threads run a 100-tree forest's ``predict_proba`` on two chunks at once
in 1.1x the time of one chunk alone, and the local engine scores that forest 1.5x as fast as the
forest's own single ``predict_proba`` call over data already in memory (``bench/batch.py``).

**dask** runs the same function on a ``distributed`` cluster: a ``LocalCluster`` of one single-threaded
worker process per core when no scheduler is given, or the scheduler at ``scheduler``
(``tcp://host:8786``; how long to try reaching it is Dask's ``distributed.comm.timeouts.connect``,
30 s by default). The model travels as its verified artifact bytes, scattered once to every worker
(``broadcast=True``); every worker process loads it once, before the first chunk, and keeps it
(:func:`worker_model`), so models that do not pickle (ONNX sessions) work too and workers need no
access to the registry. Each chunk is scattered to a worker and scored there; only the small output
comes back. On one machine the local engine is faster: Dask pays for moving every chunk between
processes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from shipyard.batch.chunks import ChunkPlan, ChunkResult, score_chunk
from shipyard.errors import InvalidInput, MissingDependency, ShipyardError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from shipyard.registry import ModelVersion
    from shipyard.scoring import Model

EngineName = Literal["local", "dask"]
ENGINES: tuple[EngineName, ...] = ("local", "dask")


@dataclass(frozen=True)
class Task:
    """One chunk to score: its index, the input row number of its first row, and its rows (pandas or Arrow)."""

    index: int
    first_row: int
    frame: pd.DataFrame | pa.Table


@dataclass(frozen=True)
class ModelPayload:
    """A model version as it travels to workers: its registry entry and verified artifact bytes."""

    info: ModelVersion
    data: bytes
    trusted_types: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return (self.info.sha256, self.trusted_types)


_worker_models: dict[tuple[str, tuple[str, ...]], Model] = {}
_worker_lock = threading.Lock()


def worker_model(payload: ModelPayload) -> Model:
    """The model of ``payload``, loaded once per process and kept for the next chunks."""
    with _worker_lock:
        model = _worker_models.get(payload.key)
        if model is None:
            from shipyard.flavors import FlavorCatalog
            from shipyard.scoring import Model

            flavor = FlavorCatalog().get(payload.info.flavor)
            loaded = flavor.load(payload.data, payload.info.flavor_meta, trusted_types=payload.trusted_types)
            model = _worker_models[payload.key] = Model(payload.info, loaded)
        return model


def warm_up(payload: ModelPayload) -> None:
    """Load the model of ``payload`` in this worker process, so its first chunk waits for nothing."""
    worker_model(payload)


def score_on_worker(
    payload: ModelPayload, plan: ChunkPlan, index: int, first_row: int, frame: pd.DataFrame | pa.Table
) -> ChunkResult:
    """What a Dask worker runs for one chunk."""
    return score_chunk(worker_model(payload), plan, index, first_row, frame)


def native_threads(limit: int, controller: Any = None) -> contextlib.AbstractContextManager[object]:
    """At most ``limit`` BLAS and OpenMP threads per call while the local engine runs, where threadpoolctl is installed.

    The engine already runs one chunk per core; a BLAS call that also starts a thread per core leaves
    its idle threads spinning on the cores the other chunks and the Parquet reader need (measured: a
    logistic regression job scores up to 1.3x faster with one BLAS thread per scoring thread).
    ``controller`` is a ``threadpoolctl.ThreadpoolController`` found beforehand (:func:`native_pools`).
    """
    controller = controller if controller is not None else native_pools()
    if controller is None:
        return contextlib.nullcontext()
    limits: contextlib.AbstractContextManager[object] = controller.limit(limits=limit, user_api=None)
    return limits


def native_pools() -> Any:
    """threadpoolctl's view of the BLAS and OpenMP libraries loaded now, or ``None`` without threadpoolctl.

    Finding them inspects every loaded library (tens of milliseconds), so the local engine does it in
    :meth:`LocalEngine.load`, once the model and its libraries are loaded, before the first chunk.
    """
    try:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]
    except ImportError:  # scikit-learn brings it; other flavors may run without
        return None
    return ThreadpoolController()


def local_cluster(workers: int) -> Any:
    """A ``distributed.LocalCluster`` of ``workers`` single-threaded processes on 127.0.0.1, without dashboard.

    The scheduler's HTTP routes bind a free port rather than 8787, so a second cluster on the machine
    starts without a warning. The workers start without the ``MALLOC_TRIM_THRESHOLD_`` that Dask sets
    by default: fixing it turns off glibc's adaptive mmap threshold, so every large temporary array is
    mapped and faulted in afresh, which made a 100-tree forest score 1.4x slower on this project's
    benchmark machine.
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )


class Engine(ABC):
    """Runs chunks and yields their results in chunk order; a context manager that owns its workers."""

    name: EngineName
    workers: int

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 (a hook: engines without workers have nothing to stop)
        """Stop the workers."""

    def load(self, payload: ModelPayload) -> None:  # noqa: B027 (a hook: a no-op where the model is loaded already)
        """Have every worker load the model before the first chunk (a no-op where it is loaded already)."""

    @abstractmethod
    def run(self, model: Model, payload: ModelPayload, plan: ChunkPlan, tasks: Iterable[Task]) -> Iterator[ChunkResult]:
        """Score every task with ``model`` (here) or ``payload`` (on workers), yielding results in task order."""


class LocalEngine(Engine):
    """One scoring thread per core (``workers``), at most ``window`` chunks in flight."""

    name: EngineName = "local"

    def __init__(self, *, workers: int | None = None, window: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.window = window or 2 * self.workers
        self.pools: Any = None

    def load(self, payload: ModelPayload) -> None:
        """Find the native thread pools to limit (the model is loaded in this process already)."""
        self.pools = native_pools()

    def run(self, model: Model, payload: ModelPayload, plan: ChunkPlan, tasks: Iterable[Task]) -> Iterator[ChunkResult]:
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="shipyard-batch")
        pending: deque[Future[ChunkResult]] = deque()
        limits = contextlib.ExitStack()
        try:
            limits.enter_context(native_threads(max(1, (os.cpu_count() or 1) // self.workers), self.pools))
            for task in tasks:
                pending.append(pool.submit(score_chunk, model, plan, task.index, task.first_row, task.frame))
                if len(pending) >= self.window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            limits.close()


class DaskEngine(Engine):
    """Chunks scored on a ``distributed`` cluster: a new ``LocalCluster``, or the one at ``scheduler``."""

    name: EngineName = "dask"

    def __init__(
        self,
        *,
        scheduler: str | None = None,
        workers: int | None = None,
        window: int | None = None,
    ) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise MissingDependency("distributed", "dask") from None
        self.scheduler = scheduler
        self.cluster: Any = None
        if scheduler is None:
            self.cluster = local_cluster(workers or os.cpu_count() or 1)
            self.client: Any = Client(self.cluster)  # type: ignore[no-untyped-call]
        else:
            try:
                self.client = Client(scheduler)  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError, ValueError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ShipyardError(f"cannot reach the Dask scheduler at {scheduler}: {reason}") from None
        threads = self.client.nthreads()
        if not threads:
            self.close()
            raise InvalidInput(f"the Dask scheduler at {scheduler} has no workers; start some with dask worker")
        self.workers = sum(threads.values())
        self.window = window or 2 * self.workers

    def load(self, payload: ModelPayload) -> None:
        """Send the artifact to every worker and load it there, in parallel (``Client.run``)."""
        self.client.run(warm_up, payload)

    def run(self, model: Model, payload: ModelPayload, plan: ChunkPlan, tasks: Iterable[Task]) -> Iterator[ChunkResult]:
        client = self.client
        shared = client.scatter(payload, broadcast=True, hash=False)
        pending: deque[Any] = deque()
        try:
            for task in tasks:
                rows = client.scatter(task.frame, hash=False)
                pending.append(
                    client.submit(score_on_worker, shared, plan, task.index, task.first_row, rows, pure=False)
                )
                if len(pending) >= self.window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            shared.release()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
