"""Missing values: the signature records which columns may be missing, and every surface names the cell.

A model trained without missing values in ``balance`` answers a request with a missing ``balance`` by a 422
naming the column and row (HTTP, in-process through httpx's ASGI transport), a batch job sends such rows to its
rejects file with the column and row, and ``shipyard compare`` counts and names them and compares the rest.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import shipyard
from shipyard.errors import SchemaError
from shipyard.signature import Signature

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
MISSING = "column 'balance' row 3 is missing; the model was trained without missing values there"


def accounts(rows: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "balance": rng.normal(100.0, 30.0, rows).round(2),
            "age": rng.integers(18, 90, rows).astype("float64"),
            "channel": rng.choice(["web", "pos"], rows).astype(object),
        }
    )
    return X, pd.Series((X["balance"] > 100).astype(int), name="churn")


def pipeline() -> Any:
    encode = OneHotEncoder(handle_unknown="ignore")
    return make_pipeline(
        ColumnTransformer([("num", StandardScaler(), ["balance", "age"]), ("cat", encode, ["channel"])]),
        LogisticRegression(),
    )


def test_the_signature_records_which_columns_may_be_missing() -> None:
    X, _ = accounts()
    X.loc[5, "age"] = np.nan
    X.loc[7, "channel"] = None
    signature = Signature.infer(X)
    assert [(c.name, c.nullable) for c in signature.inputs] == [("balance", False), ("age", True), ("channel", True)]
    again = Signature.from_dict(json.loads(json.dumps(signature.to_dict())))
    assert again.inputs == signature.inputs
    rows = X.head(5).to_dict("records")
    rows[3]["balance"] = None
    rows[1]["age"] = None
    with pytest.raises(SchemaError) as caught:
        signature.validate(rows)
    assert caught.value.problems == [MISSING]
    rows[3]["balance"] = float("nan")  # a NaN number (JSON parsers accept the NaN literal) takes the quick path
    with pytest.raises(SchemaError, match=MISSING):
        signature.validate(rows)
    with pytest.raises(SchemaError, match="column 'balance' row 103 is missing"):
        signature.validate(pd.DataFrame(rows), first_row=100)
    # a signature stored before missing values were recorded has no such key: it accepts them as it did
    old = {"inputs": [{"name": c.name, "dtype": c.dtype} for c in signature.inputs], "outputs": []}
    frame = Signature.from_dict(old).validate(rows)
    assert isinstance(frame, pd.DataFrame) and np.isnan(frame["balance"][3])


def predict_over_http(service: shipyard.ModelService, body: dict[str, Any]) -> httpx.Response:
    from shipyard.serving.app import create_app
    from shipyard.serving.settings import ServeSettings

    app = create_app(ServeSettings(refs=["accounts:1", "tolerant:1"]), service, preload=True)

    async def call() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.post("/v1/models/accounts/predict", json=body),
                await client.post("/v1/models/tolerant/predict", json=body),
            ]

    return asyncio.run(call())  # type: ignore[return-value]


def test_a_missing_value_is_a_422_naming_column_and_row(home: Path) -> None:
    service = shipyard.connect()
    X, y = accounts()
    service.register(pipeline().fit(X, y), "accounts", X=X, y=y)
    holey = X.copy()
    holey.loc[::4, "balance"] = np.nan  # trained with missing balances: they are allowed
    tolerant = make_pipeline(
        ColumnTransformer([("num", "passthrough", ["balance", "age"]), ("cat", OneHotEncoder(), ["channel"])]),
        HistGradientBoostingClassifier(max_iter=5),
    )
    service.register(tolerant.fit(holey, y), "tolerant", X=holey, y=y)
    service.store.close()

    rows = X.head(5).to_dict("records")
    rows[3]["balance"] = None
    strict, tolerant = predict_over_http(shipyard.connect(), {"instances": rows})
    assert strict.status_code == 422, strict.text
    error = strict.json()["error"]
    assert error == f"input does not match the model signature: {MISSING}"
    assert tolerant.status_code == 200, tolerant.text
    assert len(tolerant.json()["predictions"]) == 5


def cli(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_USER="tester", COLUMNS="200", NO_COLOR="1")
    return subprocess.run([SHIPYARD, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_batch_rejects_and_compare_name_the_missing_cells(home: Path, tmp_path: Path) -> None:
    service = shipyard.connect()
    X, y = accounts(200)
    service.register(pipeline().fit(X, y), "accounts", X=X, y=y)
    service.register(make_pipeline(ColumnTransformer([("n", StandardScaler(), ["balance", "age"])]),
                                   LogisticRegression(C=0.5)).fit(X, y), "accounts", X=X, y=y)  # fmt: skip
    service.store.close()
    data = X.head(40).copy()
    data.insert(0, "id", np.arange(40) + 500)
    data.loc[[3, 17], "balance"] = np.nan
    data.to_parquet(tmp_path / "rows.parquet")

    batch = cli(home, tmp_path, "batch", "score", "accounts:1", "-i", "rows.parquet", "-o", "out.parquet",
                "--id-column", "id", "--chunk-rows", "16", "--json")  # fmt: skip
    assert batch.returncode == 0, batch.stderr
    assert json.loads(batch.stdout)["rejected"] == 2
    rejects = pd.read_parquet(tmp_path / "out.rejects.parquet")
    assert rejects[["id", "row"]].to_dict("list") == {"id": [503, 517], "row": [3, 17]}
    assert rejects["reason"].tolist() == [MISSING, MISSING.replace("row 3", "row 17")]
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 38

    compare = cli(home, tmp_path, "compare", "accounts:1", "accounts:2", "--data", "rows.parquet",
                  "--min-agreement", "0.5", "--atol", "1")  # fmt: skip
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert f"not scored: row 3: accounts:1: {MISSING}" in compare.stdout
    assert "rows not scored" in compare.stdout and "PASS:" in compare.stdout
    assert "of 38 rows" in compare.stdout and "(2 rows neither model could score left out)" in compare.stdout


def test_compare_counts_rows_one_model_refuses_and_fails_the_verdict(home: Path) -> None:
    from shipyard.evaluation.compare import compare

    service = shipyard.connect()
    X, y = accounts(120)
    strict = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), ["balance", "age"]), ("cat", OneHotEncoder(), ["channel"])]),
        LogisticRegression(),
    )
    service.register(strict.fit(X, y), "accounts", X=X, y=y)  # refuses an unknown channel
    service.register(pipeline().fit(X, y), "accounts", X=X, y=y)  # ignores it
    data = X.head(50).copy()
    data.loc[7, "balance"] = np.nan  # both refuse
    data.loc[31, "channel"] = "phone"  # only version 1 refuses
    result = compare(service, "accounts:1", "accounts:2", data, chunk_rows=40, atol=1.0, min_agreement=0.0)
    assert (result.rows, result.unscored) == (48, 2)
    assert [(r.row, r.reason_a is not None, r.reason_b is not None) for r in result.unscored_rows] == [
        (7, True, True),
        (31, True, False),
    ]
    assert result.unscored_rows[0].reason_b == MISSING.replace("row 3", "row 7")
    assert "phone" in (result.unscored_rows[1].reason_a or "")
    assert result.reasons == ("accounts:1 could not score 1 row that the other model scored",)
    service.store.close()
