"""``shipyard.batch.score`` in process: every source and sink, rejects, strict mode, atomic output, resume.

Scores are checked against the fitted model called directly in this process, row by row (matched on
the id column), so a chunking or ordering mistake cannot hide.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from shipyard import batch
from shipyard.batch import engines
from shipyard.batch.chunks import score_chunk
from shipyard.errors import Conflict, InvalidInput, ModelNotFound, NotFound, PredictionFailed, SchemaError

from .conftest import FEATURES, STAMP, Registry, expected_scores, make_rows

OUTPUT_COLUMNS = ["tx_id", "note", "prediction", "proba_0", "proba_1", "model", "model_version", "scored_at"]


def run(registry: Registry, data: Any, output: Any, **options: Any) -> batch.BatchResult:
    options.setdefault("scored_at", STAMP)
    options.setdefault("id_column", "tx_id")
    return batch.score(options.pop("ref", "fraud@production"), data, output, service=registry.service, **options)


def check_scores(registry: Registry, scores: pd.DataFrame, rows: pd.DataFrame, model: str = "fraud") -> None:
    """``scores`` has one row per row of ``rows`` (in the same order), equal to the in-process model's."""
    assert len(scores) == len(rows)
    assert scores["tx_id"].tolist() == rows["tx_id"].tolist()
    expected = expected_scores(registry, model, rows)
    assert np.array_equal(scores["prediction"].to_numpy(), expected["prediction"].to_numpy())
    for name in expected.columns[1:]:
        assert np.allclose(scores[name].to_numpy(dtype=float), expected[name].to_numpy(), rtol=1e-12, atol=0)
    assert set(scores["model"]) == {model}
    assert set(scores["model_version"]) == {1}


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------- files
def test_parquet_to_parquet_matches_the_model_in_process(registry: Registry, tmp_path: Path) -> None:
    rows = make_rows(2_345)
    rows.to_parquet(tmp_path / "tx.parquet", row_group_size=1_000)
    result = run(registry, tmp_path / "tx.parquet", tmp_path / "scores.parquet", keep=["note"], chunk_rows=500)

    assert (result.rows, result.scored, result.rejected, result.chunks, result.resumed_chunks) == (
        2_345,
        2_345,
        0,
        5,
        0,
    )
    assert result.model == "fraud:1" and result.engine == "local" and result.rejects is None
    assert result.rows_per_second > 0 and len(result.job_id) == 16
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert list(scores.columns) == OUTPUT_COLUMNS
    check_scores(registry, scores, rows)
    assert scores["note"].tolist() == rows["note"].tolist()
    assert (scores["scored_at"] == pd.Timestamp(STAMP)).all()
    assert listing(tmp_path) == ["scores.parquet", "tx.parquet"]  # no staging folder, no temporary file left


def test_csv_output_regressor_and_default_timestamp(registry: Registry, tmp_path: Path) -> None:
    rows = make_rows(1_100)
    rows.to_csv(tmp_path / "tx.csv", index=False)
    result = run(registry, str(tmp_path / "tx.csv"), tmp_path / "out.csv", ref="price", chunk_rows=400, scored_at=None)
    scores = pd.read_csv(tmp_path / "out.csv")
    assert result.rows == 1_100
    assert list(scores.columns) == ["tx_id", "prediction", "model", "model_version", "scored_at"]
    check_scores(registry, scores, rows, model="price")
    assert scores["scored_at"].nunique() == 1  # one timestamp per job


