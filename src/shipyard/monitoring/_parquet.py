"""The Parquet sink of the prediction log: one complete file per flush, compaction into segments, expiry.

See :mod:`shipyard.monitoring._files` for the layout and the rule that keeps readers exact while files are
merged. Each writer merges only its own parts; any writer may delete parts that a segment already covers
(left by a writer that died between the rename and the deletes) and expires old files.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.monitoring import _files

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("shipyard.monitoring")
STALE_TMP_SECONDS = 3600.0
MERGE_PARTS = 256  # an open period's parts are merged early once a stream has this many (e.g. busy feedback)
DICTIONARY_COLUMNS = ["model", "route"]
STATISTICS_COLUMNS = ["ts", "model", "version", "route"]  # what readers filter on; the rest only costs time
PART_COMPRESSION = "snappy"  # flush files are written while serving: cheap to encode (merged segments use zstd)
SEGMENT_COMPRESSION = "zstd"


@dataclass(frozen=True)
class _File:
    """A file of this writer not yet merged into its period's final segment."""

    first: int
    last: int
    period: int
    path: Path
    size: int
    merged: bool  # a segment merged early (or files that failed to merge): early merges start after it


def write_file(table: pa.Table, final: Path, *, fsync: bool, compression: str = SEGMENT_COMPRESSION) -> int:
    """Write ``table`` to ``final`` completely or not at all (``.tmp`` then rename); its size in bytes.

    The file is ``0600`` from the moment it exists, in folders made ``0700`` (it holds request data).
    """
    import pyarrow.parquet as pq

    _files.private_dir(final.parent)
    tmp = final.with_name(final.name[: -len(".parquet")] + ".tmp")
    _files.create_private(tmp)
    statistics = [c for c in table.column_names if c in STATISTICS_COLUMNS]
    # Arrow opens the file itself: through a Python file object every buffer written would take the GIL
    # back from the busy event loop, and each of those hand-overs waits up to the interpreter's switch interval.
    # Dictionary pages only where values repeat: on request ids and measured numbers they cost twice the time.
    try:
        pq.write_table(
            table, str(tmp), compression=compression, use_dictionary=DICTIONARY_COLUMNS, write_statistics=statistics
        )
        if fsync:
            descriptor = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        size = tmp.stat().st_size
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a full disk gets its space back at once
        raise
    if fsync:
        _files.fsync_dir(final.parent)
    return size


