"""What a new user meets first in ``shipyard batch score`` and ``shipyard predict`` (issue 15, item 16).

Each command runs in this process through Typer's ``CliRunner``, on the session registry of
``conftest.py`` and a few hundred rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from shipyard.cli.app import app

from .conftest import Registry, make_rows


def cli(registry: Registry, *args: str) -> Result:
    """``shipyard ARGS`` in this process, on the session registry."""
    env = {"SHIPYARD_HOME": str(registry.home), "SHIPYARD_USER": "tester", "COLUMNS": "200", "NO_COLOR": "1"}
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_output_without_id_column_keeps_the_row_number(registry: Registry, here: Path) -> None:
    rows = make_rows(300, seed=31)
    rows.to_parquet("tx.parquet")
    done = cli(registry, "batch", "score", "fraud", "-i", "tx.parquet", "-o", "scores.parquet", "--chunk-rows", "128")
    assert done.exit_code == 0, done.output
    scores = pd.read_parquet("scores.parquet")
    assert list(scores.columns[:2]) == ["row", "prediction"]
    assert scores["row"].tolist() == list(range(300))
    keyed = cli(registry, "batch", "score", "fraud", "-i", "tx.parquet", "-o", "keyed.parquet", "--id-column", "tx_id")
    assert keyed.exit_code == 0, keyed.output
    assert list(pd.read_parquet("keyed.parquet").columns[:2]) == ["tx_id", "prediction"]


def _rows_with_missing_items(rows: int, missing: list[int], seed: int) -> pd.DataFrame:
    frame = make_rows(rows, seed=seed)
    items = pd.array(frame["items"], dtype="Int64")
    items[missing] = pd.NA
    return frame.assign(items=items)


def test_sql_rejects_are_named_after_the_target_and_never_overwritten(registry: Registry, here: Path) -> None:
    (here / "db").mkdir()
    _rows_with_missing_items(200, [5], seed=32).to_parquet("first.parquet")
    _rows_with_missing_items(200, [7, 9], seed=33).to_parquet("second.parquet")
    out = f"sqlite:///{here / 'db' / 'risk.db'}?table=scores"
    job = ["batch", "score", "fraud", "-o", out, "--id-column", "tx_id", "--if-exists", "append"]

    first = cli(registry, *job, "-i", "first.parquet")
    assert first.exit_code == 0, first.output
    rejects = here / "db" / "risk.scores.rejects.parquet"
    assert f"-> {rejects}" in " ".join(first.output.split())
    assert not (here / "scores.rejects.parquet").exists()
    assert pd.read_parquet(rejects)["row"].tolist() == [5]

    again = cli(registry, *job, "-i", "second.parquet")
    assert again.exit_code != 0
    assert "holds an earlier job's rejected rows" in str(again.exception)
    assert pd.read_parquet(rejects)["row"].tolist() == [5]  # the first job's rejects are still there
    named = cli(registry, *job, "-i", "second.parquet", "--rejects", "second.rejects.parquet")
    assert named.exit_code == 0, named.output
    assert pd.read_parquet("second.rejects.parquet")["row"].tolist() == [7, 9]


def test_predict_rejects_bad_rows_like_batch_score(registry: Registry, here: Path) -> None:
    rows = _rows_with_missing_items(250, [4, 200], seed=34)
    rows.to_parquet("tx.parquet")
    predicted = cli(registry, "predict", "fraud", "-i", "tx.parquet", "-o", "p.parquet", "--allow-extra")
    batch = ["batch", "score", "fraud", "-i", "tx.parquet", "-o", "b.parquet", "--keep", ",".join(rows.columns)]
    scored = cli(registry, *batch, "--allow-extra")
    assert predicted.exit_code == 0, predicted.output
    assert scored.exit_code == 0, scored.output
    assert "Rejected 2 rows that do not fit the model" in predicted.output
    for name in ("p", "b"):
        rejects = pd.read_parquet(f"{name}.rejects.parquet")
        assert rejects["row"].tolist() == [4, 200]
        assert rejects["reason"].iloc[0].startswith("column 'items': expected int64")
    same = pd.read_parquet("p.parquet").drop(columns="scored_at")
    pd.testing.assert_frame_equal(same, pd.read_parquet("b.parquet").drop(columns="scored_at"))
    assert len(pd.read_parquet("p.parquet")) == 248


def test_csv_with_a_few_bad_cells_rejects_only_their_rows(registry: Registry, here: Path) -> None:
    rows = make_rows(300, seed=35)
    text = rows.astype({"amount": object})
    text.loc[0, "amount"] = "oops"  # in the first block: the file's own typing would make the column text
    text.loc[250, "amount"] = "12,5"
    text.to_csv("bad.csv", index=False)
    done = cli(registry, "batch", "score", "fraud", "-i", "bad.csv", "-o", "s.parquet", "--chunk-rows", "100")
    predicted = cli(registry, "predict", "fraud", "-i", "bad.csv", "-o", "p.csv", "--chunk-rows", "100")
    assert done.exit_code == 0, done.output
    assert predicted.exit_code == 0, predicted.output
    scores = pd.read_parquet("s.parquet")
    assert len(scores) == 298 and 0 not in set(scores["row"]) and 250 not in set(scores["row"])
    rejects = pd.read_parquet("s.rejects.parquet")
    assert rejects["row"].tolist() == [0, 250]
    assert rejects["amount"].tolist() == ["oops", "12,5"]
    assert "column 'amount'" in rejects["reason"].iloc[0] and "'oops'" in rejects["reason"].iloc[0]
    kept = pd.read_csv("p.csv")
    assert len(kept) == 298 and kept["amount"].dtype == "float64"
    assert pd.read_parquet("p.rejects.parquet")["row"].tolist() == [0, 250]
