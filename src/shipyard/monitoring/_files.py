"""File layout of the Parquet prediction log, shared by its writer and its reader.

``<root>/<kind>/<model>/<YYYY-MM-DD>/<file>.parquet`` with ``kind`` ``predictions`` or ``labels``. Every
writer (one per server process) has an id ``<start ms>-<pid>`` and numbers its files with one counter.
A *stream* is what one writer writes for one model version (``v3``) or for one model's labels (``labels``):

* a *part* ``<writer>.<stream>.<seq>.parquet`` is what one flush wrote;
* a *segment* ``<writer>.<stream>.<first>-<last>.parquet`` is the merge of every file of that stream (parts or
  smaller segments) whose numbers lie from ``first`` to ``last``.

Only complete files end in ``.parquet`` (they are written as ``.tmp`` and renamed). The log holds request
data, so every file is created ``0600`` and every folder the log makes ``0700``, whatever the umask
(:func:`private_dir`, :func:`create_private`). A segment appears
(rename) before the files it merged are deleted, so a reader that sees both reads the segment and skips every
file of the same writer and stream whose range it contains: no row is read twice, and none is missed,
whenever the reader looks.

>>> _parse("1700000000000-42.v3.00000007.parquet"), _parse("1700000000000-42.v3.00000001-00000007.parquet")
(('1700000000000-42.v3', 7, 7, False), ('1700000000000-42.v3', 1, 7, True))
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import stat
from pathlib import Path

KINDS = ("predictions", "labels")
FILE_MODE = 0o600
DIR_MODE = 0o700
_NAME = re.compile(r"(?P<stream>\d+-\d+\.[a-z0-9]+)\.(?P<first>\d+)(?:-(?P<last>\d+))?\.parquet")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
SEQ_DIGITS = 8


def writer_id(started: float, pid: int) -> str:
    """The id of a writer started at ``started`` (epoch seconds) in process ``pid``.

    >>> writer_id(1700000000.5, 42)
    '1700000000500-42'
    """
    return f"{int(started * 1000)}-{pid}"


def stream(kind: str, version: int | None) -> str:
    """The stream of a model's predictions of ``version``, or of its labels.

    >>> stream("predictions", 3), stream("labels", None)
    ('v3', 'labels')
    """
    return "labels" if kind == "labels" else f"v{version}"


def part_name(writer: str, stream: str, seq: int) -> str:
    """The file name of part ``seq`` of ``writer``'s ``stream``."""
    return f"{writer}.{stream}.{seq:0{SEQ_DIGITS}d}.parquet"


def segment_name(writer: str, stream: str, first: int, last: int) -> str:
    """The file name of the segment merging parts ``first`` to ``last`` of ``writer``'s ``stream``."""
    return f"{writer}.{stream}.{first:0{SEQ_DIGITS}d}-{last:0{SEQ_DIGITS}d}.parquet"


def day_folder(root: Path, kind: str, model: str, when: float) -> Path:
    """The folder of files written at ``when`` (epoch seconds, UTC day)."""
    day = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d")
    return root / kind / model / day


def _parse(name: str) -> tuple[str, int, int, bool] | None:
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    first = int(match["first"])
    last = int(match["last"]) if match["last"] is not None else first
    return match["stream"], first, last, match["last"] is not None


def _all_files(model_dir: Path, since: dt.date | None) -> list[Path]:
    try:
        days = sorted(os.scandir(model_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    files: list[Path] = []
    for day in days:
        if not day.is_dir() or not _DATE.fullmatch(day.name):
            continue
        if since is not None and dt.date.fromisoformat(day.name) < since - dt.timedelta(days=1):
            continue  # a folder holds rows from at most a few seconds before its day began
        try:
            files.extend(Path(e.path) for e in os.scandir(day.path) if e.name.endswith(".parquet"))
        except FileNotFoundError:
            continue
    return files


def _split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(visible, covered): a covered file's rows are all in a larger file of the same writer and stream.

    >>> names = ["1-2.v1.00000001.parquet", "1-2.v1.00000001-00000003.parquet", "1-2.v1.00000004.parquet",
    ...          "1-2.v2.00000002.parquet", "1-2.v1.00000001-00000002.parquet"]
    >>> visible, covered = _split([Path(n) for n in names])
    >>> [p.name for p in visible]
    ['1-2.v1.00000001-00000003.parquet', '1-2.v1.00000004.parquet', '1-2.v2.00000002.parquet']
    """
    streams: dict[str, list[tuple[int, int, Path]]] = {}
    visible: list[Path] = []
    for path in files:
        info = _parse(path.name)
        if info is None:
            visible.append(path)  # not ours: read as it is
        else:
            streams.setdefault(info[0], []).append((info[1], -info[2], path))
    covered: list[Path] = []
    for items in streams.values():
        items.sort()  # by first number, the widest range first
        reach = -1
        for _first, minus_last, path in items:
            if -minus_last <= reach:  # an earlier file starts no later and ends no earlier: it holds these rows
                covered.append(path)
            else:
                visible.append(path)
                reach = -minus_last
    return sorted(visible), sorted(covered)


def visible_files(root: Path, kind: str, model: str, since: dt.datetime | None = None) -> list[Path]:
    """The files a reader reads for ``model``: every row exactly once (optionally only folders near ``since``)."""
    return _split(_all_files(root / kind / model, since.date() if since is not None else None))[0]


def covered_files(root: Path, kind: str, model: str) -> list[Path]:
    """Files already merged into a segment (left by a writer that died before deleting them)."""
    return _split(_all_files(root / kind / model, None))[1]


def models(root: Path) -> list[str]:
    """Models with a prediction or label folder under ``root``."""
    names: set[str] = set()
    for kind in KINDS:
        folder = root / kind
        if folder.is_dir():
            names.update(entry.name for entry in os.scandir(folder) if entry.is_dir())
    return sorted(names)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(folder: Path) -> None:
    """Make ``folder`` and any missing parents, each created ``0700`` whatever the umask.

    Folders that already exist are left as they are (a folder the user chose keeps its mode).

    >>> import tempfile
    >>> base = Path(tempfile.mkdtemp())
    >>> private_dir(base / "a" / "b")
    >>> oct(stat.S_IMODE((base / "a").stat().st_mode)), oct(stat.S_IMODE((base / "a" / "b").stat().st_mode))
    ('0o700', '0o700')
    """
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not path.is_dir():
                raise
            continue  # made by another writer meanwhile
        os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode ``0600`` (replacing a leftover of the same name), never following a link.

    The file exists with its final mode before anything is written to it, so no reader ever sees the data
    with wider permissions; a writer then opens it again by name (``O_TRUNC`` keeps the mode).
    """
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a temporary file of a failed attempt (the names are this writer's own)
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)  # the umask may have taken bits away (0600 is the exact mode)
    finally:
        os.close(descriptor)


def tighten(path: Path, mode: int) -> bool:
    """Take group and other permissions away from ``path`` (a file or folder of an older log); whether it changed."""
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) or info.st_mode & 0o077 == 0:
            return False
        os.chmod(path, mode)
    except OSError:
        return False
    return True
