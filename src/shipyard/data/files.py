"""File sources: CSV and Parquet, one file, a folder of files, a glob, or an explicit list of files.

Both readers stream: Parquet with :meth:`pyarrow.parquet.ParquetFile.iter_batches` (one row group
at a time, only the requested columns), CSV with :func:`pyarrow.csv.open_csv` (one block at a time).
The stream is cut into chunks of exactly ``chunk_rows`` rows across file and row-group boundaries,
so the chunks depend only on the files and ``chunk_rows``.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shipyard.data._arrow import (
    DataSchemaError,
    check_chunk_rows,
    decimal_fields_as_floats,
    first_line,
    is_string_like,
    plain_pandas_metadata,
    rechunk,
    select_columns,
    to_frames,
    type_name,
)
from shipyard.data._arrow import iter_tables as arrow_chunks
from shipyard.data.base import Source
from shipyard.errors import InvalidInput, NotFound

PathLike = str | os.PathLike[str]

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
DUCKDB_SUFFIXES = (".duckdb", ".ddb")
SUPPORTED_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES + DUCKDB_SUFFIXES

_GLOB_CHARS = re.compile(r"[*?\[]")
_CSV_BLOCK_BYTES = 1 << 20
_PARQUET_BUFFER_BYTES = 1 << 20


def suffix_kind(path: PathLike) -> str | None:
    """``"csv"``, ``"parquet"`` or ``"duckdb"`` from a file name's ending, else ``None``.

    >>> suffix_kind("tx.csv.gz"), suffix_kind("part-0.PARQUET"), suffix_kind("notes.txt")
    ('csv', 'parquet', None)
    """
    name = os.fspath(path).lower()
    for kind, suffixes in (("csv", CSV_SUFFIXES), ("parquet", PARQUET_SUFFIXES), ("duckdb", DUCKDB_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    return None


def expand_paths(spec: PathLike | Sequence[PathLike]) -> list[Path]:
    """The files named by a path, a folder (searched recursively), a glob, or a list of any of these.

    Folders and globs give their files sorted by path; hidden files and names starting with ``_``
    (``_SUCCESS``, ``_metadata``) are skipped. A list keeps its order. Raises :class:`NotFound`.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("b.parquet", "a.parquet", "_SUCCESS"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> [p.name for p in expand_paths(folder)]
    ['a.parquet', 'b.parquet']
    """
    if isinstance(spec, (str, os.PathLike)):
        return _expand_one(spec)
    files: list[Path] = []
    for item in spec:
        files.extend(_expand_one(item))
    if not files:
        raise InvalidInput("the list of files is empty; pass at least one CSV or Parquet file")
    return files


def _expand_one(spec: PathLike) -> list[Path]:
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_file():
        return [path.resolve()]
    if path.is_dir():
        found = sorted(
            p.resolve()
            for p in path.rglob("*")
            if p.is_file() and not _hidden(p.relative_to(path)) and suffix_kind(p) in ("csv", "parquet")
        )
        if not found:
            raise InvalidInput(
                f"folder {text} has no data files; put files ending in {', '.join(SUPPORTED_SUFFIXES[:-2])} in it"
            )
        return found
    if _GLOB_CHARS.search(text):
        matches = sorted(Path(m).resolve() for m in glob.glob(os.path.expanduser(text), recursive=True))
        files = [m for m in matches if m.is_file() and not _hidden(Path(m.name))]
        if not files:
            raise NotFound(f"no file matches {text}; check the pattern and the folder it names")
        return files
    raise NotFound(f"no such file or folder: {text}; check the path (relative paths start at {os.getcwd()})")


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def files_fingerprint(kind: str, files: Sequence[Path]) -> str:
    """SHA-256 of each file's resolved path, size and modification time (ns), in order.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
    >>> _ = path.write_text("a\\n1\\n")
    >>> files_fingerprint("csv", [path]) == files_fingerprint("csv", [path])
    True
    """
    digest = hashlib.sha256(kind.encode())
    for path in files:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise NotFound(f"file {path} was removed after it was opened") from None
        digest.update(f"\0{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


class _FileSource(Source):
    """What CSV and Parquet sources share: a fixed list of files and a file-level fingerprint."""

    kind = "file"
    files: list[Path]

    def __init__(self, path: PathLike | Sequence[PathLike], *, uri: str | None = None) -> None:
        self.files = expand_paths(path)
        if uri is None:
            uri = os.fspath(path) if isinstance(path, (str, os.PathLike)) else ", ".join(os.fspath(p) for p in path)
        self.uri = uri
        wrong = [p for p in self.files if suffix_kind(p) not in (self.kind, None)]
        if wrong:
            raise InvalidInput(
                f"{wrong[0]} is not a {self.kind} file but is among the files of {self.uri}; "
                f"put only {self.kind} files together"
            )

    def fingerprint(self) -> str:
        """SHA-256 of the files' resolved paths, sizes and modification times."""
        return files_fingerprint(self.kind, self.files)


class ParquetSource(_FileSource):
    """One Parquet file, a folder of them, a glob, or a list of files, read one row group at a time.

    Every file must have the same columns with the same types (a :class:`SchemaError` names the
    file and column that differ). Columns that pandas wrote as the index stay ordinary columns.

    >>> import tempfile, pathlib, pandas as pd
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tx.parquet"
    >>> pd.DataFrame({"amount": [1.5, 2.0, 3.0], "n": [1, 2, 3]}).to_parquet(path, index=False)
    >>> src = ParquetSource(path)
    >>> src.count_rows(), src.column_names
    (3, ['amount', 'n'])
    >>> [len(chunk) for chunk in src.iter_batches(2)]
    [2, 1]
    """

    kind = "parquet"

    def __init__(self, path: PathLike | Sequence[PathLike], *, uri: str | None = None) -> None:
        super().__init__(path, uri=uri)
        self._metadata = [self._footer(p) for p in self.files]
        first = self._metadata[0].schema.to_arrow_schema()
        self._schema = _without_index(plain_pandas_metadata(first))
        problems: list[str] = []
        # Files whose types differ only in representation (string/large_string, an all-null column)
        # are read and cast to the first file's types.
        self._cast: set[Path] = set()
        for path_, meta in zip(self.files[1:], self._metadata[1:], strict=True):
            schema = _without_index(meta.schema.to_arrow_schema())
            problems += _schema_differences(self._schema, schema, path_, self.files[0])
            if not schema.equals(self._schema, check_metadata=False):
                self._cast.add(path_)
        if problems:
            raise DataSchemaError(problems, what=f"the files of {self.uri} do not share one schema")

    def _open(self, path: Path) -> pq.ParquetFile:
        try:
            # No pre-buffering: it would hold every column chunk of the file in memory at once.
            return pq.ParquetFile(path, pre_buffer=False, buffer_size=_PARQUET_BUFFER_BYTES)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(f"cannot read {path} as Parquet ({first_line(exc)}); is it a Parquet file?") from None

    def _footer(self, path: Path) -> pq.FileMetaData:
        parquet = self._open(path)
        try:
            return parquet.metadata
        finally:
            parquet.close()

    def schema(self) -> pa.Schema:
        """The columns of the first file (all files share them), from the Parquet footer.

        Decimal columns are given as ``float64``, the type their chunks have.
        """
        return decimal_fields_as_floats(self._schema)

    def count_rows(self) -> int:
        """The number of rows, from the files' metadata."""
        return sum(meta.num_rows for meta in self._metadata)

    def iter_batches(self, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """Chunks of exactly ``chunk_rows`` rows across files and row groups, reading only ``columns``."""
        check_chunk_rows(chunk_rows)
        wanted = select_columns(self._schema.names, columns, self.uri)
        return to_frames(rechunk(self._record_batches(chunk_rows, wanted), chunk_rows), self._schema.metadata)

    def iter_tables(self, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """The chunks of :meth:`iter_batches` as Arrow tables (see :meth:`Source.iter_tables`)."""
        check_chunk_rows(chunk_rows)
        wanted = select_columns(self._schema.names, columns, self.uri)
        return arrow_chunks(rechunk(self._record_batches(chunk_rows, wanted), chunk_rows), self._schema.metadata)

    def _record_batches(self, chunk_rows: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
        for path in self.files:
            parquet = self._open(path)
            target = pa.schema([self._schema.field(c) for c in columns]) if path in self._cast else None
            try:
                for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns, use_pandas_metadata=False):
                    yield batch if target is None else batch.select(columns).cast(target)
            except (pa.ArrowException, OSError) as exc:
                raise InvalidInput(f"cannot read {path}: {first_line(exc)}; the file may be damaged") from None
            finally:
                parquet.close()


def _without_index(schema: pa.Schema) -> pa.Schema:
    """Drop the ``__index_level_N__`` columns pandas adds for a non-default index."""
    keep = [f for f in schema if not (f.name.startswith("__index_level_") and f.name.endswith("__"))]
    return pa.schema(keep, metadata=schema.metadata)


def _schema_differences(expected: pa.Schema, actual: pa.Schema, path: Path, first: Path) -> list[str]:
    problems: list[str] = []
    have = {f.name: f.type for f in actual}
    for field in expected:
        if field.name not in have:
            problems.append(f"{path} has no column {field.name!r}, which {first.name} has")
        elif not _same_kind(have[field.name], field.type):
            problems.append(
                f"column {field.name!r} is {type_name(have[field.name])} in {path} "
                f"but {type_name(field.type)} in {first.name}"
            )
    known = set(expected.names)
    problems.extend(
        f"{path} has a column {name!r} that {first.name} does not have" for name in actual.names if name not in known
    )
    return problems


def _same_kind(actual: pa.DataType, expected: pa.DataType) -> bool:
    return bool(
        actual == expected
        or pa.types.is_null(actual)
        or (is_string_like(actual) and is_string_like(expected))
        or (_is_binary(actual) and _is_binary(expected))
    )


def _is_binary(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_large_binary(dtype) or pa.types.is_binary(dtype))


class CsvSource(_FileSource):
    """One CSV file (plain or ``.gz``/``.bz2``/``.zst``), a folder or glob of them, or a list of files.

    Read as a stream of blocks with :func:`pyarrow.csv.open_csv`. Column types are inferred once,
    from the first block of the first file, and applied to every block of every file, so a column has
    the same dtype in every chunk; a later value that does not fit raises a :class:`SchemaError`
    naming the file, column and value (pass ``column_types`` to set a column's type). As with
    :func:`pandas.read_csv`, dates stay strings, empty fields are missing values, and a column empty
    in the first block is read as ``float64``. ``count_rows()`` is ``None``: counting means reading.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tx.csv"
    >>> _ = path.write_text("amount,merchant\\n1.5,a\\n2.0,b\\n3.5,\\n")
    >>> src = CsvSource(path)
    >>> [str(f.type) for f in src.schema()]
    ['double', 'string']
    >>> src.read()["merchant"].tolist()
    ['a', 'b', nan]
    """

    kind = "csv"

    def __init__(
        self,
        path: PathLike | Sequence[PathLike],
        *,
        uri: str | None = None,
        column_types: Mapping[str, str | pa.DataType] | None = None,
        delimiter: str = ",",
        block_size: int = _CSV_BLOCK_BYTES,
    ) -> None:
        super().__init__(path, uri=uri)
        self._parse = pacsv.ParseOptions(delimiter=delimiter)
        self._read = pacsv.ReadOptions(block_size=block_size)
        self._overrides = {name: _arrow_type(name, t) for name, t in (column_types or {}).items()}
        self._schema = self._infer_schema()

    def _infer_schema(self) -> pa.Schema:
        first = self.files[0]
        convert = pacsv.ConvertOptions(strings_can_be_null=True, column_types=self._overrides)
        try:
            with pacsv.open_csv(first, read_options=self._read, parse_options=self._parse,
                                convert_options=convert) as reader:
                inferred = reader.schema
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise _csv_open_error(exc, first) from None
        unknown = [name for name in self._overrides if name not in inferred.names]
        if unknown:
            raise DataSchemaError([f"column_types names {name!r}, which {first} does not have" for name in unknown])
        return pa.schema([pa.field(f.name, _csv_type(f.type)) if f.name not in self._overrides else f
                          for f in inferred])

    def schema(self) -> pa.Schema:
        """The columns and types inferred from the first block of the first file."""
        return self._schema

    def with_text_columns(self, names: Sequence[str]) -> CsvSource:
        """The same files, with the columns ``names`` (those it has) read as text, whatever their values.

        For callers that convert cell by cell, so that a few bad cells do not make a column unreadable.
        """
        present = [name for name in names if name in self._schema.names]
        other = copy.copy(self)
        other._overrides = {**self._overrides, **dict.fromkeys(present, pa.string())}
        other._schema = pa.schema([pa.field(f.name, pa.string()) if f.name in present else f for f in self._schema])
        return other

    def iter_batches(self, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """Chunks of exactly ``chunk_rows`` rows across blocks and files, converting only ``columns``."""
        check_chunk_rows(chunk_rows)
        wanted = select_columns(self._schema.names, columns, self.uri)
        return to_frames(rechunk(self._record_batches(wanted), chunk_rows))

    def iter_tables(self, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """The chunks of :meth:`iter_batches` as Arrow tables (see :meth:`Source.iter_tables`)."""
        check_chunk_rows(chunk_rows)
        wanted = select_columns(self._schema.names, columns, self.uri)
        return arrow_chunks(rechunk(self._record_batches(wanted), chunk_rows))

    def _record_batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        types = {f.name: f.type for f in self._schema}
        convert = pacsv.ConvertOptions(
            column_types=types, include_columns=columns, strings_can_be_null=True, check_utf8=True
        )
        for path in self.files:
            self._check_header(path)
            rows = 0
            try:
                with pacsv.open_csv(path, read_options=self._read, parse_options=self._parse,
                                    convert_options=convert) as reader:
                    for batch in reader:
                        rows += batch.num_rows
                        yield batch
            except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
                raise _csv_error(exc, path, rows, types) from None

    def _check_header(self, path: Path) -> None:
        if path == self.files[0]:
            return
        try:
            with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16),
                                parse_options=self._parse,
                                convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(
                                    self._schema.names, pa.string()))) as reader:
                names = reader.schema.names
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise _csv_open_error(exc, path) from None
        first = self.files[0].name
        problems = [f"{path} has no column {n!r}, which {first} has" for n in self._schema.names if n not in names]
        problems += [f"{path} has a column {n!r} that {first} does not have" for n in names
                     if n not in self._schema.names]
        if problems:
            raise DataSchemaError(problems, what=f"the files of {self.uri} do not share one header")


def _csv_open_error(exc: BaseException, path: Path) -> InvalidInput:
    text = first_line(exc)
    if "CSV parse error" in text:
        return InvalidInput(f"cannot read {path} as CSV: {text}; fix that line (every line needs the header's fields)")
    return InvalidInput(f"cannot read {path} as CSV ({text}); is it a CSV file?")


def _csv_type(inferred: pa.DataType) -> pa.DataType:
    """Match :func:`pandas.read_csv`: dates and times stay strings, all-empty columns are float64."""
    if pa.types.is_null(inferred):
        return pa.float64()
    if pa.types.is_timestamp(inferred) or pa.types.is_date(inferred) or pa.types.is_time(inferred):
        return pa.string()
    return inferred


def _arrow_type(name: str, dtype: str | pa.DataType) -> pa.DataType:
    if isinstance(dtype, pa.DataType):
        return dtype
    aliases = {"str": "string", "float": "float64", "int": "int64", "boolean": "bool"}
    try:
        return pa.type_for_alias(aliases.get(dtype, dtype))
    except (ValueError, KeyError):
        raise InvalidInput(
            f"column_types[{name!r}] = {dtype!r} is not a type; use e.g. 'float64', 'int64', 'string' or 'bool'"
        ) from None


_CSV_COLUMN = re.compile(r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to (\S+): invalid value '(.*)'")


def _csv_error(exc: BaseException, path: Path, rows_before: int, types: dict[str, pa.DataType]) -> Exception:
    text = first_line(exc)
    match = _CSV_COLUMN.search(text)
    if match:
        index, row, target, value = match.groups()
        names = list(types)
        name = names[int(index)] if int(index) < len(names) else f"#{index}"
        where = f"row {int(row) - 2}" if row else f"a row after row {rows_before}"
        return DataSchemaError([
            f"column {name!r} of {path} was read as {target} (the type of its first rows) but {where} "
            f"has {value!r}; open it with CsvSource(path, column_types={{{name!r}: 'string'}}) or "
            "fix that value"
        ])
    return InvalidInput(f"cannot read {path} as CSV after row {rows_before}: {text}")

