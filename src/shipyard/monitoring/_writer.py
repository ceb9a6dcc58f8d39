"""The prediction log's writer process: turns a server's arenas into Parquet files (or PostgreSQL rows).

Started by :class:`~shipyard.monitoring._shipper.WriterProcess` as ``python -m shipyard.monitoring._writer``.
It reads one JSON message per line on stdin and answers on stdout:

* first line: ``{"settings": {...}, "home": "...", "arenas": "..."}``: the server's
  :class:`~shipyard.serving.settings.LogSettings`, its home and the folder of its arenas;
* ``{"use": path, "kind": "columns" | "records", "stream": [model, version, input names]}``: the server now
  appends to this arena (mapped on first sight; ``stream`` for column arenas);
* ``{"seal": path, "tables": bool}``: the server stopped appending to it: write its records, answer
  ``{"done": path, "written": rows, "failed": rows, "tables": [[model, version, arrow file], ...],
  "failed_writes": n}`` (the tables only when asked for, for the server's listeners; ``failed_writes``: table
  writes that failed, e.g. on a full disk, logged once by the writer); the server may then reuse the arena;
* ``{"close": true}``: merge this writer's files, answer ``{"closed": true}`` and exit.

When stdin ends without ``close`` the server died (a crash, ``kill -9``): the writer still writes every whole
request of the arenas the server was appending to, merges its files, deletes the arenas and exits. So a crash
loses no answered prediction that reached the arena. The writer ignores SIGINT and SIGTERM, which a terminal
or a supervisor sends to the whole group: it stops when its server tells it to or is gone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("shipyard.monitoring")


class _Writer:
    def __init__(self, config: dict[str, Any], channel: IO[str]) -> None:
        from shipyard.monitoring.predlog import PredictionLogger
        from shipyard.serving.settings import LogSettings

        settings = LogSettings.model_validate({**config["settings"], "writer": "thread"})
        self.logger = PredictionLogger(settings, home=Path(config["home"]))
        self.logger.start()  # its thread merges and expires files; arenas are written from here
        self.channel = channel
        self.arenas: dict[str, Any] = {}
        self.streams: dict[str, tuple[str, int, list[str]]] = {}
        self.current: list[str] = []  # arenas the server appends to, in the order it started them
        self.tables: list[tuple[str, int, Any]] | None = None
        self.logger.add_listener(self._keep_table)
        self.table_count = 0
        self.folder = Path(config["arenas"])

    def _keep_table(self, model: str, version: int, table: Any) -> None:
        if self.tables is not None:
            self.tables.append((model, version, table))

    def _send(self, message: dict[str, Any]) -> None:
        self.channel.write(json.dumps(message) + "\n")
        self.channel.flush()

    def use(self, message: dict[str, Any]) -> None:
        from shipyard.monitoring._arena import ColumnArena, RecordArena

        path = message["use"]
        if path not in self.arenas:
            kind = ColumnArena if message["kind"] == "columns" else RecordArena
            self.arenas[path] = kind.open(Path(path))
        if message["kind"] == "columns":
            model, version, names = message["stream"]
            self.streams[path] = (model, int(version), list(names))
        if path not in self.current:
            self.current.append(path)

    def write(self, path: str, *, tables: bool) -> tuple[int, int, list[list[Any]]]:
        """Write an arena's requests; rows written, rows that failed, and the tables' Arrow files if asked."""
        from shipyard.monitoring._arena import ColumnArena

        if path in self.current:
            self.current.remove(path)
        arena = self.arenas[path]
        self.tables = [] if tables else None
        if isinstance(arena, ColumnArena):
            model, version, names = self.streams[path]
            rows = arena.committed_rows()
            written = 0
            if rows:
                table = arena.table(model, version, names, self.logger.rules(model))
                written = self.logger.write_table(model, version, table)
                del table
        else:
            entries = arena.entries()
            rows = sum(entry[11] for entry in entries)
            written = self.logger.write_entries(entries) if entries else 0
            del entries
        shipped = [[model, version, str(self._arrow_file(table))] for model, version, table in self.tables or ()]
        self.tables = None
        return written, rows - written, shipped

    def _arrow_file(self, table: Any) -> Path:
        import pyarrow as pa

        self.table_count += 1
        final = self.folder / f"table-{self.table_count}.arrow"
        tmp = final.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, final)
        return final

    def serve(self, lines: IO[str]) -> bool:
        """Handle messages until ``close`` (``True``) or the end of stdin (``False``: the server is gone)."""
        for line in lines:
            message = json.loads(line)
            if "use" in message:
                self.use(message)
            elif "seal" in message:
                before = self.logger.failed_writes
                try:
                    written, failed, shipped = self.write(message["seal"], tables=bool(message.get("tables")))
                except Exception:
                    log.exception("the prediction log's writer could not read %s", message["seal"])
                    written, failed, shipped = 0, 0, []
                self._send({"done": message["seal"], "written": written, "failed": failed, "tables": shipped,
                            "failed_writes": self.logger.failed_writes - before})  # fmt: skip
            elif message.get("close"):
                return True
        return False

    def finish(self, *, graceful: bool) -> None:
        if not graceful:  # the server died while appending to these arenas
            for path in list(self.current):
                try:
                    written, failed, _ = self.write(path, tables=False)
                    if written or failed:
                        log.warning("prediction log: the server stopped without closing its log; wrote the %d "
                                    "rows it had recorded (%d failed)", written, failed)  # fmt: skip
                except Exception:
                    log.exception("the prediction log's writer could not read what the server recorded last")
        self.logger.close()
        for arena in self.arenas.values():
            arena.close(unlink=False)
        if not graceful:
            shutil.rmtree(self.folder, ignore_errors=True)
        if graceful:
            self._send({"closed": True})


def main() -> None:
    """Run the writer process (see the module docstring)."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    channel = os.fdopen(os.dup(1), "w", buffering=1)  # the answers; anything printed goes to stderr instead
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    config = json.loads(sys.stdin.readline())
    writer = _Writer(config, channel)
    graceful = writer.serve(sys.stdin)
    writer.finish(graceful=graceful)


if __name__ == "__main__":
    main()
