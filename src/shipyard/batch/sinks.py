"""Where scores go: a Parquet or CSV file, or a SQL table; never half-written, resumable chunk by chunk.

**Staging folder.** Every job has a hidden folder named after its output and job id,
``.{name}.{job_id}.parts``: next to the output file, or, for SQL output, next to the rejects file. It
holds the manifest (``job.json``), each chunk's rejected rows (``rejects-000042.arrow``) and, for
file output, each chunk's scores (``part-000042.arrow``), as Arrow IPC files. A part is written under a
temporary name and renamed, so it exists only when complete: after a crash, the parts present are
the chunks done, and ``--resume`` skips them. A resumed job reads every part back first and scores
again any chunk whose parts do not read back whole (a power cut can cut short a renamed file that
was never fsynced); rejects parts are fsynced, since a SQL chunk cannot be scored twice.

**File output.** When every chunk is done, the parts are streamed in chunk order into the output
through :class:`pyarrow.parquet.ParquetWriter` (or :class:`pyarrow.csv.CSVWriter`) under a temporary
name, fsynced and moved into place with :func:`os.replace`; then the staging folder is removed (and
those of unfinished jobs with other settings on the same output, which the new file supersedes).
Memory stays at one part whatever the size of the output. A fresh run does not wait for the end: it
writes the same file chunk by chunk on a background thread while it scores, and publishing only moves it
into place; the parts are merged as above when resuming, or when a chunk's columns have other types than the
first chunk's. Both are written beside the output under a temporary name, ``.{name}.shipyard-tmp-<pid>-<host>.<n>``
(:mod:`shipyard.batch.tempfiles`): removed on failure and on SIGTERM, and by the next run on the same output
when the process was killed outright.

**SQL output** (``sqlite:///scores.db?table=scores``, ``postgresql+psycopg://host/db?table=scores``):
each chunk's rows are inserted in one transaction together with a row of ``shipyard_batch_chunks(job_id,
chunk_index, rows, finished_at)`` in the target database, so a chunk is in the table exactly when it is
recorded, and a resumed job never writes it twice. ``if_exists``:

* ``fail`` (default) and ``replace`` write into a staging table ``shipyard_batch_<job_id>`` and, in
  one final transaction, rename it to the target (dropping the old table first with ``replace``;
  refusing when the target exists with ``fail``). Readers see the old table, or no table, until the
  job is complete, never a partial one.
* ``append`` inserts straight into the target (created if missing), one committed chunk at a time.
  Without ``--resume``, a rerun of the same job appends every row again.

Rejected rows always go to a file (default ``<output stem>.rejects.parquet`` beside a file output;
for a SQL output ``<database>.<table>.rejects.parquet``, beside the database file for SQLite, else in
the working folder), published like the output. A SQL job refuses to start when its rejects file
exists, unless it replaces the table (``if_exists="replace"``) or resumes: the file holds an earlier
job's rejected rows.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from shipyard.batch import tempfiles
from shipyard.batch.job import JobSpec, read_scored_at, write_manifest
from shipyard.errors import Conflict, InvalidInput, ShipyardError, StorageError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from shipyard.batch.chunks import ChunkResult

FileFormat = Literal["parquet", "csv"]
IfExists = Literal["fail", "append", "replace"]
IF_EXISTS: tuple[IfExists, ...] = ("fail", "append", "replace")
CHUNKS_TABLE = "shipyard_batch_chunks"
SUFFIXES: dict[str, FileFormat] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_MERGE_ROWS = 1 << 17  # rows per row group of a merged file, whatever the chunk size
_IPC = pa.ipc.IpcWriteOptions(compression=None)  # scores are random floats: LZ4 costs CPU and saves little
_QUEUED_CHUNKS = 2  # scored chunks waiting for the file sink's writer thread
REJECTED_KEY = b"shipyard.rejected"


# ---------------------------------------------------------------------- targets
@dataclass(frozen=True)
class FileTarget:
    """A Parquet or CSV output file."""

    path: Path
    format: FileFormat

    @property
    def uri(self) -> str:
        return str(self.path)

    @property
    def label(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class SqlTarget:
    """A table in a database that SQLAlchemy reaches."""

    url: str
    table: str
    shown: str

    @property
    def uri(self) -> str:
        return f"{self.shown}?table={self.table}"

    @property
    def label(self) -> str:
        return f"table {self.table} in {self.shown}"


Target = FileTarget | SqlTarget


def parse_output(output: str | os.PathLike[str], what: str = "output") -> Target:
    """A file path (``.parquet``, ``.pq``, ``.csv``) or a SQLAlchemy URL with ``?table=NAME``, checked for writing.

    >>> parse_output("sqlite:///scores.db?table=scores").label
    'table scores in sqlite:///scores.db'
    >>> parse_output("scores.xlsx")
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: cannot tell the format of output scores.xlsx from its ending; use .parquet, ...
    """
    text = os.fspath(output)
    if _URL.match(text) and not text.lower().startswith("file://"):
        return _sql_target(text, what)
    if text.lower().startswith("file://"):
        text = text[len("file://") :]
    path = Path(text).expanduser()
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInput(f"cannot tell the format of {what} {path.name} from its ending; use {', '.join(SUFFIXES)}")
    return FileTarget(path.absolute(), fmt)


def check_writable(target: Target, what: str = "output") -> None:
    """Fail with one line unless a file can be created at ``target`` (SQL targets are checked when opened)."""
    if not isinstance(target, FileTarget):
        return
    path, folder = target.path, target.path.parent
    if path.is_dir():
        raise InvalidInput(f"cannot write {what} {path}: it is a folder; give a file name ending in .parquet or .csv")
    if not folder.is_dir():
        raise InvalidInput(f"cannot write {what} {path}: the folder {folder} does not exist")
    try:  # a real file, not os.access: it also sees read-only mounts, and root
        with tempfile.TemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidInput(f"cannot write {what} {path}: the folder {folder} is not writable ({reason})") from None


def _sql_target(text: str, what: str) -> SqlTarget:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except ArgumentError:
        raise InvalidInput(f"{what} {text!r} is not a database URL such as sqlite:///scores.db?table=scores") from None
    table = url.query.get("table")
    if not isinstance(table, str) or not table:
        raise InvalidInput(f"{what} names no table; add ?table=NAME to the URL, e.g. sqlite:///scores.db?table=scores")
    url = url.difference_update_query(["table"])
    return SqlTarget(url.render_as_string(hide_password=False), table, url.render_as_string(hide_password=True))


def default_rejects(target: Target) -> FileTarget:
    """``<stem>.rejects.parquet`` beside a file output; ``<database>.<table>.rejects.parquet`` for a SQL output.

    The SQL one is beside the database file for SQLite, else in the working folder.

    >>> default_rejects(FileTarget(Path("/data/scores.csv"), "csv")).path
    PosixPath('/data/scores.rejects.parquet')
    >>> default_rejects(parse_output("sqlite:////data/risk.db?table=scores")).path
    PosixPath('/data/risk.scores.rejects.parquet')
    >>> default_rejects(parse_output("postgresql://u:pw@db/risk?table=scores")).path.name
    'risk.scores.rejects.parquet'
    """
    if isinstance(target, FileTarget):
        return FileTarget(target.path.with_name(f"{target.path.stem}.rejects.parquet"), "parquet")
    from sqlalchemy.engine import make_url

    url = make_url(target.url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        db = Path(database).expanduser()
        return FileTarget((db.parent / f"{db.stem}.{target.table}.rejects.parquet").absolute(), "parquet")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(database).name or url.get_backend_name())
    return FileTarget(Path(f"{name}.{target.table}.rejects.parquet").absolute(), "parquet")


# ---------------------------------------------------------------------- staging folder
class Staging:
    """The job's hidden folder of finished chunk parts, rejected rows and manifest.

    Parts are uncompressed Arrow IPC files: internal to the job, they are cheap to write and read back,
    whatever the chunk size (compressing the scores, random floats, cost a third of the writing time of a
    fast model's job and saved little space). A scores part records in its schema metadata how many rows of its
    chunk were rejected, so a resumed job can tell whether the chunk's rejects part is all there.
    """

    def __init__(self, beside: Path, job_id: str) -> None:
        self.beside = beside
        self.job_id = job_id
        self.folder = beside.parent / f".{beside.name}.{job_id}.parts"

    def scored_at(self) -> datetime | None:
        """The manifest's timestamp if this job has a staging folder, else ``None`` (nothing to resume)."""
        return read_scored_at(self.folder, self.job_id) if self.folder.is_dir() else None

    def start(self, spec: JobSpec, scored_at: datetime) -> None:
        """A fresh, empty folder with the manifest (an earlier run's parts are dropped)."""
        self.remove()
        _guard(self.folder, lambda: self.folder.mkdir(parents=False))
        _guard(self.folder, lambda: write_manifest(self.folder, spec, scored_at))

    def write(self, kind: str, index: int, table: pa.Table, *, durable: bool = False) -> None:
        """Write one chunk's table as ``<kind>-<index>.arrow``: under a temporary name, then renamed.

        A process killed at any moment leaves the part complete or absent. ``durable`` also fsyncs it
        before the rename, for parts that must outlive a power cut (rejects committed with SQL rows).
        """
        final = self.folder / f"{kind}-{index:06d}.arrow"
        tmp = self.folder / f".{final.name}.tmp"

        def write() -> None:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema, options=_IPC) as writer:
                writer.write_table(table)
            if durable:
                _fsync(tmp)
            os.replace(tmp, final)

        _guard(self.folder, write)

    def parts(self, kind: str) -> dict[int, Path]:
        """The ``<kind>`` parts by chunk index; leftover temporary files are deleted."""
        found: dict[int, Path] = {}
        for path in self.folder.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
                continue
            match = re.fullmatch(rf"{re.escape(kind)}-(\d+)\.arrow", path.name)
            if match:
                found[int(match.group(1))] = path
        return found

    def readable(self, kind: str) -> dict[int, tuple[int, int]]:
        """The ``<kind>`` parts that read back whole, as ``(rows, rejected rows recorded)``; others are deleted."""
        found: dict[int, tuple[int, int]] = {}
        for index, path in self.parts(kind).items():
            try:
                table = read_part(path)
                recorded = int((table.schema.metadata or {}).get(REJECTED_KEY, b"0"))
            except (pa.ArrowException, OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            found[index] = (table.num_rows, recorded)
        return found

    def drop(self, kind: str, indexes: Iterable[int]) -> None:
        """Delete the ``<kind>`` parts of the chunks ``indexes``."""
        for index in indexes:
            (self.folder / f"{kind}-{index:06d}.arrow").unlink(missing_ok=True)

    def publish_rejects(self, chunks: int, rejects: FileTarget) -> int:
        """Merge the rejects parts into the rejects file if there are any; return how many rows it has."""
        parts = self.parts("rejects")
        paths = [parts[i] for i in range(chunks) if i in parts]
        if paths:
            write_atomically(rejects, paths)
        return sum(_part_rows(p) for p in paths)

    def remove(self) -> None:
        """Delete the folder and everything in it."""
        if self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)

    def remove_others(self) -> None:
        """Delete staging folders of other jobs on the same output (unfinished, and superseded now)."""
        pattern = f".{glob.escape(self.beside.name)}.*.parts"
        for other in self.beside.parent.glob(pattern):
            if other != self.folder and re.fullmatch(r"[0-9a-f]{16}", other.name.split(".")[-2]):
                shutil.rmtree(other, ignore_errors=True)


