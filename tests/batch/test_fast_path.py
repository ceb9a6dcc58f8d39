"""The Arrow fast path of batch scoring: numeric chunks scored straight from Arrow, with the pandas path's output.

Every test compares the fast path with the pandas path (forced by turning the fast path off) on the same
input: scores and rejects must be identical, and chunks with nulls or other types must still be found and
explained row by row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard import batch
from shipyard.batch import chunks
from shipyard.batch.chunks import ChunkPlan, score_arrow, score_chunk
from shipyard.batch.run import load_model
from shipyard.data._arrow import table_to_frame

from .conftest import STAMP, Registry

NAMES = ["f0", "f1", "f2", "n3"]


def numeric_rows(rows: int, seed: int = 0) -> pd.DataFrame:
    """An int64 id, three float64 features, one int64 feature and a string column the model does not use."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tx_id": np.arange(rows, dtype="int64"),
            "f0": rng.standard_normal(rows),
            "f1": rng.standard_normal(rows),
            "f2": rng.standard_normal(rows) * 100,
            "n3": rng.integers(0, 10, rows).astype("int64"),
            "note": pd.array([f"n{i % 5}" for i in range(rows)], dtype="str"),
        }
    )


@pytest.fixture(scope="module")
def numeric(registry: Registry) -> dict[str, Any]:
    """num-logreg and num-forest (columns f0-f2 float64, n3 int64), num-array (a tensor of four float64 values)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    train = numeric_rows(1_000, seed=1)
    X = train[NAMES]
    y = ((X["f0"] + X["f1"] * 0.5 + X["n3"] * 0.1) > 0.4).astype("int64")
    floats = X.astype("float64")
    models = {
        "num-logreg": (LogisticRegression().fit(X, y), X),
        "num-floats": (LogisticRegression().fit(floats, y), floats),
        "num-forest": (RandomForestClassifier(20, max_depth=6, random_state=0).fit(X, y), X),
        "num-array": (LogisticRegression().fit(floats.to_numpy(), y), floats.to_numpy()),
    }
    for name, (model, data) in models.items():
        registry.service.register(model, name, X=data)
    return {name: model for name, (model, _) in models.items()}


def slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn the fast path off: every chunk goes through pandas and the signature's checks."""
    monkeypatch.setattr(chunks, "score_arrow", lambda *args: None)


def plan_and_model(registry: Registry, name: str, table: pa.Table) -> tuple[Any, ChunkPlan]:
    model, _ = load_model(registry.service, registry.service.resolve(name), ())
    plan = ChunkPlan(
        columns=tuple((f.name, f.type) for f in table.schema),
        passthrough=("tx_id", "note"),
        features=tuple(NAMES),
        classes=tuple(model.classes),
        model=name,
        version=1,
        scored_at=datetime(2024, 5, 1, tzinfo=UTC),
    )
    return model, plan


@pytest.mark.parametrize("name", ["num-logreg", "num-floats", "num-forest", "num-array"])
def test_fast_path_output_equals_the_pandas_path_exactly(
    registry: Registry, numeric: dict[str, Any], name: str
) -> None:
    table = pa.Table.from_pandas(numeric_rows(3_000, seed=2), preserve_index=False)
    table = pa.concat_tables([table.slice(0, 1_000), table.slice(1_000)])  # columns of several chunks
    model, plan = plan_and_model(registry, name, table)
    fast = score_arrow(model, plan, 3, 500, table)
    assert fast is not None  # the fast path was taken
    pandas = score_chunk(model, plan, 3, 500, table_to_frame(table))
    assert fast.scores is not None and pandas.scores is not None
    assert fast.scores.equals(pandas.scores)
    assert fast.rejects is not None and pandas.rejects is not None and fast.rejects.equals(pandas.rejects)
    assert (fast.index, fast.first_row, fast.rows) == (pandas.index, pandas.first_row, pandas.rows)
    expected = numeric[name].predict_proba(numeric_rows(3_000, seed=2)[NAMES].to_numpy()
                                           if name == "num-array" else numeric_rows(3_000, seed=2)[NAMES])  # fmt: skip
    assert np.allclose(fast.scores.column("proba_1").to_numpy(), expected[:, 1], rtol=0, atol=1e-12)


def test_an_int64_column_for_a_float64_signature_is_scored_as_before(
    registry: Registry, numeric: dict[str, Any]
) -> None:
    rows = numeric_rows(500, seed=3)
    rows["f2"] = rows["f2"].round().astype("int64")  # the model was trained on float64 f2
    table = pa.Table.from_pandas(rows, preserve_index=False)
    model, plan = plan_and_model(registry, "num-floats", table)
    fast = score_arrow(model, plan, 0, 0, table)
    assert fast is not None
    pandas = score_chunk(model, plan, 0, 0, table_to_frame(table))
    assert fast.scores is not None and pandas.scores is not None and fast.scores.equals(pandas.scores)
    expected = numeric["num-floats"].predict(rows[NAMES].astype("float64"))
    assert np.array_equal(fast.scores.column("prediction").to_numpy(), expected)


