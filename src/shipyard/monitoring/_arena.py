"""Shared-memory arenas: how a server hands its logged predictions to its writer process.

A server that logs every prediction should not build Arrow tables or encode Parquet in its own process: the
writer thread that would need competes with the event loop for the GIL and for the caches, and under load
that cost more than the writing itself (see ``docs/benchmarks.md``). Instead the server copies each answered
request into memory-mapped files (under ``/dev/shm`` where it exists) that a writer process maps too:

* :class:`ColumnArena`, one per served version whose inputs are all floats (the common case): column
  buffers laid out as the log's table is. A group of requests is a handful of slice copies (its inputs column by
  column, predictions, probabilities, time, latency, id, route); the writer turns a whole arena into a table
  with a fixed number of Arrow calls (:meth:`ColumnArena.table`), sharing the mapped memory.
* :class:`RecordArena`, for everything else (inputs kept as sent, object predictions): each request
  pickled whole. They come from the server itself, never from outside.

Each arena's header starts with its committed counts, written after the request's data, so a reader always
sees whole requests, even of a server killed in the middle of one.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> arena = ColumnArena.create(folder / "a", width=2, classes=2, answer_type=np.dtype("int64"), rows=16)
>>> block = np.asfortranarray([[1.0, 2.0], [3.0, 4.0]])
>>> arena.append_many([("r1", "native", 0.0, 0.002, block, np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]))])
1
>>> table = ColumnArena.open(arena.path).table("fraud", 1, ["a", "b"], {})
>>> table.column("request_id").to_pylist(), table.column("input").to_pylist()[1]
(['r1/0', 'r1/1'], {'a': 3.0, 'b': 4.0})
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.monitoring._tables import Entry, block_array, list_array, plain_kind, request_id_array

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ColumnArena", "RecordArena", "Staged", "arena_folder", "fits_columns"]

COMMIT = struct.Struct("<QQQ")  # rows, requests, id bytes: written last
LAYOUT = struct.Struct("<QQQII8s")  # row, request and id-byte capacity, inputs, classes, prediction dtype
ROUTES_AT, ROUTES, ROUTE_BYTES = 64, 8, 24
DATA_AT = 320
ID_BYTES_PER_REQUEST = 48
RECORD = struct.Struct("<QQ")  # body bytes, rows


SHM_FREE_BYTES = 512 * 1024 * 1024


def arena_folder() -> Path:
    """A private folder for arenas: in ``/dev/shm`` (memory) when it exists and has 512 MB free (a container's
    default is 64 MB), else in the temp folder (files the kernel keeps in its page cache)."""
    import tempfile

    shm = Path("/dev/shm")
    parent = Path(tempfile.gettempdir())
    if shm.is_dir() and os.access(shm, os.W_OK):
        stats = os.statvfs(shm)
        if stats.f_bavail * stats.f_frsize >= SHM_FREE_BYTES:
            parent = shm
    return Path(tempfile.mkdtemp(prefix="shipyard-log-", dir=parent))


def _aligned(size: int) -> int:
    return (size + 63) & ~63


def _map(path: Path, size: int | None) -> mmap.mmap:
    """Map ``path``; create it with ``size`` bytes first when ``size`` is given."""
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if size is not None else 0)
    descriptor = os.open(path, flags, 0o600)
    try:
        if size is not None:  # allocated now: a full disk fails here, not with SIGBUS on a later write
            os.posix_fallocate(descriptor, 0, size)
        return mmap.mmap(descriptor, size if size is not None else os.fstat(descriptor).st_size)
    finally:
        os.close(descriptor)


def fits_columns(block: Any, predictions: Any, probabilities: Any) -> bool:
    """Whether a request can go to a :class:`ColumnArena`: float inputs validated as a block, one numeric
    prediction per row, and float probabilities (or none)."""
    if block is None or not isinstance(predictions, np.ndarray) or predictions.ndim != 1:
        return False
    if predictions.dtype.kind not in "biuf" or len(predictions) != len(block) or block.dtype.kind != "f":
        return False
    if probabilities is None:
        return True
    return isinstance(probabilities, np.ndarray) and probabilities.ndim == 2 and len(probabilities) == len(block)


@dataclass
class _Mapped:
    path: Path
    memory: mmap.mmap
    buffer: memoryview = field(init=False)

    def __post_init__(self) -> None:
        self.buffer = memoryview(self.memory)

    @property
    def size(self) -> int:
        return len(self.memory)

    def close(self, *, unlink: bool) -> None:
        """Unmap (and delete) the arena; arrays still pointing into it keep their pages until they go."""
        try:
            self.buffer.release()
            self.memory.close()
        except BufferError:
            pass
        if unlink:
            self.path.unlink(missing_ok=True)


Staged = tuple[str, str, float, float, Any, Any, Any]
"""A request waiting to go to a column arena: id, route, time, latency (s), inputs, predictions, probabilities."""

REQUEST = np.dtype(
    [("ts", np.float64), ("latency", np.float64), ("rows", np.int64), ("id_end", np.int64), ("route", np.uint8)],
    align=True,
)


class ColumnArena(_Mapped):
    """Column buffers of the requests of one served version (see the module docstring).

    A request touches as few memory pages as possible, because in a virtual machine every page a request
    writes to costs a nested page walk (laying inputs out one column per region made appending three times
    slower in the server than in a loop): its inputs and probabilities go side by side into one row-major
    float region, its predictions into a second region, its time, latency, row count, id end and route
    into one record of a third, and its id into a fourth.
    """

    def __init__(self, path: Path, memory: mmap.mmap) -> None:
        super().__init__(path, memory)
        rows, requests, id_bytes, width, classes, answer = LAYOUT.unpack_from(self.buffer, COMMIT.size)
        self.capacity, self.request_capacity, self.id_capacity = rows, requests, id_bytes
        self.width, self.classes = width, classes
        self.answer_type = np.dtype(answer.rstrip(b"\0").decode())
        at = DATA_AT

        def region(dtype: Any, count: int) -> np.ndarray[Any, Any]:
            nonlocal at
            array = np.frombuffer(self.memory, dtype=dtype, count=count, offset=at)
            self._ids_at = at  # (the last region's offset: the ids')
            at += _aligned(array.nbytes)
            return array

        self.values = region(np.float64, rows * (width + classes)).reshape(rows, width + classes)
        self.predictions = region(self.answer_type, rows)
        self.request_records = region(REQUEST, requests)
        self.ids = region(np.uint8, id_bytes)
        self.rows, self.requests, self.id_used = COMMIT.unpack_from(self.buffer, 0)
        self.routes = self._routes()

    @staticmethod
    def layout_bytes(width: int, classes: int, answer_type: np.dtype[Any], rows: int, requests: int, ids: int) -> int:
        sizes = [rows * (width + classes) * 8, rows * answer_type.itemsize, requests * REQUEST.itemsize, ids]
        return DATA_AT + sum(_aligned(size) for size in sizes)

    @classmethod
    def create(cls, path: Path, *, width: int, classes: int, answer_type: np.dtype[Any], rows: int) -> ColumnArena:
        """A new empty arena for ``rows`` rows of ``width`` float inputs, ``classes`` probabilities each."""
        requests, ids = rows, rows * ID_BYTES_PER_REQUEST
        memory = _map(path, cls.layout_bytes(width, classes, answer_type, rows, requests, ids))
        COMMIT.pack_into(memory, 0, 0, 0, 0)
        LAYOUT.pack_into(memory, COMMIT.size, rows, requests, ids, width, classes, answer_type.str.encode())
        return cls(path, memory)

    @classmethod
    def open(cls, path: Path) -> ColumnArena:
        """Map an arena another process made (to read it)."""
        return cls(path, _map(path, None))

    def matches(self, width: int, classes: int, answer_type: np.dtype[Any]) -> bool:
        return (self.width, self.classes, self.answer_type) == (width, classes, answer_type)

    def reset(self) -> None:
        """Empty the arena (once its reader has written everything in it)."""
        self.rows = self.requests = self.id_used = 0
        self.routes = []
        COMMIT.pack_into(self.buffer, 0, 0, 0, 0)
        self.buffer[ROUTES_AT : ROUTES_AT + ROUTES * ROUTE_BYTES] = bytes(ROUTES * ROUTE_BYTES)

    def _routes(self) -> list[str]:
        routes = []
        for index in range(ROUTES):
            at = ROUTES_AT + index * ROUTE_BYTES
            length = self.buffer[at]
            if not length:
                break
            routes.append(bytes(self.buffer[at + 1 : at + 1 + length]).decode())
        return routes

    def _route_code(self, route: str) -> int | None:
        try:
            return self.routes.index(route)
        except ValueError:
            pass
        name = route.encode()
        if len(self.routes) == ROUTES or not 0 < len(name) < ROUTE_BYTES:
            return None
        at = ROUTES_AT + len(self.routes) * ROUTE_BYTES
        self.buffer[at + 1 : at + 1 + len(name)] = name
        self.buffer[at] = len(name)  # the length last: a reader sees the whole name or none
        self.routes.append(route)
        return len(self.routes) - 1

    def append_many(self, staged: Sequence[Staged]) -> int:
        """Append staged requests of this arena's kind (see :class:`Staged`) in one pass of a few slice copies;
        how many went in, from the first (the rest did not fit: the arena is full)."""
        first, request, start = self.rows, self.requests, self.id_used
        ids, routes, stamps, latencies, blocks, predictions, probabilities = zip(*staged, strict=True)
        names = [rid.encode() for rid in ids]
        count = len(names)
        rows = np.fromiter(map(len, predictions), dtype=np.int64, count=count)
        id_ends = start + np.cumsum(np.fromiter(map(len, names), dtype=np.int64, count=count))
        row_ends = first + np.cumsum(rows)
        fits = int(min(np.searchsorted(row_ends, self.capacity, side="right"),
                       np.searchsorted(id_ends, self.id_capacity, side="right"),
                       self.request_capacity - request))  # fmt: skip
        if routes.count(routes[0]) == count:  # one route: the usual case
            code = self._route_code(routes[0])
            codes: Any = code
            if code is None:
                fits = 0
        else:
            codes = []
            for index, route in enumerate(routes[:fits]):
                code = self._route_code(route)
                if code is None:  # a ninth route: the rest goes to the next arena
                    fits = index
                    break
                codes.append(code)
            codes = codes[:fits]
        if fits == 0:
            return 0
        end, width, stop = int(row_ends[fits - 1]), self.width, int(id_ends[fits - 1])
        if width:
            self.values[first:end, :width] = np.concatenate(blocks[:fits]) if fits > 1 else blocks[0]
        if self.classes:
            self.values[first:end, width:] = np.concatenate(probabilities[:fits]) if fits > 1 else probabilities[0]
        self.predictions[first:end] = np.concatenate(predictions[:fits]) if fits > 1 else predictions[0]
        self.buffer[self._ids_at + start : self._ids_at + stop] = b"".join(names[:fits])
        records = self.request_records[request : request + fits]
        records["ts"] = stamps[:fits]
        records["latency"] = latencies[:fits]
        records["rows"] = rows[:fits]
        records["id_end"] = id_ends[:fits]
        records["route"] = codes
        self.rows, self.requests, self.id_used = end, request + fits, stop
        COMMIT.pack_into(self.buffer, 0, end, request + fits, stop)
        return fits

    def committed_rows(self) -> int:
        """The rows a reader sees now."""
        return int(COMMIT.unpack_from(self.buffer, 0)[0])

    def table(self, model: str, version: int, names: Sequence[str], sensitive: Mapping[str, str]) -> pa.Table:
        """The log rows of the requests committed so far (the columns of
        :func:`~shipyard.monitoring._tables.prediction_table`), sharing the arena's memory."""
        import pyarrow as pa

        rows, requests, id_bytes = COMMIT.unpack_from(self.buffer, 0)
        routes = self._routes()
        records = self.request_records[:requests]
        counts = records["rows"]
        offsets = np.zeros(requests + 1, dtype=np.int32)
        offsets[1:] = records["id_end"]
        ids = pa.StringArray.from_buffers(requests, pa.py_buffer(offsets), pa.py_buffer(self.ids[:id_bytes]))
        stamps = np.repeat(records["ts"], counts)
        codes = pa.array(np.repeat(records["route"], counts).astype(np.int32))
        columns: dict[str, pa.Array] = {
            "request_id": request_id_array(ids, counts),
            "ts": pa.array((stamps * 1e6).astype(np.int64), type=pa.timestamp("us", tz="UTC")),
            "model": pa.repeat(pa.scalar(model, pa.string()), rows),
            "version": pa.repeat(pa.scalar(version, pa.int32()), rows),
            "route": pa.array(routes, type=pa.string()).take(codes),
            "latency_ms": pa.array(np.repeat(records["latency"], counts) * 1000.0, type=pa.float64()),
        }
        values = self.values[:rows]
        if names:
            inputs = block_array(np.ascontiguousarray(values[:, : self.width].T), names, sensitive)
            if inputs is not None:
                columns["input"] = inputs
        columns["prediction"] = pa.array(plain_kind(self.predictions[:rows]))
        kind = pa.list_(pa.float64())
        columns["probabilities"] = (
            list_array(np.ascontiguousarray(values[:, self.width :])).cast(kind)
            if self.classes
            else pa.nulls(rows, type=kind)
        )
        return pa.table(columns)


