""":func:`score`: a registered model over a table of any size, in chunks, into a file or a SQL table.

One job reads its input (any :mod:`shipyard.data` source: CSV, Parquet, SQL, DuckDB, a DataFrame) in
chunks of ``chunk_rows`` rows with deterministic boundaries, scores each chunk on an engine
(:mod:`shipyard.batch.engines`), and hands the results in chunk order to a sink
(:mod:`shipyard.batch.sinks`) that makes each finished chunk durable and publishes the output at the
end, all at once. Before the first chunk, the input's columns are checked against the model's
signature, and the id and kept columns against the input, so a job that cannot succeed fails at once.

``seconds`` and ``rows_per_second`` in the result cover reading, scoring and writing (from the first
chunk read to the published output), not loading the model or starting a Dask cluster.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from shipyard.batch import tempfiles
from shipyard.batch.chunks import (
    MODEL,
    MODEL_VERSION,
    PREDICTION,
    PROBA_PREFIX,
    ROW,
    SCORED_AT,
    ChunkPlan,
    column_types,
)
from shipyard.batch.engines import ENGINES, DaskEngine, Engine, EngineName, LocalEngine, ModelPayload, Task
from shipyard.batch.job import JobSpec
from shipyard.batch.progress import Reporter
from shipyard.batch.sinks import (
    IF_EXISTS,
    FileTarget,
    IfExists,
    SqlTarget,
    check_writable,
    default_rejects,
    open_sink,
    parse_output,
)
from shipyard.errors import InvalidInput, PredictionFailed, SchemaError

if TYPE_CHECKING:
    from rich.console import Console

    from shipyard.data import Source
    from shipyard.registry import ModelVersion
    from shipyard.scoring import Model
    from shipyard.service import ModelService
    from shipyard.types import ModelRef

DEFAULT_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class BatchResult:
    """What a batch job did.

    ``rows`` counts every input row (scored plus rejected, including chunks finished by an earlier,
    interrupted run that this one resumed); ``rows_per_second`` counts the rows this run processed.
    """

    job_id: str
    model: str
    engine: str
    output: str
    rows: int
    scored: int
    rejected: int
    rejects: str | None
    chunks: int
    resumed_chunks: int
    seconds: float
    rows_per_second: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def score(
    ref: str | ModelRef,
    input: Any,
    output: str | os.PathLike[str],
    *,
    id_column: str | None = None,
    keep: Sequence[str] | str = (),
    columns: Sequence[str] | str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    engine: EngineName = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    strict: bool = False,
    rejects: str | os.PathLike[str] | None = None,
    if_exists: IfExists = "fail",
    scored_at: datetime | None = None,
    trusted_types: Sequence[str] = (),
    progress: bool | Console = False,
    service: ModelService | None = None,
) -> BatchResult:
    """Score ``input`` with the model ``ref`` points to and write the scores to ``output``.

    ``input`` is anything :func:`shipyard.data.open_source` opens (a path, folder, glob, database URL,
    DataFrame) or a :class:`~shipyard.data.Source`. ``output`` is a ``.parquet``/``.csv`` path or a
    database URL with ``?table=NAME`` (``if_exists``: ``fail``, ``append`` or ``replace``). The output
    has ``id_column`` and the ``keep`` columns, ``prediction``, ``proba_<class>`` per class, ``model``,
    ``model_version`` and ``scored_at`` (``scored_at`` or the job's start, the same for every row).
    Without ``id_column`` the output starts with ``row``, the 0-based input row number, to join back on.

    Rows that do not fit the signature go to ``rejects`` (default ``<output stem>.rejects.parquet``
    beside a file output; ``<database>.<table>.rejects.parquet`` for a SQL output, beside a SQLite
    database file, else in the working folder; a SQL job that neither replaces its table nor resumes
    refuses to overwrite an existing rejects file) with a ``reason`` and their 0-based ``row`` number,
    or, with ``strict``, stop the job with nothing published. ``resume`` continues an interrupted run of
    the same job (same model version, input, output and options), skipping its finished chunks.
    ``engine="dask"`` scores on a new ``LocalCluster`` or the cluster at ``scheduler``; ``workers`` is
    the number of threads (local) or worker processes (new cluster), by default one per core; a script
    that starts a cluster this way must call :func:`score` under ``if __name__ == "__main__":``, as the
    worker processes import it.
    ``progress`` shows a bar on stderr.
    ``columns`` names the feature columns, in training order, for a model trained on an array (default:
    the numeric columns other than ``id_column``).

    >>> import shipyard, tempfile, pathlib, pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> service = shipyard.connect(shipyard.Settings(home=folder / "home"))
    >>> X = pd.DataFrame({"amount": [1.0, 5.0, 20.0, 90.0], "items": [1, 2, 3, 4]})
    >>> _ = service.register(LogisticRegression().fit(X, [0, 0, 1, 1]), "fraud", X=X)
    >>> rows = X.assign(tx_id=["a", "b", "c", "d"])
    >>> result = score("fraud", rows, folder / "scores.parquet", id_column="tx_id", chunk_rows=3, service=service)
    >>> result.rows, result.chunks, result.rejected
    (4, 2, 0)
    >>> scores = pd.read_parquet(folder / "scores.parquet")
    >>> list(scores.columns)
    ['tx_id', 'prediction', 'proba_0', 'proba_1', 'model', 'model_version', 'scored_at']
    >>> scores["prediction"].tolist()
    [0, 0, 1, 1]
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidInput(f"chunk_rows must be a positive whole number, got {chunk_rows!r}")
    if engine not in ENGINES:
        raise InvalidInput(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if scheduler is not None and engine != "dask":
        raise InvalidInput("a scheduler address needs the dask engine (CLI: --engine dask)")
    if if_exists not in IF_EXISTS:
        raise InvalidInput(f"unknown if_exists {if_exists!r}; use one of {', '.join(IF_EXISTS)}")
    if workers is not None and workers < 1:
        raise InvalidInput(f"workers must be at least 1, got {workers}")
    keep = _columns_list(keep)
    features = _columns_list(columns) if columns else None

    target = parse_output(output)
    check_writable(target)
    rejects_target = parse_output(rejects, "rejects file") if rejects is not None else default_rejects(target)
    if not isinstance(rejects_target, FileTarget):
        raise InvalidInput("the rejects file must be a .parquet or .csv path, not a database URL")
    check_writable(rejects_target, "rejects file")
    if isinstance(target, FileTarget) and rejects_target.path == target.path:
        raise InvalidInput("the rejects file is the output file; give it another name")
    if isinstance(target, SqlTarget) and if_exists != "replace" and not resume and rejects_target.path.exists():
        raise InvalidInput(
            f"the rejects file {rejects_target.path} holds an earlier job's rejected rows; move it away or "
            "name another one with rejects= (CLI: --rejects PATH)"
        )
    for written in (target, rejects_target):  # temporary files of runs that were killed (kill -9, OOM)
        if isinstance(written, FileTarget):
            tempfiles.sweep(written.path)

    source = open_input(input)
    _check_not_input(source, target)
    _check_columns(source, id_column, keep)
    if service is None:
        import shipyard

        service = shipyard.connect()
    info = service.resolve(ref)
    runner = _engine(engine, scheduler, workers)  # a new cluster starts its workers while the model loads
    try:
        model, payload = load_model(service, info, trusted_types)
        source, parsed = _text_columns(source, model)
        plan = _plan(model, source, id_column, keep, strict, scored_at or datetime.now(UTC), features, parsed)
    except BaseException:
        runner.close()
        raise

    spec = JobSpec(
        model=model.name,
        version=model.version,
        sha256=model.info.sha256,
        input=source.uri,
        fingerprint=source.fingerprint(),
        output=target.uri,
        rejects=str(rejects_target.path),
        chunk_rows=chunk_rows,
        id_column=id_column,
        keep=tuple(keep),
        columns=tuple(features or ()),
        strict=strict,
        if_exists=None if isinstance(target, FileTarget) else if_exists,
        scored_at=None if scored_at is None else _utc(scored_at).isoformat(),
    )
    job_id = spec.job_id
    reporter = Reporter(_console(progress), f"Scoring with {model.info.ref}")
    with runner, reporter:
        sink = open_sink(target, job_id, rejects_target, if_exists)
        try:
            previous = sink.staging.scored_at() if resume else None
            done: dict[int, tuple[int, int]] = {}
            if previous is not None:
                done = sink.done()
                plan = _replace_scored_at(plan, previous)
                reporter.note(f"Resuming job {job_id}: {len(done):,} chunks already done")
            else:
                if resume:
                    reporter.note(f"Nothing to resume for job {job_id}; scoring from the first chunk")
                sink.start(spec, plan.scored_at)
            counts = _Counts(done)
            runner.load(payload)
            loop_started = time.perf_counter()
            reporter.start(source.count_rows(), counts.rows)
            tasks = counts.tasks(source, chunk_rows, [name for name, _ in plan.columns])
            for result in runner.run(model, payload, plan, tasks):
                if result.error is not None:
                    sink.discard()
                    if result.error_kind == "prediction":
                        raise PredictionFailed(result.error)
                    raise SchemaError([result.error])
                sink.write(result)
                counts.add(result.rows, result.rows - result.rejected, result.rejected)
                reporter.advance(result.rows)
                # No release_unused() here: giving freed pages back to the OS after every chunk made every
                # chunk fault them in again, which took more time than reading the chunk (and the peak RSS
                # does not creep without it: +4% from 1 M to 10 M rows in bench/batch.py).
            sink.flush()
            rejected_rows = sink.staging.publish_rejects(counts.chunks, rejects_target)
            sink.publish(counts.chunks, plan.empty_scores())
            sink.staging.remove()
            seconds = time.perf_counter() - loop_started
        finally:
            sink.close()
    fresh = counts.rows - counts.resumed_rows
    return BatchResult(
        job_id=job_id,
        model=model.info.ref,
        engine=runner.name,
        output=target.label,
        rows=counts.rows,
        scored=counts.scored,
        rejected=rejected_rows,
        rejects=str(rejects_target.path) if rejected_rows else None,
        chunks=counts.chunks,
        resumed_chunks=len(done),
        seconds=seconds,
        rows_per_second=fresh / seconds if seconds > 0 else float(fresh),
    )


class _Counts:
    """Rows and chunks seen so far, resumed ones included."""

    def __init__(self, done: dict[int, tuple[int, int]]) -> None:
        self.done = done
        self.scored = sum(s for s, _ in done.values())
        self.rejected = sum(r for _, r in done.values())
        self.resumed_rows = self.scored + self.rejected
        self.rows = self.resumed_rows
        self.chunks = 0

    def tasks(self, source: Source, chunk_rows: int, columns: list[str]) -> Iterator[Task]:
        """The chunks still to score; counts every chunk read."""
        first = 0
        chunks = source.iter_tables(chunk_rows, columns)  # Arrow where the source reads Arrow: no pandas here
        for index, frame in enumerate(chunks if chunks is not None else source.iter_batches(chunk_rows, columns)):
            self.chunks = index + 1
            if index not in self.done:
                yield Task(index, first, frame)
            first += len(frame)

    def add(self, rows: int, scored: int, rejected: int) -> None:
        self.rows += rows
        self.scored += scored
        self.rejected += rejected


# ---------------------------------------------------------------------- preparing a job
def open_input(data: Any) -> Source:
    """``data`` if it is a :class:`~shipyard.data.Source`, else :func:`shipyard.data.open_source` of it."""
    from shipyard.data import Source, open_source

    if isinstance(data, Source):
        return data
    return open_source(data)


def load_model(service: ModelService, info: ModelVersion, trusted_types: Sequence[str]) -> tuple[Model, ModelPayload]:
    """Read and verify a version's artifact once, and load it; the payload carries the artifact to workers."""
    from shipyard.scoring import Model

    data = service.artifacts.read(info)
    trusted = (*service.trusted_types, *trusted_types)
    loaded = service.flavors.get(info.flavor).load(data, info.flavor_meta, trusted_types=trusted)
    return Model(info, loaded), ModelPayload(info, data, tuple(trusted))


def _plan(
    model: Model,
    source: Source,
    id_column: str | None,
    keep: list[str],
    strict: bool,
    scored_at: datetime,
    columns: list[str] | None = None,
    parsed: tuple[tuple[str, str], ...] = (),
) -> ChunkPlan:
    """Check the columns a job needs against its input and model; decide what to read and copy."""
    schema = source.schema()
    names = list(schema.names)
    passthrough = list(dict.fromkeys([*([id_column] if id_column else []), *keep]))
    features = _features(source, model, id_column, columns, [name for name, _ in parsed])
    classes = tuple(model.classes) if model.has_predict_proba and model.classes is not None else None
    reserved = {PREDICTION, MODEL, MODEL_VERSION, SCORED_AT, *(f"{PROBA_PREFIX}{c}" for c in classes or ())}
    if id_column is None:
        reserved.add(ROW)
    clash = [c for c in passthrough if c in reserved]
    if clash:
        hint = " (without --id-column the output numbers the rows in 'row')" if clash[0] == ROW else ""
        raise InvalidInput(
            f"the input column {clash[0]!r} has the name of an output column{hint}; rename it or leave it out of "
            "the id and kept columns"
        )
    wanted = set(features) | set(passthrough)
    return ChunkPlan(
        columns=column_types(schema, [n for n in names if n in wanted]),
        passthrough=tuple(passthrough),
        features=tuple(features),
        classes=classes,
        model=model.name,
        version=model.version,
        scored_at=_utc(scored_at),
        strict=strict,
        row_numbers=id_column is None,
        parsed=parsed,
    )


def _check_columns(source: Source, id_column: str | None, keep: list[str]) -> None:
    names = source.column_names
    for what, column in [("id column", id_column), *(("keep column", c) for c in keep)]:
        if column is not None and column not in names:
            raise InvalidInput(f"{what} {column!r} is not in {source.uri}; its columns are: {', '.join(names)}")


def _text_columns(source: Source, model: Model) -> tuple[Source, tuple[tuple[str, str], ...]]:
    """A CSV source with the model's numeric and boolean columns read as text, and those columns' dtypes.

    A CSV has no types: a few bad cells (text in a float column) would make a column unreadable, or
    fail the job when a later block has them. Read as text and parsed cell by cell in each chunk, the
    rows whose cells do not convert are rejected with the column and value, and the rest are scored.
    """
    from shipyard.data import CsvSource

    signature = model.signature
    if not isinstance(source, CsvSource) or signature is None or signature.tensor is not None:
        return source, ()
    names = set(source.column_names)
    parsed = tuple(
        (spec.name, spec.dtype) for spec in signature.inputs if spec.name in names and spec.dtype in _PARSED_DTYPES
    )
    if not parsed:
        return source, ()
    return source.with_text_columns([name for name, _ in parsed]), parsed


_PARSED_DTYPES = frozenset(
    {"float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"}
)


def _features(
    source: Source, model: Model, id_column: str | None, columns: list[str] | None, text_columns: list[str]
) -> list[str]:
    """The input columns the model takes, in its order, checked against the input's schema.

    A model with named inputs takes its signature's columns. A model trained on an array takes
    ``columns``, by default the input's numeric columns other than the id column; a model registered
    without a signature takes every column but the id column.
    """
    from shipyard.data import check_schema

    signature = model.signature
    if signature is None:
        return [n for n in source.column_names if n != id_column]
    if signature.tensor is None:
        if columns:
            raise InvalidInput(
                f"{model.info.ref} names its input columns ({', '.join(signature.column_names)}); "
                "columns= (CLI: --columns) is only for models trained on arrays"
            )
        return check_schema(source, signature, text_columns=text_columns)
    if not columns:
        columns = [f.name for f in source.schema() if f.name != id_column and _numeric(f.type)]
        width = signature.tensor.shape[-1] if len(signature.tensor.shape) == 2 else None
        if width is not None and len(columns) != width:
            raise SchemaError(
                [
                    f"the model takes rows of {width} values but {source.uri} has {len(columns)} numeric columns "
                    f"besides the id column ({', '.join(columns) or 'none'}); name the {width} feature columns in "
                    "training order with columns=[...] (CLI: --columns a,b,c)"
                ]
            )
    return check_schema(source, signature, columns=columns)


def _numeric(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype))


def _check_not_input(source: Source, target: FileTarget | SqlTarget) -> None:
    if not isinstance(target, FileTarget):
        return
    output = target.path.resolve()
    if any(Path(f).resolve() == output for f in getattr(source, "files", [])):
        raise InvalidInput("the output is the input file; write the scores to a new file")


def _engine(name: EngineName, scheduler: str | None, workers: int | None) -> Engine:
    if name == "dask":
        return DaskEngine(scheduler=scheduler, workers=workers)
    return LocalEngine(workers=workers)


def _columns_list(keep: Sequence[str] | str) -> list[str]:
    """``keep`` as a list: a comma-separated string or a sequence of names.

    >>> _columns_list("a, b,a"), _columns_list(["x"])
    (['a', 'b'], ['x'])
    """
    names = keep.split(",") if isinstance(keep, str) else list(keep)
    return list(dict.fromkeys(n.strip() for n in names if n.strip()))


def _utc(moment: datetime) -> datetime:
    """An aware UTC time, to the microsecond (what Parquet and SQL keep); naive times are taken as UTC."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment


def _replace_scored_at(plan: ChunkPlan, scored_at: datetime) -> ChunkPlan:
    from dataclasses import replace

    return replace(plan, scored_at=_utc(scored_at))


def _console(progress: bool | Console) -> Console | None:
    if progress is False:
        return None
    if progress is True:
        from rich.console import Console

        return Console(stderr=True, highlight=False)
    return progress


__all__ = ["BatchResult", "score"]