def test_columns_that_need_checks_take_the_pandas_path(registry: Registry, numeric: dict[str, Any]) -> None:
    rows = numeric_rows(50, seed=4)
    model, _ = plan_and_model(registry, "num-logreg", pa.Table.from_pandas(rows, preserve_index=False))
    cases = {
        "null float": rows.assign(f1=rows["f1"].where(rows.index != 7)),  # a null in Arrow
        "null int": rows.assign(n3=pd.array(rows["n3"].where(rows.index != 9), dtype="Int64")),
        "float for int": rows.assign(n3=rows["n3"].astype("float64")),
        "bool": rows.assign(f0=rows["f0"] > 0),
        "NaN id": rows,
    }
    for label, case in cases.items():
        table = pa.Table.from_pandas(case, preserve_index=False)  # NaN becomes null
        if label == "NaN id":  # a NaN that is not null: pandas would turn it into a null in the output
            ids = np.where(rows.index == 3, np.nan, rows["tx_id"].astype("float64"))
            table = table.set_column(0, "tx_id", pa.array(ids, pa.float64()))
            assert table.column("tx_id").null_count == 0
        plan = plan_and_model(registry, "num-logreg", table)[1]
        assert score_arrow(model, plan, 0, 0, table) is None, label
        fallback = score_chunk(model, plan, 0, 0, table)  # the pandas path, through score_chunk
        pandas = score_chunk(model, plan, 0, 0, table_to_frame(table))
        assert fallback.scores is not None and pandas.scores is not None
        assert fallback.scores.equals(pandas.scores), label
        assert fallback.rejects is not None and fallback.rejects.equals(pandas.rejects), label


def _job(registry: Registry, data: Path, out: Path, **options: Any) -> batch.BatchResult:
    options.setdefault("chunk_rows", 300)
    return batch.score(
        "num-logreg", data, out, id_column="tx_id", keep="note", scored_at=STAMP,
        service=registry.service, **options,
    )  # fmt: skip


def test_a_null_in_a_numeric_column_still_goes_to_the_rejects_with_its_reason(
    registry: Registry, numeric: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = numeric_rows(1_000, seed=5)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    f1 = table.column("f1").to_pylist()
    n3 = table.column("n3").to_pylist()
    f1[412] = None  # chunk 1: a float column the signature takes as float64
    n3[905] = None  # chunk 3: an int column the signature takes as int64
    table = table.set_column(2, "f1", pa.array(f1, pa.float64())).set_column(4, "n3", pa.array(n3, pa.int64()))
    data = tmp_path / "rows.parquet"
    pq.write_table(table, data, row_group_size=250)

    fast = _job(registry, data, tmp_path / "fast.parquet")
    assert (fast.rows, fast.scored, fast.rejected) == (1_000, 998, 2)
    rejects = pq.read_table(tmp_path / "fast.rejects.parquet").to_pandas()
    assert rejects["row"].tolist() == [412, 905]
    assert rejects["reason"][0] == "column 'f1' row 412 is missing; the model was trained without missing values there"
    assert rejects["reason"][1] == "column 'n3': expected int64, got null (row 905)"

    slow(monkeypatch)
    pandas = _job(registry, data, tmp_path / "slow.parquet")
    assert (pandas.scored, pandas.rejected) == (fast.scored, fast.rejected)
    assert pq.read_table(tmp_path / "fast.parquet").equals(pq.read_table(tmp_path / "slow.parquet"))
    assert pq.read_table(tmp_path / "fast.rejects.parquet").equals(pq.read_table(tmp_path / "slow.rejects.parquet"))

    kept = rows.drop(index=[412, 905])
    scores = pd.read_parquet(tmp_path / "fast.parquet")
    assert scores["tx_id"].tolist() == kept["tx_id"].tolist()
    assert np.array_equal(scores["prediction"], numeric["num-logreg"].predict(kept[NAMES]))


def test_fast_and_pandas_jobs_write_identical_files(
    registry: Registry, numeric: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "rows.parquet"
    numeric_rows(2_000, seed=6).to_parquet(data, index=False, row_group_size=700)
    csv = tmp_path / "rows.csv"
    numeric_rows(700, seed=7).to_csv(csv, index=False)
    _job(registry, data, tmp_path / "fast.parquet")
    _job(registry, csv, tmp_path / "fast-csv.parquet")
    slow(monkeypatch)
    _job(registry, data, tmp_path / "slow.parquet")
    _job(registry, csv, tmp_path / "slow-csv.parquet")
    assert pq.read_table(tmp_path / "fast.parquet").equals(pq.read_table(tmp_path / "slow.parquet"))
    assert pq.read_table(tmp_path / "fast-csv.parquet").equals(pq.read_table(tmp_path / "slow-csv.parquet"))
    assert not (tmp_path / "fast.rejects.parquet").exists()


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_the_output_written_while_scoring_equals_the_merged_parts_byte_for_byte(
    registry: Registry, numeric: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    from shipyard.batch import sinks

    monkeypatch.setattr(sinks, "_MERGE_ROWS", 400)  # row groups of 450, 450 and 98 rows
    data = tmp_path / "rows.parquet"
    rows = numeric_rows(1_000, seed=8)
    rows.loc[[5, 640], "n3"] = None  # two rejected rows: chunks of different sizes
    rows.to_parquet(data, index=False)
    streamed = _job(registry, data, tmp_path / f"streamed.{suffix}", chunk_rows=150)
    monkeypatch.setattr(sinks._Stream, "add", lambda self, index, scores: False)
    merged = _job(registry, data, tmp_path / f"merged.{suffix}", chunk_rows=150)
    assert (streamed.scored, streamed.rejected) == (merged.scored, merged.rejected) == (998, 2)
    assert (tmp_path / f"streamed.{suffix}").read_bytes() == (tmp_path / f"merged.{suffix}").read_bytes()
    if suffix == "parquet":
        assert pq.ParquetFile(tmp_path / "streamed.parquet").metadata.num_row_groups == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