def read_part(path: Path) -> pa.Table:
    """A part file's rows (read into memory, so the file may be deleted afterwards)."""
    with pa.OSFile(str(path), "rb") as source:
        return pa.ipc.open_file(source).read_all()


def _part_rows(path: Path) -> int:
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


# ---------------------------------------------------------------------- sinks
class Sink(ABC):
    """Receives scored chunks in order and publishes the output once they are all done."""

    target: Target
    staging: Staging

    def start(self, spec: JobSpec, scored_at: datetime) -> None:
        """Prepare a fresh run: forget what an earlier run of this job left."""
        self.staging.start(spec, scored_at)

    @abstractmethod
    def done(self) -> dict[int, tuple[int, int]]:
        """For a resumed run: the finished chunks, each with its (scored, rejected) row counts."""

    def write(self, result: ChunkResult) -> None:
        """Store one scored chunk, atomically: its rejects first, then its scores, which mark it done."""
        if result.rejected:
            assert result.rejects is not None
            self.staging.write("rejects", result.index, result.rejects, durable=True)
        assert result.scores is not None
        self._write_scores(result.index, result.scores, result.rejected)

    @abstractmethod
    def _write_scores(self, index: int, scores: pa.Table, rejected: int) -> None: ...

    def flush(self) -> None:  # noqa: B027 - only sinks that write in the background have anything to wait for
        """Wait until every chunk given to :meth:`write` is stored; raise the first error in storing one."""

    @abstractmethod
    def publish(self, chunks: int, empty: pa.Table) -> None:
        """Make the output of chunks ``0..chunks-1`` visible at once (``empty`` gives the columns of no rows)."""

    def discard(self) -> None:
        """Drop everything this job wrote that is not published (strict failures)."""
        self.staging.remove()

    def close(self) -> None:  # noqa: B027 - only SQL sinks hold connections
        """Release connections."""


