"""Rich helpers shared by the commands: consoles, table cells and value formatting.

Everything user-supplied goes into tables as :class:`rich.text.Text`, so a tag such as ``[bold]``
is shown as typed and never interpreted as markup.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

NONE = "-"

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (one line) instead of a table.")]
"""The ``--json`` flag every list and show command takes."""


def console() -> Console:
    """The console for results (stdout). A new one each time: a console fixes its width (``COLUMNS``) when
    it is made, and one process may run many commands (tests, a notebook)."""
    return Console(highlight=False)


def err_console() -> Console:
    """The console for progress and status (stderr), so results on stdout stay clean for pipes."""
    return Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """Write ``error: <message>`` to stderr as exactly one line (never wrapped, never styled)."""
    one_line = " ".join(str(message).split())
    sys.stderr.write(f"error: {one_line}\n")
    sys.stderr.flush()


def cell(value: Any) -> Text:
    """A table cell showing ``value`` literally; ``None`` and empty values as ``-``."""
    if value is None or value == "" or value == () or value == {}:
        return Text(NONE, style="dim")
    return Text(str(value))


def table(*columns: str, title: str | None = None) -> Table:
    """A table in the house style with the given column headers."""
    result = Table(title=title, title_justify="left", header_style="bold", show_edge=True, pad_edge=True)
    for column in columns:
        result.add_column(column, overflow="fold")
    return result


def when(value: datetime | None) -> str:
    """A timestamp in the local time zone, to the second.

    >>> from datetime import UTC
    >>> len(when(datetime(2024, 5, 1, 12, 0, tzinfo=UTC)))
    19
    >>> when(None)
    '-'
    """
    if value is None:
        return NONE
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def size(num_bytes: int) -> str:
    """A byte count for people.

    >>> size(512), size(2048), size(5 * 1024 * 1024)
    ('512 B', '2.0 KB', '5.0 MB')
    """
    value = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def number(value: float) -> str:
    """A metric value, short but exact enough to compare.

    >>> number(0.912345678), number(3.0), number(12345.678)
    ('0.9123', '3', '1.235e+04')
    """
    return f"{value:.4g}"


def pairs(values: Mapping[str, Any], *, sep: str = "=") -> str:
    """``k=v, k=v`` in key order; numbers through :func:`number`.

    >>> pairs({"b": 2.0, "a": "x"})
    'a=x, b=2'
    """
    shown = (f"{k}{sep}{number(v) if isinstance(v, float) else v}" for k, v in sorted(values.items()))
    return ", ".join(shown)


def joined(values: Iterable[Any]) -> str:
    """Comma-separated values, sorted.

    >>> joined(["staging", "production"])
    'production, staging'
    """
    return ", ".join(sorted(str(v) for v in values))


def version_or_none(version: int | None) -> str:
    """A version number, or ``none`` for an alias that pointed nowhere."""
    return "none" if version is None else str(version)


def say(text: str, *, err: bool = False) -> None:
    """Print one plain line (no markup, no wrapping), to stdout or, with ``err``, to stderr."""
    (err_console() if err else console()).print(text, markup=False, soft_wrap=True)


def plain(value: Any, *, leave_out: Iterable[str] = ()) -> Any:
    """``value`` as JSON-ready data: dataclasses as objects (without the fields in ``leave_out``), times as
    ISO strings, tuples as lists, NaN and infinities as ``None``.

    >>> from datetime import UTC
    >>> plain({"at": datetime(2026, 1, 2, tzinfo=UTC), "v": (1, float("nan"))})
    {'at': '2026-01-02T00:00:00+00:00', 'v': [1, None]}
    """
    skip = set(leave_out)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in skip}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def print_json(value: Any) -> None:
    """Print ``value`` (see :func:`plain`) as one line of JSON on stdout."""
    sys.stdout.write(json.dumps(plain(value), allow_nan=False) + "\n")
    sys.stdout.flush()
