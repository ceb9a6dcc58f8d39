"""The prediction log's writer: every answered prediction, recorded without slowing the server down.

:meth:`PredictionLogger.record` runs on the event loop and never waits for the disk. Every
``flush_interval_s`` (or sooner once ``flush_rows`` rows are held) the rows held are turned into one Arrow
table per model version, column by column, and written as one complete Parquet file (``.tmp``, optional
fsync, rename) or one PostgreSQL ``COPY``. Who does that depends on ``writer``:

* ``process`` (the default): ``record`` copies the request once into a shared-memory arena and a writer
  process builds and writes the tables (see :mod:`shipyard.monitoring._shipper`). Building tables in a
  thread of the server cost it about 15% of its throughput at 170,000 rows/s (the thread competes with the
  event loop for the GIL and the caches); a process costs it about the copy. A crashed server loses
  nothing: the writer process still writes every whole record of the arena it was appending to.
* ``thread``: ``record`` only appends references (the request's rows, the model's answer) to a bounded
  list, and a thread of the server builds and writes the tables. A crash loses at most the last interval.

Either way a graceful shutdown (:meth:`~PredictionLogger.close`) loses nothing. When the buffer is full, new
rows are dropped, counted in :attr:`~PredictionLogger.dropped` and reported in the log.

Sensitive input columns (``sensitive: {model: {column: hash|drop}}``, and by default every column whose name
looks like personal data: :mod:`shipyard.monitoring.privacy`) are hashed (SHA-256 of the value's text) or
dropped before anything is written. Files are ``0600`` and folders ``0700``. The writer also merges each
closed ``rotate_seconds`` period's flush files into one segment and deletes files past ``max_age_hours`` or
beyond ``max_bytes``, oldest first.

>>> import tempfile, pathlib
>>> from shipyard.serving.settings import LogSettings
>>> home = pathlib.Path(tempfile.mkdtemp())
>>> logger = PredictionLogger(LogSettings(), home=home)
>>> logger.start()
>>> logger.record("fraud", 1, "native", "r1", [{"amount": 3.5}], ["amount"], [0], [[0.9, 0.1]], 0.002)
>>> logger.close()
>>> from shipyard.monitoring.logs import PredictionLog
>>> PredictionLog(home / "logs").predictions("fraud")[["request_id", "version", "prediction", "amount"]]
  request_id  version  prediction  amount
0         r1        1           0     3.5
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from shipyard.monitoring._tables import Entry, float_rows, input_columns, label_table, prediction_table
from shipyard.monitoring.privacy import ColumnRules

if TYPE_CHECKING:
    import pyarrow as pa

    from shipyard.monitoring._shipper import WriterProcess
    from shipyard.serving.settings import LogSettings

__all__ = ["Listener", "PredictionLogger", "input_columns"]

log = logging.getLogger("shipyard.monitoring")
Listener = Callable[[str, int, "pa.Table"], None]
EXPIRE_EVERY_SECONDS = 60.0
WARN_EVERY_ROWS = 10_000


class _Sink(Protocol):
    def write(
        self, kind: str, model: str, table: pa.Table, *, version: int | None = None, durable: bool = False
    ) -> Any: ...
    def compact(self, now: float | None = None, *, everything: bool = False) -> int: ...
    def expire(self, now: float | None = None) -> int: ...
    def close(self) -> None: ...


class Failures:
    """A failing operation retried again and again (a write to a full disk): logged once with its traceback,
    then only counted, and one line when it works again.

    >>> failures = Failures("writes", "retried later")
    >>> for _ in range(3):
    ...     failures.failed(OSError(28, "No space left on device"), "could not write", rows=10)
    >>> failures.count, failures.streak
    (3, 3)
    >>> failures.succeeded(); failures.count, failures.streak
    (3, 0)
    """

    def __init__(self, kind: str, consequence: str) -> None:
        self.kind = kind
        self.consequence = consequence
        self.count = 0
        """Failures so far (never reset)."""
        self.streak = 0
        """Failures since the last success."""
        self._rows = 0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException, what: str, rows: int = 0) -> None:
        """Count one failure; the first of a streak is logged with its reason and traceback."""
        with self._lock:
            self.count += 1
            self.streak += 1
            self._rows += rows
            first = self.streak == 1
        if first:
            log.error("%s: %s; %s. Further failures are counted, not logged, until it works again", what,
                      _reason(exc), self.consequence, exc_info=exc)  # fmt: skip

    def succeeded(self) -> None:
        """The operation worked: if it had been failing, say once after how many failures."""
        if not self.streak:  # the usual case: no lock
            return
        with self._lock:
            streak, rows, self.streak, self._rows = self.streak, self._rows, 0, 0
        if streak:
            lost = f" ({rows} rows not logged)" if rows else ""
            log.warning("prediction log: recovered after %d failed %s%s", streak, self.kind, lost)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


FLUSH_SWITCH_INTERVAL_S = 0.0005
_switching = threading.Lock()
_switching_users = [0, 0.0]  # flushes under way, the interval to restore


@contextlib.contextmanager
def quick_handovers() -> Iterator[None]:
    """Shorten the interpreter's switch interval while a flush runs (restored after the last one ends).

    Under load the event loop holds the GIL nearly all the time. Building and writing a log table makes
    many native calls that release the GIL, and after each one the writer waits up to the switch interval
    (5 ms by default) to get it back: a flush of 100,000 rows then took seconds instead of tens of
    milliseconds, and the buffer overflowed. Shortening it for the whole process would slow the server's
    other hand-overs (its model threads) all the time, so it is only shortened during flushes.
    """
    with _switching:
        if _switching_users[0] == 0:
            _switching_users[1] = sys.getswitchinterval()
            sys.setswitchinterval(FLUSH_SWITCH_INTERVAL_S)
        _switching_users[0] += 1
    try:
        yield
    finally:
        with _switching:
            _switching_users[0] -= 1
            if _switching_users[0] == 0:
                sys.setswitchinterval(_switching_users[1])


def log_root(settings: LogSettings, home: Path) -> Path:
    """The folder of the Parquet log: ``settings.path`` or ``<home>/logs``."""
    return (settings.path or home / "logs").expanduser()


class PredictionLogger:
    """The server's asynchronous writer of predictions and labels (one per server process)."""

    def __init__(self, settings: LogSettings, *, home: Path) -> None:
        self.settings = settings
        self.root = log_root(settings, home)
        self._home = home
        self._dropped = 0
        self._written = 0
        self._capacity = settings.buffer_rows
        self._flush_rows = settings.flush_rows
        self._pending: list[Entry] = []
        self._held = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._listeners: list[Listener] = []
        self._sink: _Sink | None = None
        self._sink_lock = threading.Lock()
        self._labels = threading.Condition()
        self._label_queue: list[tuple[int, str, Sequence[tuple[str, Any]]]] = []
        self._label_tickets = 0
        self._label_outcomes: dict[int, BaseException | None] = {}
        self._label_writing = False
        self._process: WriterProcess | None = None
        self._float_types: tuple[Sequence[str] | None, bool] | None = None
        self._rules: dict[str, ColumnRules] = {}
        self._write_failures: dict[str, Failures] = {}  # per model: one model's broken folder does not hide another's
        self._maintenance = Failures("maintenance runs", "retried every flush interval")

    @property
    def dropped(self) -> int:
        """Rows not logged because the buffer was full or their write failed."""
        return self._dropped + (self._process.dropped if self._process is not None else 0)

    @property
    def failed_writes(self) -> int:
        """Writes of a table of predictions that failed (a full disk, a database down); their rows are dropped."""
        own = sum(failures.count for failures in list(self._write_failures.values()))
        return own + (self._process.failed_writes if self._process is not None else 0)

    @property
    def written(self) -> int:
        """Prediction rows written so far."""
        return self._written + (self._process.written if self._process is not None else 0)

    @property
    def writer_pid(self) -> int:
        """The process that writes the predictions (its id names the files it writes)."""
        return self._process.pid if self._process is not None else os.getpid()

    # ------------------------------------------------------------------ lifecycle
    @property
    def sink(self) -> _Sink:
        """Where rows go (opened on first use: tables are created, folders made)."""
        if self._sink is not None:
            return self._sink
        with self._sink_lock:
            if self._sink is not None:
                return self._sink
            if self.settings.backend == "postgres":
                from shipyard.errors import InvalidInput
                from shipyard.monitoring._postgres import PostgresSink

                if not self.settings.postgres_url:
                    raise InvalidInput(
                        "logging.backend is postgres but logging.postgres_url is not set; set it to a SQLAlchemy URL "
                        "such as postgresql+psycopg://user@host/db"
                    )
                self._sink = PostgresSink(self.settings.postgres_url, max_age_hours=self.settings.max_age_hours)
            else:
                from shipyard.monitoring._files import private_dir
                from shipyard.monitoring._parquet import ParquetSink

                private_dir(self.root)
                self._sink = ParquetSink(
                    self.root,
                    fsync=self.settings.fsync,
                    rotate_seconds=self.settings.rotate_seconds,
                    rotate_bytes=self.settings.rotate_bytes,
                    max_age_hours=self.settings.max_age_hours,
                    max_bytes=self.settings.max_bytes,
                )
        return self._sink

    def start(self) -> None:
        """Open the sink and start the writer thread (in the process that serves: after any fork)."""
        if self._thread is not None:
            return
        import pyarrow.parquet  # noqa: F401  (loaded here, not in the first flush)

        try:
            self.sink  # noqa: B018  (fail at start-up, not in the writer thread)
        except OSError as exc:
            from shipyard.errors import StorageError

            raise StorageError(
                f"cannot write the prediction log in {self.root}: {exc.strerror or exc}; set logging.path to a "
                "writable folder or logging.enabled to false"
            ) from None
        if self.settings.writer == "process":
            from shipyard.monitoring._shipper import WriterProcess

            self._process = WriterProcess(self.settings, self._home, self._listeners)
            self._process.start()
        self._thread = threading.Thread(target=self._run, name="shipyard-prediction-log", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write everything still held, merge this writer's files and stop (graceful shutdown)."""
        if self._closed:
            return
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._closed = True  # from now on record() counts rows as dropped
        self.flush()
        if self._process is not None:
            self._process.close()
        if self._sink is not None:
            try:
                self._sink.compact(everything=True)
            except Exception:
                log.exception("could not merge the prediction log's files at shutdown")
            self._sink.close()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(model, version, table)`` from the writer thread with every table written."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ hot path
    def record(
        self,
        model: str,
        version: int,
        route: str,
        request_id: str,
        data: Any,
        input_names: Sequence[str],
        predictions: Any,
        probabilities: Any | None,
        latency_s: float,
        *,
        input_types: Sequence[str] | None = None,
        features: Any | None = None,
    ) -> None:
        """Hold one answered request for the writer (on the event loop: no copy, no I/O, never blocks).

        ``data`` is the request's rows as the route got them (records, columns, rows of values, a frame or
        an array); rows given as lists of values are named by ``input_names`` (typed by ``input_types``,
        the signature's dtypes, when given). ``features``, the rows as the signature validated them (a
        frame with the ``input_names`` columns), is logged instead when every input is a float: only its
        float array is held (not the request's many small objects, which the garbage collector would
        otherwise walk again and again until the flush), and the writer stacks arrays instead of converting
        values one by one.
        """
        rows = len(predictions)
        block = None
        if features is not None:
            if type(features) is np.ndarray and self._all_float(input_types):  # the common case, checked quickly
                fits = features.ndim == 2 and features.shape[1] == len(input_names) and features.dtype.kind == "f"
                block = features if fits else None
            else:
                block = float_rows(features, input_names, input_types)
        if self._process is not None:
            if self._closed:
                self._dropped += rows
            elif self._process.record(model, version, route, request_id, time.time(), latency_s, input_names,
                                      input_types, None if block is not None else data, predictions, probabilities,
                                      rows, block):  # fmt: skip
                return
            self._warn_dropped(rows)
            return
        entry: Entry = (
            model, version, route, request_id, time.time(), None if block is not None else data, input_names,
            input_types, predictions, probabilities, latency_s, rows, block,
        )  # fmt: skip
        with self._lock:
            if self._closed or self._held + rows > self._capacity:
                self._dropped += rows
            else:
                self._pending.append(entry)
                self._held += rows
                if self._held >= self._flush_rows:
                    self._wake.set()
                return
        self._warn_dropped(rows)

    def _warn_dropped(self, rows: int) -> None:
        dropped = self.dropped
        if dropped == rows or dropped % WARN_EVERY_ROWS < rows:
            log.warning(
                "prediction log: dropped %d rows so far: the writer is not keeping up (raise logging.buffer_rows "
                "or make the log's disk faster)",
                dropped,
            )

    def _all_float(self, types: Sequence[str] | None) -> bool:
        """Whether every input dtype is a float (remembered per dtype list: a served version keeps its own)."""
        known = self._float_types
        if known is not None and known[0] is types:
            return known[1]
        answer = bool(types) and all(dtype.startswith("float") for dtype in types or ())
        self._float_types = (types, answer)
        return answer

    def record_labels(self, model: str, pairs: Sequence[tuple[str, Any]]) -> None:
        """Write feedback labels ``(request id, label)`` of ``model``; durable (fsynced) when this returns.

        Called from many threads at once, the calls share writes (group commit): while one thread writes,
        the others queue, and the next write takes everything queued as one file per model.
        """
        if not pairs:
            return
        with self._labels:
            self._label_tickets += 1
            ticket = self._label_tickets
            self._label_queue.append((ticket, model, pairs))
            while ticket not in self._label_outcomes:
                if self._label_writing:
                    self._labels.wait()
                    continue
                batch, self._label_queue = self._label_queue, []
                self._label_writing = True
                self._labels.release()
                try:
                    outcomes = self._write_labels(batch)
                finally:
                    self._labels.acquire()
                    self._label_writing = False
                self._label_outcomes.update(outcomes)
                self._labels.notify_all()
            failure = self._label_outcomes.pop(ticket)
        if failure is not None:
            raise failure

    def _write_labels(
        self, batch: list[tuple[int, str, Sequence[tuple[str, Any]]]]
    ) -> dict[int, BaseException | None]:
        """Write the queued label requests, one durable file per model; each ticket's outcome."""
        outcomes: dict[int, BaseException | None] = {}
        by_model: dict[str, list[tuple[int, Sequence[tuple[str, Any]]]]] = {}
        for ticket, model, pairs in batch:
            by_model.setdefault(model, []).append((ticket, pairs))
        for model, requests in by_model.items():
            outcome: BaseException | None = None
            try:
                pairs = [pair for _, request in requests for pair in request]
                self.sink.write("labels", model, label_table(model, pairs, time.time()), durable=True)
            except BaseException as exc:  # handed to every caller whose labels were in this write
                outcome = exc
            outcomes.update((ticket, outcome) for ticket, _ in requests)
        return outcomes

    # ------------------------------------------------------------------ writer
    def _run(self) -> None:
        interval = self.settings.flush_interval_s
        next_expiry = 0.0
        while not self._stopping:
            self._wake.wait(interval)
            self._wake.clear()
            if self._stopping:
                break
            if self._process is not None:
                self._process.seal()  # the writer process writes it; this thread only merges label files
            else:
                self.flush()
            try:
                self.sink.compact()
                if time.monotonic() >= next_expiry:
                    next_expiry = time.monotonic() + min(EXPIRE_EVERY_SECONDS, self.settings.rotate_seconds)
                    self.sink.expire()
            except Exception as exc:
                self._maintenance.failed(exc, "prediction log maintenance (merging, expiry) failed")
            else:
                self._maintenance.succeeded()

    def flush(self) -> int:
        """Write every row held now; the number of rows written (any thread)."""
        if self._process is not None:
            return self._process.flush()
        with self._lock:
            pending, self._pending = self._pending, []
            self._held = 0
        return self.write_entries(pending)

    def write_entries(self, pending: Sequence[Entry]) -> int:
        """Write recorded requests now, one table per model version; the number of rows written."""
        if not pending:
            return 0
        groups: dict[tuple[str, int], list[Entry]] = {}
        for entry in pending:
            groups.setdefault((entry[0], entry[1]), []).append(entry)
        written = 0
        with self._write_lock, quick_handovers():
            for (model, version), entries in groups.items():
                rows = sum(e[11] for e in entries)
                written += self._write(model, version, rows, partial(prediction_table, entries, self.rules(model)))
        return written

    def rules(self, model: str) -> ColumnRules:
        """Which of ``model``'s input columns are hashed or dropped (``sensitive``, and personal-looking names)."""
        rules = self._rules.get(model)
        if rules is None:
            rules = self._rules[model] = ColumnRules(
                self.settings.sensitive.get(model), hash_personal=self.settings.hash_personal_columns
            )
        return rules

    def write_table(self, model: str, version: int, table: pa.Table) -> int:
        """Write a table of log rows built elsewhere (from a writer process's arena); the rows written."""
        with self._write_lock:
            return self._write(model, version, table.num_rows, lambda: table)

    def _failures(self, model: str) -> Failures:
        failures = self._write_failures.get(model)
        if failures is None:
            consequence = "rows are dropped and counted (shipyard_prediction_log_dropped)"
            failures = self._write_failures[model] = Failures(f"writes of {model}", consequence)
        return failures

    def _write(self, model: str, version: int, rows: int, build: Callable[[], pa.Table]) -> int:
        try:
            table = build()
            self.sink.write("predictions", model, table, version=version)
        except Exception as exc:
            with self._lock:
                self._dropped += rows
            what = f"prediction log: could not write {rows} rows of {model} version {version}"
            self._failures(model).failed(exc, what, rows)
            return 0
        self._failures(model).succeeded()
        self._written += rows
        for listener in self._listeners:
            try:
                listener(model, version, table)
            except Exception:
                log.exception("a prediction-log listener failed on %s version %d", model, version)
        return rows