@pytest.mark.parametrize(
    "kind",
    ["csv", "parquet-folder", "dataframe", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "duckdb"],
)
def test_every_source(registry: Registry, tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    rows = make_rows(1_234, seed=3)
    data: Any
    if kind == "csv":
        rows.to_csv(tmp_path / "tx.csv", index=False)
        data = tmp_path / "tx.csv"
    elif kind == "parquet-folder":
        (tmp_path / "tx").mkdir()
        rows.iloc[:600].to_parquet(tmp_path / "tx" / "part-0.parquet")
        rows.iloc[600:].to_parquet(tmp_path / "tx" / "part-1.parquet")
        data = tmp_path / "tx"
    elif kind == "dataframe":
        data = rows
    elif kind == "duckdb":
        duckdb = pytest.importorskip("duckdb")
        pytest.importorskip("shipyard.data.duck", reason="the DuckDB source has not landed yet")
        with duckdb.connect(str(tmp_path / "tx.duckdb")) as con:
            con.register("frame", rows)
            con.execute("CREATE TABLE tx AS SELECT * FROM frame ORDER BY tx_id")
        data = f"duckdb:///{tmp_path / 'tx.duckdb'}?table=tx"
    else:
        url = f"sqlite:///{tmp_path / 'tx.db'}" if kind == "sqlite" else request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url)
        rows.to_sql("tx", engine, index=False)
        engine.dispose()
        data = f"{url}?table=tx"
    result = run(registry, data, tmp_path / "scores.parquet", keep=["note"], chunk_rows=300)
    assert (result.rows, result.chunks) == (1_234, 5)
    check_scores(registry, pd.read_parquet(tmp_path / "scores.parquet").sort_values("tx_id", ignore_index=True), rows)


