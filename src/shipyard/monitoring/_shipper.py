"""The server's side of the prediction log's writer process: arenas, their hand-over, and the process itself.

:class:`WriterProcess` appends every answered request to an arena (one :class:`~shipyard.monitoring._arena.ColumnArena`
per served version with float inputs, one :class:`~shipyard.monitoring._arena.RecordArena` for the rest): a few
slice copies on the event loop, no Arrow. Every flush interval, or once an arena holds ``flush_rows`` rows, the
arenas are handed to ``shipyard.monitoring._writer``, which builds and writes the tables on the other core. Emptied
arenas come back to be reused, so a steady load maps no new memory. If the writer process dies, a new one is
started and given every arena not yet written, in order (rows of a half-written arena may then be logged twice,
never lost).
"""

from __future__ import annotations

import collections
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.monitoring._arena import (
    ID_BYTES_PER_REQUEST,
    REQUEST,
    ColumnArena,
    RecordArena,
    Staged,
    arena_folder,
    fits_columns,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from shipyard.monitoring._tables import Entry
    from shipyard.serving.settings import LogSettings

log = logging.getLogger("shipyard.monitoring")
RECORD_ARENA_BYTES = 16 * 1024 * 1024
COLUMN_ARENA_BYTES = 64 * 1024 * 1024  # at most, per served version
SPARE_ARENAS = 2  # emptied arenas kept per kind of arena
RESTARTS = 3
STAGED_REQUESTS = 64  # requests copied into a column arena together
STAGED_ROWS = 8192
FLOAT64 = np.dtype(np.float64)
Listener = Callable[[str, int, "pa.Table"], None]
Arena = ColumnArena | RecordArena
Stream = tuple[str, int, Sequence[str]]  # model, version, the input names of its column arenas


@dataclass
class _Stage:
    """Requests of one served version waiting to be copied into its column arena together."""

    model: str
    version: int
    names: Sequence[str]
    types: Sequence[str] | None
    shape: tuple[int, int, np.dtype[Any]]  # inputs, probability columns, prediction dtype
    items: list[Staged] = field(default_factory=list)
    rows: int = 0

    def joins(self, names: Sequence[str], block: Any, predictions: Any, probabilities: Any, rows: int) -> bool:
        """Whether a request is of exactly the staged kind: the same name list and array types (identity checks
        only, so the usual request costs little; anything else goes through :func:`fits_columns`)."""
        if self.names is not names or type(block) is not np.ndarray or type(predictions) is not np.ndarray:
            return False
        width, classes, answer_type = self.shape
        if predictions.dtype is not answer_type or predictions.shape != (rows,) or block.shape != (rows, width):
            return False
        if block.dtype is not FLOAT64:
            return False
        if probabilities is None:
            return classes == 0
        return (
            type(probabilities) is np.ndarray
            and probabilities.dtype is FLOAT64
            and probabilities.shape == (rows, classes)
        )

    def takes(self, names: Sequence[str], width: int, classes: int, answer_type: np.dtype[Any]) -> bool:
        """Whether a request of this kind can join the stage (identity checks first: they are the common case)."""
        same_names = self.names is names or list(self.names) == list(names)
        return same_names and self.shape[0] == width and self.shape[1] == classes and self.shape[2] == answer_type


class WriterProcess:
    """Arenas of recorded predictions and the process that writes them (one per serving process)."""

    def __init__(self, settings: LogSettings, home: Path, listeners: Sequence[Listener]) -> None:
        self.settings = settings
        self.home = home
        self.listeners = listeners
        self.capacity = settings.buffer_rows
        self.dropped = 0
        self.written = 0
        self.failed_writes = 0
        self._lock = threading.RLock()  # taken directly on the hot path (a Condition's is a Python call)
        self._changed = threading.Condition(self._lock)
        self._columns: dict[tuple[str, int], tuple[Stream, ColumnArena]] = {}  # the current arena per version
        self._records: RecordArena | None = None
        self._stages: dict[tuple[str, int], _Stage] = {}
        self._out_of_room = False
        self._streams: dict[Path, Stream] = {}  # what each column arena holds (sent with "use")
        self._sealed: collections.deque[Arena] = collections.deque()
        self._spare: dict[tuple[Any, ...], list[Arena]] = {}
        self._held = 0
        self._seals = 0
        self._done = 0
        self._closing = False
        self._broken = False
        self._restarts = 0
        self._folder: Path | None = None
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    # ------------------------------------------------------------------ the process
    @property
    def pid(self) -> int:
        """The writer process's id (0 before it starts)."""
        return self._process.pid if self._process is not None else 0

    def start(self) -> None:
        """Make the arena folder and start the writer process."""
        self._folder = arena_folder()
        with self._lock:
            self._spawn()

    def _spawn(self) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "shipyard.monitoring._writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,  # a terminal's Ctrl-C reaches the server, which then closes its writer
        )
        self._process = process
        self._send({"settings": self.settings.model_dump(mode="json"), "home": str(self.home),
                    "arenas": str(self._folder)})  # fmt: skip
        for arena in self._sealed:  # after a restart: everything not yet written, in order
            self._use(arena)
            self._send({"seal": str(arena.path), "tables": bool(self.listeners)})
        for arena in self._current():
            self._use(arena)
        self._reader = threading.Thread(target=self._read, args=(process,), name="shipyard-log-writer", daemon=True)
        self._reader.start()

    def _current(self) -> list[Arena]:
        arenas: list[Arena] = [arena for _, arena in self._columns.values()]
        return arenas + ([self._records] if self._records is not None else [])

    def _send(self, message: dict[str, Any]) -> None:
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the process is gone: the reader thread starts another one

    def _use(self, arena: Arena) -> None:
        stream = self._streams.get(arena.path)
        if stream is None:
            self._send({"use": str(arena.path), "kind": "records"})
        else:
            self._send({"use": str(arena.path), "kind": "columns", "stream": [stream[0], stream[1], list(stream[2])]})

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            message = json.loads(line)
            if "done" in message:
                self._on_done(message)
            elif message.get("closed"):
                return
        code = process.wait()
        with self._lock:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
            if self._closing and not self._sealed:
                return
            self._restarts += 1
            if self._restarts > RESTARTS:
                self._broken = True
                lost = self._held
                self.dropped += lost
                self._held = 0
                self._sealed.clear()
                self._columns.clear()
                self._records = None
                self._changed.notify_all()
                log.error("prediction log: the writer process exited (%s) %d times; %d rows not written, and "
                          "predictions are no longer logged", code, self._restarts, lost)  # fmt: skip
                return
            log.error("prediction log: the writer process exited (%s); starting another one", code)
            self._spawn()

    def _on_done(self, message: dict[str, Any]) -> None:
        with self._lock:
            arena = self._sealed.popleft()
            if str(arena.path) != message["done"]:
                log.error("prediction log: the writer answered for %s, expected %s", message["done"], arena.path)
            self._held -= arena.rows
            self.written += int(message["written"])
            self.dropped += int(message["failed"])
            self.failed_writes += int(message.get("failed_writes", 0))
            self._done += 1
            spare = self._spare.setdefault(self._shape(arena), [])
            if len(spare) < SPARE_ARENAS and (isinstance(arena, ColumnArena) or arena.size == RECORD_ARENA_BYTES):
                arena.reset()
                spare.append(arena)
            else:
                self._streams.pop(arena.path, None)
                arena.close(unlink=True)
            self._changed.notify_all()
        for model, version, path in message.get("tables", ()):
            self._hand_table(model, version, Path(path))

    @staticmethod
    def _shape(arena: Arena) -> tuple[Any, ...]:
        if isinstance(arena, ColumnArena):
            return ("columns", arena.width, arena.classes, arena.answer_type.str, arena.capacity)
        return ("records", arena.size)

    def _hand_table(self, model: str, version: int, path: Path) -> None:
        import pyarrow as pa

        try:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
            path.unlink(missing_ok=True)
        except (OSError, pa.ArrowInvalid):
            log.exception("prediction log: could not read back a written table for the listeners")
            return
        for listener in self.listeners:
            try:
                listener(model, version, table)
            except Exception:
                log.exception("a prediction-log listener failed on %s version %d", model, version)

    # ------------------------------------------------------------------ hot path
    def record(
        self,
        model: str,
        version: int,
        route: str,
        request_id: str,
        ts: float,
        latency_s: float,
        names: Sequence[str],
        types: Sequence[str] | None,
        data: Any,
        predictions: Any,
        probabilities: Any,
        rows: int,
        block: Any,
    ) -> bool:
        """Hold one answered request for the writer; ``False`` when it was dropped (and counted).

        Requests of a column arena are staged first and copied in groups (:meth:`ColumnArena.append_many`):
        copying one small request at a time cost about 14 µs in a busy server, most of it in cache and page
        misses on the arena, against about 1 µs per request in groups. The staged requests (at most
        ``STAGED_REQUESTS``, and never older than the flush interval) are the only ones a crash can lose.
        """
        with self._lock:
            if self._broken or self._closing or self._held + rows > self.capacity:
                self.dropped += rows
                return False
            stage = self._stages.get((model, version))
            if stage is not None and stage.joins(names, block, predictions, probabilities, rows):
                self._held += rows  # the common case: one more request like the last ones
                stage.items.append((request_id, route, ts, latency_s, block, predictions, probabilities))
                stage.rows += rows
                if len(stage.items) < STAGED_REQUESTS and stage.rows < STAGED_ROWS:
                    return True
                arena = self._unstage(stage)
                if arena is not None and arena.rows >= self.settings.flush_rows:
                    self._seal_all()
                return True
            return self._hold(model, version, route, request_id, ts, latency_s, names, types, data, predictions,
                              probabilities, rows, block)  # fmt: skip

    def _out_of_room_for(self, rows: int, exc: OSError) -> None:
        """Count ``rows`` (already held) as dropped: no new arena could be made (the disk or /dev/shm is full)."""
        self._held -= rows
        self.dropped += rows
        if not self._out_of_room:
            log.error("prediction log: cannot make a new arena in %s (%s); rows are dropped until there is room",
                      self._folder, exc.strerror or exc)  # fmt: skip
        self._out_of_room = True

    def _hold(
        self, model: str, version: int, route: str, request_id: str, ts: float, latency_s: float,
        names: Sequence[str], types: Sequence[str] | None, data: Any, predictions: Any, probabilities: Any,
        rows: int, block: Any,
    ) -> bool:  # fmt: skip
        """:meth:`record` with the lock held and room in the buffer."""
        self._held += rows
        arena: Arena | None = None
        if fits_columns(block, predictions, probabilities):
            if probabilities is not None and probabilities.dtype is not FLOAT64:
                probabilities = probabilities.astype(np.float64)
            classes = 0 if probabilities is None else probabilities.shape[1]
            stage = self._stages.get((model, version))
            if stage is None or not stage.takes(names, block.shape[1], classes, predictions.dtype):
                if stage is not None:
                    self._unstage(stage)
                shape = (block.shape[1], classes, predictions.dtype)
                stage = self._stages[(model, version)] = _Stage(model, version, names, types, shape)
            stage.items.append((request_id, route, ts, latency_s, block, predictions, probabilities))
            stage.rows += rows
            if len(stage.items) < STAGED_REQUESTS and stage.rows < STAGED_ROWS:
                return True
            arena = self._unstage(stage)
        else:
            entry: Entry = (model, version, route, request_id, ts, data if block is None else None,
                            list(names), None if types is None else list(types), predictions, probabilities,
                            latency_s, rows, block)  # fmt: skip
            try:
                arena = self._append_record(entry)
            except OSError as exc:
                self._out_of_room_for(rows, exc)
                return False
        if arena is not None and arena.rows >= self.settings.flush_rows:
            self._seal_all()
        return True

    def _unstage(self, stage: _Stage) -> Arena | None:
        """Copy a stage's requests into the version's column arena (new arenas as they fill); the last arena."""
        items, stage.items, stage.rows = stage.items, [], 0
        arena: Arena | None = None
        while items:
            try:
                columns = self._column_arena(stage, max(len(item[5]) for item in items))
                taken = columns.append_many(items) if columns is not None else 0
                if taken:
                    items = items[taken:]
                    arena = columns
                elif columns is not None and columns.requests:
                    self._seal_arena(columns)  # full: the rest goes to a new one
                else:  # too big for any column arena (or a ninth route): pickled, one request
                    rid, route, ts, latency, block, predictions, probabilities = items[0]
                    entry: Entry = (stage.model, stage.version, route, rid, ts, None, list(stage.names),
                                    None if stage.types is None else list(stage.types), predictions, probabilities,
                                    latency, len(predictions), block)  # fmt: skip
                    arena = self._append_record(entry)
                    items = items[1:]
            except OSError as exc:
                self._out_of_room_for(sum(len(item[5]) for item in items), exc)
                break
        return arena

    def _column_arena(self, stage: _Stage, largest: int) -> ColumnArena | None:
        """The version's current column arena for ``stage``'s kind of requests (a fresh or reused one when
        there is none yet or the kind changed); ``None`` when a request of ``largest`` rows fits no arena."""
        width, classes, answer_type = stage.shape
        current = self._columns.get((stage.model, stage.version))
        if current is not None:
            names, old = current[0][2], current[1]
            if old.matches(width, classes, answer_type) and (names is stage.names or list(names) == list(stage.names)):
                return old
            self._columns.pop((stage.model, stage.version))
            if old.requests:
                self._seal_arena(old)
        per_row = 8 * width + 8 * classes + answer_type.itemsize + REQUEST.itemsize + ID_BYTES_PER_REQUEST
        capacity = max(64, min(2 * self.settings.flush_rows, COLUMN_ARENA_BYTES // per_row))
        if largest > capacity:
            return None
        spare = self._spare.get(("columns", width, classes, answer_type.str, capacity))
        reused = spare.pop() if spare else None
        arena = reused if isinstance(reused, ColumnArena) else None
        if arena is None:
            assert self._folder is not None
            arena = ColumnArena.create(self._folder / f"columns-{time.monotonic_ns()}", width=width,
                                       classes=classes, answer_type=answer_type, rows=capacity)  # fmt: skip
        stream = (stage.model, stage.version, stage.names)
        self._streams[arena.path] = stream
        self._columns[(stage.model, stage.version)] = (stream, arena)
        self._use(arena)
        return arena

    def _append_record(self, entry: Entry) -> RecordArena:
        arena = self._records
        if arena is None or not arena.append(entry):
            if arena is not None and arena.requests:
                self._seal_arena(arena)
            import pickle

            need = len(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)) + 4096
            size = max(RECORD_ARENA_BYTES, 2 * need)
            spare = self._spare.get(("records", size)) if size == RECORD_ARENA_BYTES else None
            fresh = spare.pop() if spare else None
            if not isinstance(fresh, RecordArena):
                assert self._folder is not None
                fresh = RecordArena.create(self._folder / f"records-{time.monotonic_ns()}", size)
            self._records = arena = fresh
            self._use(arena)
            arena.append(entry)
        return arena

    def _seal_arena(self, arena: Arena) -> None:
        """Hand one arena to the writer (lock held; it is no longer current)."""
        if isinstance(arena, ColumnArena):
            stream = self._streams[arena.path]
            if self._columns.get((stream[0], stream[1]), (None, None))[1] is arena:
                del self._columns[(stream[0], stream[1])]
        elif self._records is arena:
            self._records = None
        self._sealed.append(arena)
        self._seals += 1
        self._send({"seal": str(arena.path), "tables": bool(self.listeners)})

    def _seal_all(self) -> None:
        for stage in self._stages.values():
            if stage.items:
                self._unstage(stage)
        for arena in self._current():
            if arena.requests:
                self._seal_arena(arena)

    # ------------------------------------------------------------------ flushing and shutdown
    def seal(self) -> None:
        """Hand over what is held now (the server's flush timer; does not wait)."""
        with self._lock:
            self._seal_all()

    def flush(self, timeout: float = 120.0) -> int:
        """Hand over what is held now and wait until it is written; the rows written meanwhile."""
        with self._lock:
            before = self.written
            self._seal_all()
            target = self._seals
            self._changed.wait_for(lambda: self._done >= target or self._broken, timeout)
            return self.written - before

    def close(self, timeout: float = 120.0) -> None:
        """Write everything held, let the writer merge its files, stop it and delete the arenas."""
        self.flush(timeout)
        with self._lock:
            self._closing = True
        process = self._process
        if process is not None:
            self._send({"close": True})
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("prediction log: the writer process did not stop within %g s; killing it", timeout)
                process.kill()
                process.wait()
            if self._reader is not None:
                self._reader.join(timeout)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
        with self._lock:
            arenas = [arena for spare in self._spare.values() for arena in spare]
            for arena in [*arenas, *self._sealed, *self._current()]:
                arena.close(unlink=True)
            self._spare.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