class ParquetSink:
    """Writes the log files of one writer (one server process) under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool,
        rotate_seconds: float,
        rotate_bytes: int,
        max_age_hours: float,
        max_bytes: int,
        started: float | None = None,
    ) -> None:
        self.root = root
        _files.private_dir(root)
        self.fsync = fsync
        self.rotate_seconds = rotate_seconds
        self.rotate_bytes = rotate_bytes
        self.max_age_seconds = max_age_hours * 3600.0
        self.max_bytes = max_bytes
        self.writer = _files.writer_id(time.time() if started is None else started, os.getpid())
        self._seq = itertools.count(1)
        self._files: dict[tuple[str, str, str], list[_File]] = {}
        self._lock = threading.Lock()

    def write(
        self, kind: str, model: str, table: pa.Table, *, version: int | None = None, durable: bool = False
    ) -> Path:
        """Write one part file of ``kind`` for ``model`` (``version``); fsynced when ``durable`` or configured."""
        now = time.time()
        seq = next(self._seq)
        stream = _files.stream(kind, version)
        final = _files.day_folder(self.root, kind, model, now) / _files.part_name(self.writer, stream, seq)
        size = write_file(table, final, fsync=self.fsync or durable, compression=PART_COMPRESSION)
        with self._lock:
            self._files.setdefault((kind, model, stream), []).append(
                _File(seq, seq, int(now // self.rotate_seconds), final, size, merged=False)
            )
        return final

    # ------------------------------------------------------------------ compaction
    def compact(self, now: float | None = None, *, everything: bool = False) -> int:
        """Merge this writer's files; the number of segments written.

        A closed period's files (``everything``: all) become one segment, unless they hold more than
        ``rotate_bytes`` (then only the parts after its last early segment are merged). In the open period a
        stream's parts are merged early once they are ``MERGE_PARTS`` files or ``rotate_bytes``. Every merge
        takes a run of consecutive files of one stream, so the segment's range contains exactly those files.
        """
        current = int((time.time() if now is None else now) // self.rotate_seconds)
        runs: list[tuple[tuple[str, str, str], list[_File], bool]] = []  # (stream, files, keep tracking)
        with self._lock:
            for key, files in self._files.items():
                files.sort(key=lambda f: f.first)
                closed = 0
                while closed < len(files) and (everything or files[closed].period < current):
                    closed += 1
                if closed:
                    done, files[:closed] = files[:closed], []
                    if sum(f.size for f in done) > self.rotate_bytes:
                        done = _trailing_parts(done)
                    if len(done) > 1:
                        runs.append((key, done, False))
                parts = _trailing_parts(files)
                if len(parts) >= MERGE_PARTS or (len(parts) > 1 and sum(f.size for f in parts) >= self.rotate_bytes):
                    del files[len(files) - len(parts) :]
                    runs.append((key, parts, True))
        written = 0
        for key, run, keep in runs:
            try:
                segment = self._merge(key, run)
            except Exception:
                log.exception("could not merge %d prediction-log files of %s; they stay as they are", len(run), key[1])
                segment = None
            written += segment is not None
            if keep:  # still tracked, so no later run spans them; failed ones stop early merges from retrying
                kept = [segment] if segment is not None else [replace(item, merged=True) for item in run]
                with self._lock:
                    self._files.setdefault(key, []).extend(kept)
        return written

    def _merge(self, key: tuple[str, str, str], run: list[_File]) -> _File | None:
        """Write the segment of ``run`` (consecutive files of stream ``key``), then delete them."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for item in run:
            try:
                tables.append(pq.read_table(item.path))
            except FileNotFoundError:  # expired meanwhile
                continue
        if not tables:
            return None
        try:
            merged = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # e.g. a column inferred differently: keep the files
            log.info("prediction log: %d files of %s are not merged: %s", len(run), key[1], exc)
            return None
        first, last = run[0].first, run[-1].last
        final = run[0].path.parent / _files.segment_name(self.writer, key[2], first, last)
        size = write_file(merged, final, fsync=self.fsync)
        for item in run:  # the segment is in place: readers skip these files from now on
            with contextlib.suppress(FileNotFoundError):
                item.path.unlink()
        return _File(first, last, run[0].period, final, size, merged=True)

    # ------------------------------------------------------------------ expiry
    def expire(self, now: float | None = None) -> int:
        """Delete covered files, stale temporary files, files past the age limit, then the oldest beyond max_bytes.

        Files and folders an older version left readable by others are made private on the way (``0600``,
        ``0700``).
        """
        now = time.time() if now is None else now
        deleted = 0
        tightened = 0
        files: list[tuple[float, int, Path]] = []
        for kind in _files.KINDS:
            folder = self.root / kind
            if not folder.is_dir():
                continue
            tightened += _files.tighten(folder, _files.DIR_MODE)
            for model_dir in folder.iterdir():
                tightened += _files.tighten(model_dir, _files.DIR_MODE)
                for path in _files.covered_files(self.root, kind, model_dir.name):
                    deleted += _unlink(path)
                for day in sorted(p for p in model_dir.iterdir() if p.is_dir()):
                    tightened += _files.tighten(day, _files.DIR_MODE)
                    for path in day.iterdir():
                        try:
                            stat = path.stat()
                        except FileNotFoundError:
                            continue
                        if path.suffix == ".tmp":
                            if now - stat.st_mtime > STALE_TMP_SECONDS:
                                deleted += _unlink(path)
                        elif path.suffix == ".parquet":
                            if now - stat.st_mtime > self.max_age_seconds:
                                deleted += _unlink(path)
                            else:
                                if stat.st_mode & 0o077:
                                    tightened += _files.tighten(path, _files.FILE_MODE)
                                files.append((stat.st_mtime, stat.st_size, path))
                    if day.name != _files.day_folder(self.root, kind, "x", now).name:
                        with contextlib.suppress(OSError):
                            day.rmdir()  # only when empty
        if tightened:
            log.info("prediction log: made %d files and folders left by an older version private", tightened)
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            deleted += _unlink(path)
            total -= size
        if deleted:
            log.info("prediction log: deleted %d expired files", deleted)
        return deleted

    def close(self) -> None:
        """Nothing is held open between writes."""


def _trailing_parts(files: list[_File]) -> list[_File]:
    """The parts after the last segment in ``files`` (sorted): a run that can be merged on its own."""
    start = len(files)
    while start > 0 and not files[start - 1].merged:
        start -= 1
    return files[start:]


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return 1