# ---------------------------------------------------------------------- SQL sinks
def _read_table(url: str, table: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        return pd.read_sql_table(table, engine).sort_values("tx_id", ignore_index=True)
    finally:
        engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sql_sink_fail_replace_append(
    registry: Registry, tmp_path: Path, database: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'scores.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    rows = make_rows(900, seed=4)
    rows.to_parquet(tmp_path / "tx.parquet")
    target = f"{url}?table=scores"

    first = run(registry, tmp_path / "tx.parquet", target, chunk_rows=250)
    assert first.output.startswith("table scores in ")
    table = _read_table(url, "scores")
    check_scores(registry, table, rows)
    assert (pd.to_datetime(table["scored_at"], utc=True) == pd.Timestamp(STAMP)).all()

    with pytest.raises(Conflict, match=r"table scores in .* already exists; pass if_exists='replace' or 'append'"):
        run(registry, tmp_path / "tx.parquet", target, chunk_rows=250)
    fewer = rows.iloc[:300]
    fewer.to_parquet(tmp_path / "fewer.parquet")
    run(registry, tmp_path / "fewer.parquet", target, chunk_rows=250, if_exists="replace")
    check_scores(registry, _read_table(url, "scores"), fewer)
    run(registry, tmp_path / "fewer.parquet", target, chunk_rows=250, if_exists="append")
    assert len(_read_table(url, "scores")) == 600

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        recorded = conn.execute(
            sa.text("SELECT job_id, count(*), sum(rows) FROM shipyard_batch_chunks GROUP BY job_id")
        ).all()
    engine.dispose()
    assert tables == {"scores", "shipyard_batch_chunks"}  # no staging table left
    assert sorted((n, int(r)) for _, n, r in recorded) == [(2, 300), (2, 300), (4, 900)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------- rejects and strict
def _rows_with_bad_values(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    """2,000 rows in Parquet; rows 3, 700, 701 and 1999 have no ``items``, row 1500 no ``flag``."""
    rows = make_rows(2_000, seed=5)
    items = pd.array(rows["items"], dtype="Int64")
    items[[3, 700, 701, 1999]] = pd.NA
    flag = pd.array(rows["flag"], dtype="boolean")
    flag[1500] = pd.NA
    bad = pa.Table.from_pandas(rows.assign(items=items, flag=flag), preserve_index=False)
    path = tmp_path / "tx.parquet"
    pq.write_table(bad.replace_schema_metadata(None), path)  # as Spark would write it: no pandas dtypes
    return rows, path


def test_rows_that_do_not_fit_go_to_the_rejects_file(registry: Registry, tmp_path: Path) -> None:
    rows, path = _rows_with_bad_values(tmp_path)
    result = run(registry, path, tmp_path / "scores.parquet", keep=["note"], chunk_rows=300)

    bad = [3, 700, 701, 1500, 1999]
    assert (result.rows, result.scored, result.rejected) == (2_000, 1_995, 5)
    assert result.rejects == str(tmp_path / "scores.rejects.parquet")
    check_scores(registry, pd.read_parquet(tmp_path / "scores.parquet"), rows.drop(index=bad))
    rejects = pd.read_parquet(tmp_path / "scores.rejects.parquet")
    assert list(rejects.columns) == ["tx_id", *FEATURES, "note", "reason", "row"]
    assert rejects["row"].tolist() == bad
    assert rejects["tx_id"].tolist() == (np.array(bad) + 1_000).tolist()
    assert rejects["reason"].tolist() == [
        "column 'items': expected int64, got null (row 3)",
        "column 'items': expected int64, got null (row 700)",
        "column 'items': expected int64, got null (row 701)",
        "column 'flag': expected bool, got null (row 1500)",
        "column 'items': expected int64, got null (row 1999)",
    ]
    assert rejects["amount"].tolist() == rows["amount"].iloc[bad].tolist()
    assert listing(tmp_path) == ["scores.parquet", "scores.rejects.parquet", "tx.parquet"]


def test_strict_stops_at_the_first_bad_row_and_publishes_nothing(registry: Registry, tmp_path: Path) -> None:
    _, path = _rows_with_bad_values(tmp_path)
    (tmp_path / "scores.parquet").write_bytes(b"the previous output")
    with pytest.raises(
        SchemaError,
        match=r"^input does not match the model signature: column 'items': expected int64, got null \(row 3\)$",
    ):
        run(registry, path, tmp_path / "scores.parquet", rejects=tmp_path / "bad.csv", chunk_rows=500, strict=True)
    assert (tmp_path / "scores.parquet").read_bytes() == b"the previous output"
    assert listing(tmp_path) == ["scores.parquet", "tx.parquet"]


def test_rows_the_model_cannot_score_are_rejected(registry: Registry, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    train = make_rows(200, seed=6)
    strict_model = Pipeline([("onehot", OneHotEncoder()), ("model", LogisticRegression())])
    strict_model.fit(train[["channel"]], train["flag"])
    registry.service.register(strict_model, "channels", X=train[["channel"]])
    rows = make_rows(50, seed=7)
    rows.loc[[4, 30], "channel"] = "fax"  # a category the encoder never saw: it raises
    result = run(registry, rows, tmp_path / "out.parquet", ref="channels", chunk_rows=20)
    assert (result.scored, result.rejected) == (48, 2)
    rejects = pd.read_parquet(tmp_path / "out.rejects.parquet")
    assert rejects["row"].tolist() == [4, 30]
    assert rejects["reason"].str.startswith("the model could not score this row: Found unknown categories").all()
    assert rejects["reason"].iloc[1].endswith("(row 30)")
    with pytest.raises(PredictionFailed, match=r"could not score this row: .*\(row 4\)"):
        run(registry, rows, tmp_path / "strict.parquet", ref="channels", chunk_rows=20, strict=True)
    assert not (tmp_path / "strict.parquet").exists()


# ---------------------------------------------------------------------- interruption and resume
def _fail_at_chunk(monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    """Make the engine's chunk ``index`` raise, as if the machine failed while scoring it."""

    def failing(model: Any, plan: Any, i: int, first: int, frame: pd.DataFrame) -> Any:
        if i == index:
            raise KeyboardInterrupt("interrupted")
        return score_chunk(model, plan, i, first, frame)

    monkeypatch.setattr(engines, "score_chunk", failing)


def test_an_interrupted_job_leaves_the_old_output_and_resumes_where_it_stopped(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, path = _rows_with_bad_values(tmp_path)
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"old")
    with monkeypatch.context() as patch:
        _fail_at_chunk(patch, 4)
        with pytest.raises(KeyboardInterrupt):
            run(registry, path, out, chunk_rows=150, scored_at=None)
    assert out.read_bytes() == b"old"  # untouched until the job is done
    (staging,) = [p for p in tmp_path.iterdir() if p.name.startswith(".scores.parquet.")]
    assert sorted(p.name for p in staging.iterdir() if p.name.startswith("part-")) == [
        f"part-00000{i}.arrow" for i in range(4)
    ]

    # As after a power cut: chunk 2's part cut short, chunk 0's rejected row (row 3) lost. Both are redone.
    part = staging / "part-000002.arrow"
    part.write_bytes(part.read_bytes()[:100])
    (staging / "rejects-000000.arrow").unlink()

    caplog.set_level(logging.INFO, "shipyard.batch")
    resumed = run(registry, path, out, chunk_rows=150, scored_at=None, resume=True)
    assert "Resuming job" in caplog.text and ": 2 chunks already done" in caplog.text
    assert (resumed.rows, resumed.rejected, resumed.resumed_chunks, resumed.chunks) == (2_000, 5, 2, 14)
    scores = pd.read_parquet(out)
    assert scores["scored_at"].nunique() == 1  # the resumed rows carry the first run's time

    clean = run(registry, path, tmp_path / "clean.parquet", chunk_rows=150, scored_at=scores["scored_at"].iloc[0])
    assert clean.resumed_chunks == 0
    pd.testing.assert_frame_equal(scores, pd.read_parquet(tmp_path / "clean.parquet"), check_exact=True)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "scores.rejects.parquet"), pd.read_parquet(tmp_path / "clean.rejects.parquet")
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_job_stopped_while_chunks_wait_for_the_writer_keeps_every_chunk_scored_before_the_stop(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file sink writes on a background thread: chunks scored before a stop are all stored, each in its
    own part, and a resumed run gives the clean run's files."""
    rows, path = _rows_with_bad_values(tmp_path)
    out = tmp_path / "scores.parquet"
    with monkeypatch.context() as patch:
        _fail_at_chunk(patch, 33)  # 40 chunks of 50 rows; up to eight are in flight when chunk 33 fails
        with pytest.raises(KeyboardInterrupt):
            run(registry, path, out, chunk_rows=50)
    assert not out.exists()
    (staging,) = [p for p in tmp_path.iterdir() if p.name.startswith(".scores.parquet.")]
    parts = sorted(p.name for p in staging.iterdir() if p.name.startswith("part-"))
    assert parts == [f"part-{i:06d}.arrow" for i in range(33)]
    rejected = {3, 700, 701, 1500}  # before chunk 33
    for i in range(33):  # each part holds its own chunk's scored rows, in order
        tx_ids = pa.ipc.open_file(staging / f"part-{i:06d}.arrow").read_all().column("tx_id").to_pylist()
        assert tx_ids == [t for n, t in enumerate(rows["tx_id"]) if 50 * i <= n < 50 * (i + 1) and n not in rejected]
    rejects = sorted(p.name for p in staging.iterdir() if p.name.startswith("rejects-"))
    assert rejects == ["rejects-000000.arrow", "rejects-000014.arrow", "rejects-000030.arrow"]

    resumed = run(registry, path, out, chunk_rows=50, resume=True)
    assert (resumed.resumed_chunks, resumed.chunks, resumed.rejected) == (33, 40, 5)
    clean = run(registry, path, tmp_path / "clean.parquet", chunk_rows=50)
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "clean.parquet"))
    assert pq.read_table(tmp_path / "scores.rejects.parquet").equals(pq.read_table(tmp_path / "clean.rejects.parquet"))
    assert clean.resumed_chunks == 0 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_resume_with_nothing_to_resume_runs_the_whole_job(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "shipyard.batch")
    result = run(registry, make_rows(300), tmp_path / "s.parquet", chunk_rows=100, resume=True)
    assert (result.rows, result.resumed_chunks) == (300, 0)
    assert "Nothing to resume for job" in caplog.text


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_sql_resume_writes_no_chunk_twice(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    rows = make_rows(1_000, seed=8)
    with monkeypatch.context() as patch:
        _fail_at_chunk(patch, 5)
        with pytest.raises(KeyboardInterrupt):
            run(registry, rows, f"{url}?table=scores", chunk_rows=100, if_exists=mode)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert ("scores" in tables) == (mode == "append")  # replace shows no partial table
    result = run(registry, rows, f"{url}?table=scores", chunk_rows=100, if_exists=mode, resume=True)
    assert (result.resumed_chunks, result.rows) == (5, 1_000)
    check_scores(registry, _read_table(url, "scores"), rows)


# ---------------------------------------------------------------------- refusals
ErrorCase = Callable[[Registry, Path], Any]


def _not_writable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        return Path("/proc/scores.parquet")  # root may write anywhere else
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    return folder / "scores.parquet"


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        (lambda r, t: run(r, t / "missing.parquet", t / "s.parquet"), NotFound, "no such file or folder: .*missing"),
        (lambda r, t: run(r, make_rows(5), t / "s.parquet", ref="nope"), ModelNotFound, "model 'nope' is not"),
        (lambda r, t: run(r, make_rows(5), t / "s.parquet", keep=["note", "nope"]), InvalidInput,
         "keep column 'nope' is not in <DataFrame>; its columns are: tx_id, amount"),
        (lambda r, t: run(r, make_rows(5), t / "s.parquet", id_column="id"), InvalidInput, "id column 'id' is not in"),
        (lambda r, t: run(r, make_rows(5), t / "no" / "s.parquet"), InvalidInput, "the folder .*/no does not exist"),
        (lambda r, t: run(r, make_rows(5), _not_writable(t)), InvalidInput, "is not writable"),
        (lambda r, t: run(r, make_rows(5), t / "s.xlsx"), InvalidInput, "cannot tell the format of output s.xlsx"),
        (lambda r, t: run(r, make_rows(5).drop(columns="amount"), t / "s.parquet"), SchemaError, "'amount'"),
        (lambda r, t: run(r, make_rows(5).assign(prediction=1), t / "s.parquet", keep=["prediction"]), InvalidInput,
         "the input column 'prediction' has the name of an output column"),
        (lambda r, t: run(r, make_rows(5), "sqlite:///x.db"), InvalidInput, r"names no table; add \?table=NAME"),
        (lambda r, t: run(r, make_rows(5), t / "s.parquet", scheduler="tcp://x:1"), InvalidInput, "needs the dask"),
        (lambda r, t: run(r, make_rows(5), t / "s.parquet", chunk_rows=0), InvalidInput, "chunk_rows must be"),
    ],
)  # fmt: skip
def test_refusals_say_what_to_fix(
    registry: Registry, tmp_path: Path, case: ErrorCase, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        case(registry, tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_output_cannot_be_the_input(registry: Registry, tmp_path: Path) -> None:
    make_rows(10).to_parquet(tmp_path / "tx.parquet")
    with pytest.raises(InvalidInput, match="the output is the input file"):
        run(registry, tmp_path / "tx.parquet", tmp_path / "tx.parquet")
    assert pq.read_table(tmp_path / "tx.parquet").num_rows == 10


def test_models_trained_on_arrays_and_without_signature(registry: Registry, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    train = make_rows(300, seed=9)
    X = train[["amount", "items"]].to_numpy()
    array_model = LogisticRegression().fit(X, train["flag"])
    registry.service.register(array_model, "arrays", X=X)
    frame_model = LogisticRegression().fit(train[["amount", "items"]], train["flag"])
    registry.service.register(frame_model, "unsigned")  # no X: no signature at all
    rows = make_rows(500, seed=10)[["tx_id", "amount", "items", "note"]]
    expected = array_model.predict(rows[["amount", "items"]].to_numpy())

    # the numeric columns other than the id column are the features
    run(registry, rows, tmp_path / "a.parquet", ref="arrays", chunk_rows=200)
    assert np.array_equal(pd.read_parquet(tmp_path / "a.parquet")["prediction"], expected)
    # or name them, in training order
    run(registry, rows.assign(extra=1.0), tmp_path / "b.parquet", ref="arrays", columns="amount,items")
    assert np.array_equal(pd.read_parquet(tmp_path / "b.parquet")["prediction"], expected)
    with pytest.raises(
        SchemaError,
        match=r"rows of 2 values but <DataFrame> has 3 numeric columns besides the id column \(amount, items, extra\)",
    ):
        run(registry, rows.assign(extra=1.0), tmp_path / "c.parquet", ref="arrays")
    with pytest.raises(InvalidInput, match=r"fraud:1 names its input columns \(amount, items, channel, flag\)"):
        run(registry, make_rows(5), tmp_path / "d.parquet", columns=["amount"])

    run(registry, rows.drop(columns="note"), tmp_path / "e.parquet", ref="unsigned")  # every column but the id
    unsigned = frame_model.predict(rows[["amount", "items"]])
    assert np.array_equal(pd.read_parquet(tmp_path / "e.parquet")["prediction"], unsigned)
