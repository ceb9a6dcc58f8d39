"""Reading and writing the table files the CLI takes (CSV or Parquet, chosen by the file ending).

Reading problems become :class:`~shipyard.errors.InvalidInput` with a one-line message naming the
file, so the command prints ``error: ...`` instead of a pandas or pyarrow traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

Format = Literal["csv", "parquet"]

SUFFIXES: dict[str, Format] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def table_format(path: Path, what: str = "file") -> Format:
    """``csv`` or ``parquet`` from ``path``'s ending, or a one-line error saying which endings work.

    >>> table_format(Path("data.CSV")), table_format(Path("x.parquet"))
    ('csv', 'parquet')
    >>> table_format(Path("data.xlsx"), "input")
    Traceback (most recent call last):
    ...
    shipyard.errors.InvalidInput: cannot tell the format of input data.xlsx from its ending; use a .csv or .parquet file
    """
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise InvalidInput(f"cannot tell the format of {what} {path.name} from its ending; use a .csv or .parquet file")
    return found


def check_readable(path: Path, what: str = "input file") -> Format:
    """Fail with one line unless ``path`` is an existing, readable CSV or Parquet file; return its format."""
    fmt = table_format(path, what)
    if not path.exists():
        raise InvalidInput(f"{what} {path} does not exist")
    if path.is_dir():
        raise InvalidInput(f"{what} {path} is a folder; give a .csv or .parquet file")
    if not os.access(path, os.R_OK):
        raise InvalidInput(f"{what} {path} is not readable (permission denied)")
    return fmt


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (library errors can span several lines)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


@contextmanager
def reading(path: Path, fmt: Format) -> Iterator[None]:
    """Turn the errors pandas and pyarrow raise while reading ``path`` into one-line ``InvalidInput``."""
    import pandas as pd
    import pyarrow as pa

    try:
        yield
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, pa.ArrowException) as exc:
        kind = "CSV" if fmt == "csv" else "Parquet"
        raise InvalidInput(f"cannot read {path} as {kind}: {first_line(exc)}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or first_line(exc)}") from None


def read_table(path: Path, what: str = "input file") -> pd.DataFrame:
    """Read a whole CSV or Parquet file into a DataFrame."""
    import pandas as pd

    fmt = check_readable(path, what)
    with reading(path, fmt):
        return pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)


def count_lines(path: Path, block: int = 1 << 20) -> int:
    """Newlines in a file, read in blocks (a quick row estimate for a CSV's progress bar)."""
    total = 0
    last = b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(block):
            total += chunk.count(b"\n")
            last = chunk[-1:]
    return total + (0 if last == b"\n" else 1)