class FileSink(Sink):
    """Scores into a Parquet or CSV file via one part file per chunk, written on a background thread.

    :meth:`write` hands each chunk to one writer thread (:class:`_Background`) and returns at once, so
    the caller goes on reading and scoring while the parts are written; at most ``_QUEUED_CHUNKS``
    chunks wait, so memory stays at a few chunks. The thread writes the chunks in order, as the caller
    gives them; a failure is raised by the next :meth:`write` or by :meth:`publish`. :meth:`close` (and
    so a job that stops on an error, or is interrupted) first lets the thread finish the chunks already
    handed over, so a resumed job finds every chunk scored before the stop.

    A fresh (not resumed) run also writes the output itself as the chunks arrive, on another background
    thread (:class:`_Stream`), so that publishing is a rename instead of a second pass over every
    part. Where that stream cannot give the file the merge would (a chunk whose columns have other
    types, a resumed run), the parts are merged as always.
    """

    target: FileTarget

    def __init__(self, target: FileTarget, job_id: str) -> None:
        self.target = target
        self.staging = Staging(target.path, job_id)
        self._stream: _Stream | None = None
        self._background = _Background("shipyard-batch-parts", _QUEUED_CHUNKS)

    def start(self, spec: JobSpec, scored_at: datetime) -> None:
        super().start(spec, scored_at)
        self._stream = _Stream(self.target, tempfiles.temp_path(self.target.path))

    def done(self) -> dict[int, tuple[int, int]]:
        """Chunks whose scores part and (if it had rejected rows) rejects part both read back whole.

        Any other chunk is scored again: a part cut short by a power cut is found and redone here.
        """
        scores = self.staging.readable("part")
        rejects = self.staging.readable("rejects")
        done = {i: (rows, rejected) for i, (rows, rejected) in scores.items() if rejects.get(i, (0, 0))[0] == rejected}
        self.staging.drop("part", set(scores) - set(done))
        self.staging.drop("rejects", set(rejects) - set(done))
        return done

    def write(self, result: ChunkResult) -> None:
        """Queue one scored chunk for the writer thread (see the class); raises an earlier write's error."""
        self._background.submit(super().write, result)

    def _write_scores(self, index: int, scores: pa.Table, rejected: int) -> None:
        self.staging.write("part", index, scores.replace_schema_metadata({REJECTED_KEY: str(rejected)}))
        if self._stream is not None and not self._stream.add(index, scores):
            self._drop_stream()

    def flush(self) -> None:
        self._background.drain()

    def publish(self, chunks: int, empty: pa.Table) -> None:
        self.flush()
        parts = self.staging.parts("part")
        missing = [i for i in range(chunks) if i not in parts]
        if missing:
            raise ShipyardError(f"chunk {missing[0]} of job {self.staging.job_id} has no part file; run the job again")
        stream, self._stream = self._stream, None
        if stream is not None and stream.finish(chunks):
            _guard(self.target.path, lambda: _move_into_place(stream.path, self.target.path))
            tempfiles.release(stream.path)
        else:
            if stream is not None:
                stream.abandon()
            write_atomically(self.target, [parts[i] for i in range(chunks)], empty.schema)
        self.staging.remove_others()

    def discard(self) -> None:
        self._background.close()
        self._drop_stream()
        super().discard()

    def close(self) -> None:
        self._background.close()
        self._drop_stream()

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abandon()


