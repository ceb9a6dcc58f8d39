"""Temporary files beside an output: named after the process that writes them, gone when it stops or dies.

``shipyard predict`` and ``shipyard batch score`` write an output file under a temporary name in the same folder
and rename it into place when it is complete. That name is ``.<output name>.shipyard-tmp-<pid>-<host>.<n>``
(``host``: 8 hex digits of a hash of the machine's name), so whatever happens the owner of a leftover is known:

* the owner removes its temporary files when it fails (its own ``except``/``finally``), at interpreter exit
  (:mod:`atexit`) and, in the CLI, on ``SIGTERM`` and ``SIGHUP`` (:func:`remove_on_signals`);
* a process killed with ``kill -9`` (or by the OOM killer, or a power cut) cannot: the next run on the same
  output removes the temporary files of processes of this machine that no longer exist (:func:`sweep`). Files
  of a live process, or of another machine sharing the folder, are never touched.

>>> import tempfile
>>> target = Path(tempfile.mkdtemp()) / "scores.csv"
>>> tmp = temp_path(target)
>>> tmp.name.startswith(".scores.csv.shipyard-tmp-"), owner(target, tmp.name) == os.getpid()
(True, True)
>>> _ = tmp.write_text("x"); sweep(target)  # its owner (this process) is alive: kept
[]
>>> discard(tmp); tmp.exists()
False
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import os
import re
import shutil
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["MARK", "discard", "owner", "release", "remove_on_signals", "sweep", "temp_path"]

MARK = "shipyard-tmp"
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_lock = threading.RLock()  # re-entrant: the SIGTERM handler takes it in the main thread, which may hold it
_owned: set[Path] = set()
_numbers = itertools.count()
_exit_hook = False
_signals_hooked = False
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def temp_path(target: Path) -> Path:
    """A new temporary name beside ``target`` owned by this process (nothing is created); removed at exit,
    and on SIGTERM once :func:`remove_on_signals` was called, unless :func:`release` d first."""
    global _exit_hook
    path = target.parent / f".{target.name}.{MARK}-{os.getpid()}-{_HOST}.{next(_numbers)}"
    with _lock:
        _owned.add(path)
        if not _exit_hook:
            atexit.register(_remove_owned)
            _exit_hook = True
    return path


def release(path: Path) -> None:
    """``path`` was renamed into place (or removed): no longer this process's to remove."""
    with _lock:
        _owned.discard(path)


def discard(path: Path) -> None:
    """Remove the temporary file ``path`` (if present) and stop tracking it."""
    _remove(path)
    release(path)


def owner(target: Path, name: str) -> int | None:
    """The pid of the process of this machine that owns the temporary file ``name`` of ``target``, else ``None``.

    >>> owner(Path("out.csv"), f".out.csv.shipyard-tmp-42-{_HOST}.0"), owner(Path("out.csv"), ".out.csv.x.part")
    (42, None)
    >>> owner(Path("out.csv"), ".out.csv.shipyard-tmp-42-00000000.0")  # another machine's
    """
    match = re.fullmatch(rf"\.{re.escape(target.name)}\.{MARK}-(\d+)-([0-9a-f]{{8}})\.\d+", name)
    if match is None or match[2] != _HOST:
        return None
    return int(match[1])


def sweep(target: Path) -> list[Path]:
    """Remove the temporary files of ``target`` whose owner process (on this machine) is gone; those removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        pid = owner(target, entry.name)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        path = Path(entry.path)
        if _remove(path):
            removed.append(path)
    return removed


def remove_on_signals(signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)) -> None:
    """On ``signals``, remove this process's temporary files, then end as the signal would have (the CLI).

    Only from the main thread (where handlers are set); a signal that is ignored (``nohup``) stays ignored,
    and a handler set before is called after the files are removed.
    """
    global _signals_hooked
    if _signals_hooked or threading.current_thread() is not threading.main_thread():
        return
    for number in signals:
        previous = signal.getsignal(number)
        if previous is signal.SIG_IGN:
            continue
        signal.signal(number, _on_signal(previous))
    _signals_hooked = True


def _on_signal(previous: Handler) -> Callable[[int, FrameType | None], None]:
    def handler(number: int, frame: FrameType | None) -> None:
        _remove_owned()
        if callable(previous):
            previous(number, frame)
            return
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)  # die of the signal, as without this handler (exit status 128 + number)

    return handler


def _remove_owned() -> None:
    with _lock:
        paths = list(_owned)
        _owned.clear()
    for path in paths:
        _remove(path)


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    # a zombie (dead, not yet reaped by its parent) holds no file open
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        if handle.read().rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True