class RecordArena(_Mapped):
    """Whole pickled requests, one after the other (see the module docstring)."""

    def __init__(self, path: Path, memory: mmap.mmap) -> None:
        super().__init__(path, memory)
        self.used, self.requests, self.rows = COMMIT.unpack_from(self.buffer, 0)
        self.used = max(self.used, DATA_AT)

    @classmethod
    def create(cls, path: Path, size: int) -> RecordArena:
        memory = _map(path, max(_aligned(size), DATA_AT + 4096))
        COMMIT.pack_into(memory, 0, DATA_AT, 0, 0)
        return cls(path, memory)

    @classmethod
    def open(cls, path: Path) -> RecordArena:
        return cls(path, _map(path, None))

    def reset(self) -> None:
        self.used, self.requests, self.rows = DATA_AT, 0, 0
        COMMIT.pack_into(self.buffer, 0, DATA_AT, 0, 0)

    def append(self, entry: Entry) -> bool:
        """Append one request; ``False``: no room."""
        body = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
        start = self.used
        end = start + RECORD.size + _aligned(len(body))
        if end > self.size:
            return False
        RECORD.pack_into(self.buffer, start, len(body), entry[11])
        self.buffer[start + RECORD.size : start + RECORD.size + len(body)] = body
        self.used, self.requests, self.rows = end, self.requests + 1, self.rows + entry[11]
        COMMIT.pack_into(self.buffer, 0, end, self.requests, self.rows)
        return True

    def entries(self) -> list[Entry]:
        """The requests committed so far."""
        used, _, _ = COMMIT.unpack_from(self.buffer, 0)
        entries = []
        at = DATA_AT
        while at < used:
            length, _ = RECORD.unpack_from(self.buffer, at)
            entries.append(pickle.loads(self.buffer[at + RECORD.size : at + RECORD.size + length]))
            at += RECORD.size + _aligned(length)
        return entries