class _Background:
    """Calls run in order on one thread, at most ``depth`` waiting; the first failure is raised to the caller.

    >>> done = []
    >>> background = _Background("example", 2)
    >>> for i in range(5):
    ...     background.submit(done.append, i)
    >>> background.drain(); done
    [0, 1, 2, 3, 4]
    >>> background.submit(int, "x")
    >>> background.drain()
    Traceback (most recent call last):
    ...
    ValueError: invalid literal for int() with base 10: 'x'
    >>> import time
    >>> slow = lambda i: (time.sleep(0.05), done.append(i))
    >>> for i in range(5, 7):
    ...     background.submit(slow, i)
    >>> background.close(); done  # what was queued before close still runs
    [0, 1, 2, 3, 4, 5, 6]
    """

    def __init__(self, name: str, depth: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.depth = depth
        self.pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self.futures: deque[Future[object]] = deque()

    def submit(self, action: Callable[..., object], *args: Any) -> None:
        """Queue ``action(*args)``, first waiting while ``depth`` calls wait; raise an earlier call's error."""
        self._wait(self.depth - 1)
        self.futures.append(self.pool.submit(action, *args))

    def drain(self) -> None:
        """Wait for every queued call; raise the first error."""
        self._wait(0)

    def close(self) -> None:
        """Let the queued calls finish (dropping their errors: the caller is stopping already); stop the thread."""
        with contextlib.suppress(Exception):
            while self.futures:
                self.futures.popleft().result()
        self.futures.clear()
        self.pool.shutdown(wait=True)

    def _wait(self, keep: int) -> None:
        while len(self.futures) > keep:
            self.futures.popleft().result()


class _Stream:
    """The output file written chunk by chunk, in order, on one background thread, as the merge would write it.

    Same writer, schema (the first chunk's, which every chunk must have), row groups (chunks joined to at
    least ``_MERGE_ROWS`` rows) and settings as :func:`write_atomically`, so the file is identical. At most
    two tables wait for the thread, so memory stays at a few chunks. :meth:`add` returns ``False`` when the
    stream cannot go on (a chunk out of order or of other types, a write that failed); the caller then
    abandons it and merges the parts instead.
    """

    def __init__(self, target: FileTarget, path: Path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.target = target
        self.path = path
        self.next = 0
        self.schema: pa.Schema | None = None
        self.writer: pq.ParquetWriter | Any = None
        self.pending: list[pa.Table] = []
        self.held = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="shipyard-batch-write")
        self.futures: deque[Future[None]] = deque()

    def add(self, index: int, scores: pa.Table) -> bool:
        table = scores.replace_schema_metadata(None)
        if index != self.next or (self.schema is not None and table.schema != self.schema):
            return False
        if self.schema is None:
            self.schema = table.schema
        self.next += 1
        self.pending.append(table)
        self.held += table.num_rows
        if self.held >= _MERGE_ROWS:
            return self._flush()
        return True

    def finish(self, chunks: int) -> bool:
        """Write what is left and close the file; ``False`` if it is not the whole output of ``chunks`` chunks."""
        if chunks == 0 or self.next != chunks or self.schema is None:
            return False
        if self.pending and not self._flush():
            return False
        self.futures.append(self.pool.submit(self._close))
        ok = self._wait(0)
        self.pool.shutdown(wait=True)
        return ok

    def abandon(self) -> None:
        """Stop the thread and delete the partial file."""
        for future in self.futures:
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(Exception):
            if self.writer is not None:
                self.writer.close()
        tempfiles.discard(self.path)

    def _flush(self) -> bool:
        table = (
            self.pending[0] if len(self.pending) == 1 else pa.concat_tables(self.pending, promote_options="permissive")
        )
        self.pending, self.held = [], 0
        if not self._wait(1):
            return False
        self.futures.append(self.pool.submit(self._write, table))
        return True

    def _wait(self, keep: int) -> bool:
        """Wait until at most ``keep`` writes are queued; ``False`` if one failed."""
        while len(self.futures) > keep:
            if self.futures.popleft().exception() is not None:
                return False
        return True

    def _write(self, table: pa.Table) -> None:
        if self.writer is None:
            assert self.schema is not None
            self.writer = _open_writer(self.target, self.path, self.schema)
        self.writer.write_table(table)

    def _close(self) -> None:
        self.writer.close()
        self.writer = None
        _fsync(self.path)


class SqlSink(Sink):
    """Scores into a database table, one transaction per chunk, recorded in ``shipyard_batch_chunks``."""

    target: SqlTarget

    def __init__(self, target: SqlTarget, job_id: str, rejects: FileTarget, if_exists: IfExists) -> None:
        from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, create_engine

        self.target = target
        self.job_id = job_id
        self.if_exists = if_exists
        self.staging = Staging(rejects.path, job_id)
        self.write_table = target.table if if_exists == "append" else f"shipyard_batch_{job_id}"
        self.metadata = MetaData()
        self.chunks = Table(
            CHUNKS_TABLE,
            self.metadata,
            Column("job_id", String(64), primary_key=True),
            Column("chunk_index", Integer, primary_key=True),
            Column("rows", BigInteger, nullable=False),
            Column("finished_at", DateTime(timezone=True), nullable=False),
            Column("rejected", BigInteger, nullable=False, server_default="0"),
        )
        try:
            self.engine: Engine = create_engine(target.url)
        except Exception as exc:  # unknown dialect, missing driver
            raise InvalidInput(f"cannot use {target.shown}: {_first_line(exc)}") from None

    def start(self, spec: JobSpec, scored_at: datetime) -> None:
        from sqlalchemy import delete, inspect, text

        with self._connect() as conn:
            if self.if_exists == "fail" and inspect(conn).has_table(self.target.table):
                raise Conflict(
                    f"{self.target.label} already exists; pass if_exists='replace' or 'append' "
                    "(CLI: --if-exists replace|append), or choose another table"
                )
            self.metadata.create_all(conn, checkfirst=True)
            conn.execute(delete(self.chunks).where(self.chunks.c.job_id == self.job_id))
            if self.write_table != self.target.table and inspect(conn).has_table(self.write_table):
                conn.execute(text(f"DROP TABLE {self._quote(conn, self.write_table)}"))
        super().start(spec, scored_at)

    def done(self) -> dict[int, tuple[int, int]]:
        """The chunks recorded in ``shipyard_batch_chunks`` for this job; their rejects parts must all be there."""
        from sqlalchemy import select

        c = self.chunks.c
        with self._connect() as conn:
            self.metadata.create_all(conn, checkfirst=True)
            rows = conn.execute(select(c.chunk_index, c.rows, c.rejected).where(c.job_id == self.job_id)).all()
        finished = {int(index): (int(count), int(rejected)) for index, count, rejected in rows}
        rejects = self.staging.readable("rejects")
        self.staging.drop("rejects", set(rejects) - set(finished))
        lost = [i for i, (_, rejected) in finished.items() if rejects.get(i, (0, 0))[0] != rejected]
        if lost:
            raise ShipyardError(
                f"the rejected rows of chunk {min(lost)} of job {self.job_id} are missing from {self.staging.folder}; "
                f"its scores are already in {self.target.label}: run the job again without resuming"
            )
        return finished

    def _write_scores(self, index: int, scores: pa.Table, rejected: int) -> None:
        from sqlalchemy import insert

        with self._connect() as conn:
            if scores.num_rows:
                scores.to_pandas().to_sql(self.write_table, conn, if_exists="append", index=False)
            conn.execute(
                insert(self.chunks).values(
                    job_id=self.job_id,
                    chunk_index=index,
                    rows=scores.num_rows,
                    rejected=rejected,
                    finished_at=datetime.now(UTC),
                )
            )

    def publish(self, chunks: int, empty: pa.Table) -> None:
        from sqlalchemy import inspect, text

        with self._connect() as conn:
            if not inspect(conn).has_table(self.write_table):  # no rows at all: still create the table
                empty.to_pandas().to_sql(self.write_table, conn, index=False)
            if self.write_table == self.target.table:
                return
            if inspect(conn).has_table(self.target.table):
                if self.if_exists == "fail":
                    raise Conflict(
                        f"{self.target.label} was created while the job ran; the scores are kept in "
                        f"table {self.write_table}"
                    )
                conn.execute(text(f"DROP TABLE {self._quote(conn, self.target.table)}"))
            staged, final = self._quote(conn, self.write_table), self._quote(conn, self.target.table)
            conn.execute(text(f"ALTER TABLE {staged} RENAME TO {final}"))

    def discard(self) -> None:
        from sqlalchemy import delete, inspect, text

        with contextlib.suppress(ShipyardError), self._connect() as conn:
            conn.execute(delete(self.chunks).where(self.chunks.c.job_id == self.job_id))
            if self.write_table != self.target.table and inspect(conn).has_table(self.write_table):
                conn.execute(text(f"DROP TABLE {self._quote(conn, self.write_table)}"))
        super().discard()

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Connection]:
        """One transaction; database errors become one-line :class:`StorageError` naming the target."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot write {self.target.label}: {_first_line(exc)}") from None

    @staticmethod
    def _quote(conn: Connection, name: str) -> str:
        return str(conn.dialect.identifier_preparer.quote(name))


def open_sink(target: Target, job_id: str, rejects: FileTarget, if_exists: IfExists) -> Sink:
    """The sink for ``target``."""
    if isinstance(target, FileTarget):
        return FileSink(target, job_id)
    return SqlSink(target, job_id, rejects, if_exists)


# ---------------------------------------------------------------------- atomic files
def write_atomically(target: FileTarget, parts: list[Path], empty: pa.Schema | None = None) -> None:
    """Stream the part files, in order, into ``target``: a temporary name, fsync, then a rename into place.

    Parts may differ in types where a chunk had no rows (``float64`` for a regressor's ``float32``
    predictions); every part is cast to the types that hold them all. With no parts, ``target`` gets the
    columns of ``empty`` and no rows. Memory holds one part (or ``_MERGE_ROWS`` rows) at a time.
    """
    schemas = [_part_schema(p) for p in parts] or [empty or pa.schema([])]
    schema = pa.unify_schemas(schemas, promote_options="permissive") if len(schemas) > 1 else schemas[0]
    path = target.path
    tmp = tempfiles.temp_path(path)  # named after this process: removed on SIGTERM, swept after a kill -9

    def write() -> None:
        with _open_writer(target, tmp, schema) as writer:
            for table in _batched((read_part(p) for p in parts), _MERGE_ROWS):
                table = table.replace_schema_metadata(None)
                writer.write_table(table.cast(schema) if table.schema != schema else table)
            if not parts:
                writer.write_table(schema.empty_table())
        _fsync(tmp)
        _move_into_place(tmp, path)

    try:
        _guard(path, write)
    finally:
        tempfiles.discard(tmp)


def _open_writer(target: FileTarget, path: Path, schema: pa.Schema) -> Any:
    """The Parquet or CSV writer of ``target``'s format, writing ``path``."""
    from pyarrow import csv as pacsv

    if target.format == "parquet":
        return pq.ParquetWriter(
            path, schema, use_dictionary=_dictionary_columns(schema), compression=_compression(schema)
        )
    return pacsv.CSVWriter(path, schema)


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename the complete, fsynced ``tmp`` to ``path`` with the usual file mode, and fsync the folder."""
    tmp.chmod(0o666 & ~_umask())
    os.replace(tmp, path)
    _fsync(path.parent)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding: text, booleans, and the few-valued output columns.

    Trying a dictionary on every column costs five times the encoding time on high-cardinality
    numbers (ids, probabilities) before Parquet falls back to plain encoding.

    >>> _dictionary_columns(pa.schema([("id", pa.int64()), ("prediction", pa.int64()), ("proba_1", pa.float64()),
    ...                                ("channel", pa.string()), ("model", pa.string())]))
    ['prediction', 'channel', 'model']
    """
    few = {"prediction", "model", "model_version", "scored_at"}
    return [
        f.name
        for f in schema
        if (f.name in few and not pa.types.is_floating(f.type))
        or pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_boolean(f.type)
        or pa.types.is_dictionary(f.type)
    ]


