"""``shipyard predict``: score a CSV or Parquet file in chunks, with every chunk checked against the signature.

The output is written to a hidden temporary file next to the requested one and renamed into place
only when every row has been scored, so a failure never leaves a half-written output behind. The temporary
file is named after this process (:mod:`shipyard.batch.tempfiles`): it is removed on errors, Ctrl-C and
SIGTERM, and a later run on the same output removes those of runs that were killed outright.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipyard.cli.common import get_service
from shipyard.cli.files import Format, check_readable, count_lines, first_line, reading, table_format
from shipyard.cli.output import err_console, say
from shipyard.errors import InvalidInput, ShipyardError

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.scoring import Model
    from shipyard.signature import Signature

PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
_NUMERIC = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_TEXT = {"string", "category"}
_BOOLEAN_WORDS = {"true": True, "false": False}


def predict(
    ref: Annotated[
        str, typer.Argument(metavar="REF", help="fraud (production alias, else latest), fraud:3 or fraud@staging.")
    ],
    input_path: Annotated[
        Path, typer.Option("--input", "-i", metavar="DATA", help="CSV or Parquet file of rows to score.")
    ],
    output_path: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="OUT", help="Where to write the scores: .csv or .parquet (replaced if present)."
        ),
    ],
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, metavar="ROWS", help="Rows read, checked and scored at a time.")
    ] = 50_000,
    allow_extra: Annotated[
        bool, typer.Option("--allow-extra", help="Ignore input columns the model does not use (default: an error).")
    ] = False,
    keep_columns: Annotated[
        bool, typer.Option("--keep-columns/--no-keep-columns", help="Copy the input columns into the output.")
    ] = True,
    trust_type: Annotated[
        list[str] | None,
        typer.Option(
            "--trust-type",
            metavar="TYPE",
            help="Extra type the stored model may contain, e.g. mylib.Scaler (repeatable).",
        ),
    ] = None,
) -> None:
    """Score a CSV or Parquet file with a registered model.

    The output has the input columns (unless --no-keep-columns), a 'prediction' column and, for
    classifiers, one 'proba_<class>' column per class.
    """
    in_format = check_readable(input_path)
    out_format = table_format(output_path, "output")
    folder = output_path.parent
    if not folder.is_dir():
        raise InvalidInput(f"cannot write {output_path}: the folder {folder} does not exist")
    if output_path.is_dir():
        raise InvalidInput(f"cannot write {output_path}: it is a folder; give a .csv or .parquet file name")
    if output_path.resolve() == input_path.resolve():
        raise InvalidInput("--output is the --input file; write the scores to a new file")

    from shipyard.batch import tempfiles  # here: the package imports pyarrow, too slow for every CLI start

    tempfiles.remove_on_signals()
    tempfiles.sweep(output_path)
    model = get_service().load(ref, trusted_types=tuple(trust_type or ()))
    started = time.perf_counter()
    rows = _score_file(
        model,
        input_path,
        in_format,
        output_path,
        out_format,
        chunk_rows=chunk_rows,
        allow_extra=allow_extra,
        keep_columns=keep_columns,
    )
    seconds = time.perf_counter() - started
    rate = rows / seconds if seconds > 0 else float(rows)
    say(f"Scored {rows:,} rows with {model.info.ref} in {seconds:.2f} s ({rate:,.0f} rows/s) -> {output_path}")


# ---------------------------------------------------------------------- the scoring loop
def _score_file(
    model: Model,
    input_path: Path,
    in_format: Format,
    output_path: Path,
    out_format: Format,
    *,
    chunk_rows: int,
    allow_extra: bool,
    keep_columns: bool,
) -> int:
    """Score ``input_path`` chunk by chunk into ``output_path``; return the number of rows scored."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    total = _estimate_rows(input_path, in_format)
    console = err_console()
    progress = Progress(
        SpinnerColumn(),
        TextColumn(f"Scoring with {model.info.ref}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    classes = model.classes if model.has_predict_proba else None
    writer = _AtomicWriter(output_path, out_format)
    scored = 0
    try:
        with progress:
            task = progress.add_task("score", total=total)
            for chunk in _read_chunks(input_path, in_format, chunk_rows, model.signature):
                frame = _score_chunk(
                    model, chunk, offset=scored, classes=classes, allow_extra=allow_extra, keep_columns=keep_columns
                )
                writer.write(frame)
                scored += len(chunk)
                progress.update(task, completed=scored, total=max(total, scored))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return scored


def _score_chunk(
    model: Model,
    chunk: pd.DataFrame,
    *,
    offset: int,
    classes: list[Any] | None,
    allow_extra: bool,
    keep_columns: bool,
) -> pd.DataFrame:
    """Validate one chunk against the signature, score it, and build its output rows."""
    import numpy as np
    import pandas as pd

    chunk = chunk.reset_index(drop=True)
    features = model.prepare(chunk, allow_extra=allow_extra, first_row=offset)

    scores: dict[str, Any] = {}
    n = len(chunk)
    predictions = model.loaded.predict(features) if n else np.empty(0, dtype=object)
    predictions = np.asarray(predictions)
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions.ravel()
    if predictions.ndim == 2:
        for i in range(predictions.shape[1]):
            scores[f"{PREDICTION}_{i}"] = predictions[:, i]
    else:
        scores[PREDICTION] = predictions
    if classes is not None:
        proba = model.loaded.predict_proba(features) if n else np.empty((0, len(classes)), dtype="float64")
        for i, label in enumerate(classes):
            scores[f"{PROBA_PREFIX}{label}"] = np.asarray(proba)[:, i]

    if not keep_columns:
        return pd.DataFrame(scores, index=pd.RangeIndex(n))
    clash = [name for name in scores if name in set(map(str, chunk.columns))]
    if clash:
        raise InvalidInput(
            f"the input already has a column named {clash[0]!r}; rename it, or pass --no-keep-columns "
            "to write only the scores"
        )
    out = chunk.copy()
    if isinstance(features, pd.DataFrame) and features is not chunk:
        for name in features.columns:  # the checked, typed values, so every chunk has the same column types
            out[name] = features[name].to_numpy()
    for name, values in scores.items():
        out[name] = values
    return out


def _estimate_rows(path: Path, fmt: Format) -> int:
    """Rows in the input for the progress bar: exact for Parquet, newline count for CSV."""
    with reading(path, fmt):
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        return max(count_lines(path) - 1, 0)


def _read_chunks(path: Path, fmt: Format, chunk_rows: int, signature: Signature | None) -> Iterator[pd.DataFrame]:
    """Yield the input ``chunk_rows`` rows at a time; read errors become one-line ``InvalidInput``."""
    with reading(path, fmt):
        if fmt == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            if parquet.metadata.num_rows == 0:
                yield parquet.schema_arrow.empty_table().to_pandas()
                return
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
            return

        import pandas as pd

        text_columns = _text_columns(signature)
        header = pd.read_csv(path, nrows=0).columns
        dtypes = {str(c): str for c in header if str(c) in text_columns}
        with pd.read_csv(path, chunksize=chunk_rows, dtype=dtypes) as reader:
            for chunk in reader:
                yield _parse_text_columns(chunk, signature)


def _text_columns(signature: Signature | None) -> set[str]:
    if signature is None:
        return set()
    return {c.name for c in signature.inputs if c.dtype in _TEXT}


def _parse_text_columns(frame: pd.DataFrame, signature: Signature | None) -> pd.DataFrame:
    """Give numeric and boolean columns that CSV left as text their values, keeping unparseable ones.

    A CSV column with one bad value is read as all text; parsing the good values back lets the signature
    name exactly the bad value and its row instead of the first row of the column.
    """
    import pandas as pd

    if signature is None:
        return frame
    for spec in signature.inputs:
        if spec.name not in frame.columns:
            continue
        column = frame[spec.name]
        if not (pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype)):
            continue
        if spec.dtype in _NUMERIC:
            parsed = pd.to_numeric(column, errors="coerce")
        elif spec.dtype == "bool":
            parsed = column.map(_parse_bool)
        else:
            continue
        bad = parsed.isna() & column.notna()
        if not bad.any():
            frame[spec.name] = parsed
        else:
            mixed = parsed.astype(object)
            mixed[bad] = column[bad]
            frame[spec.name] = mixed
    return frame


def _parse_bool(value: Any) -> Any:
    """``True``/``False`` (any case) as booleans; anything else as ``None``.

    >>> _parse_bool("TRUE"), _parse_bool("false"), _parse_bool("maybe")
    (True, False, None)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _BOOLEAN_WORDS.get(value.strip().lower())
    return None


# ---------------------------------------------------------------------- writing
class _AtomicWriter:
    """Writes chunks to a temporary file beside ``path`` and renames it to ``path`` on :meth:`commit`."""

    def __init__(self, path: Path, fmt: Format) -> None:
        self.path = path
        self.fmt = fmt
        from shipyard.batch import tempfiles

        self.tmp = tempfiles.temp_path(path)
        try:  # private until complete (as mkstemp made it): the mode of a usual new file is given at commit
            os.close(os.open(self.tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            tempfiles.release(self.tmp)
            raise ShipyardError(f"cannot write {path}: {exc.strerror or first_line(exc)}") from None
        self._csv: Any = None
        self._parquet: Any = None
        self._schema: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        """Append one chunk of output rows."""
        self._guard(lambda: self._write(frame))

    def _write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "csv":
            if self._csv is None:
                self._csv = self.tmp.open("w", newline="", encoding="utf-8")
                frame.to_csv(self._csv, index=False)
            else:
                frame.to_csv(self._csv, index=False, header=False)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            later = "" if self._schema is None else "a later chunk has other column types than the first; "
            raise InvalidInput(
                f"cannot write the scores as Parquet: {later}{first_line(exc)}; "
                "write CSV instead" + (", or pass a larger --chunk-rows" if later else "")
            ) from None
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self.tmp, self._schema)
        self._parquet.write_table(table)

    def commit(self) -> None:
        """Finish the file and move it into place."""
        if self._csv is None and self._parquet is None:  # no chunk at all: still write a valid, empty file
            import pandas as pd

            self.write(pd.DataFrame({PREDICTION: []}))
        self._guard(self._close)
        self._guard(lambda: self.tmp.chmod(0o666 & ~_umask()))
        self._guard(lambda: os.replace(self.tmp, self.path))
        from shipyard.batch import tempfiles

        tempfiles.release(self.tmp)

    def abort(self) -> None:
        """Drop the temporary file; the output path is left as it was."""
        with contextlib.suppress(Exception):
            self._close()
        from shipyard.batch import tempfiles

        tempfiles.discard(self.tmp)

    def _close(self) -> None:
        if self._csv is not None:
            self._csv.close()
        if self._parquet is not None:
            self._parquet.close()

    def _guard(self, action: Callable[[], object]) -> None:
        try:
            action()
        except OSError as exc:
            raise ShipyardError(f"cannot write {self.path}: {exc.strerror or first_line(exc)}") from None


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