def _compression(schema: pa.Schema) -> str | dict[str, str]:
    """Snappy for every column but the floating-point ones, which are stored uncompressed.

    Probabilities and other scores are random floats that Snappy cannot shrink: compressing them costs
    about a fifth of their writing time and saves nothing. (Parquet names the columns of nested types
    by their leaves, so a schema with any nested column gets Snappy throughout.)

    >>> _compression(pa.schema([("id", pa.int64()), ("proba_1", pa.float64())]))
    {'id': 'snappy', 'proba_1': 'none'}
    """
    if any(pa.types.is_nested(f.type) for f in schema):
        return "snappy"
    return {f.name: "none" if pa.types.is_floating(f.type) else "snappy" for f in schema}


def _part_schema(path: Path) -> pa.Schema:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).schema.remove_metadata()


def _batched(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Join small tables into ones of at least ``rows`` rows (so small chunks do not make tiny row groups)."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        pending.append(table.replace_schema_metadata(None))
        held += table.num_rows
        if held >= rows:
            yield pa.concat_tables(pending, promote_options="permissive")
            pending, held = [], 0
    if pending:
        yield pa.concat_tables(pending, promote_options="permissive")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _guard(path: Path, action: Callable[[], object]) -> None:
    """Run ``action``; an ``OSError`` becomes a one-line error naming ``path``."""
    try:
        action()
    except OSError as exc:
        raise ShipyardError(f"cannot write {path}: {exc.strerror or _first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
