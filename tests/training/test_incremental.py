"""Incremental training: only new data is read, partial_fit continues the parent, lineage records it all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import shipyard
from shipyard.errors import InvalidInput
from shipyard.training import NoNewData, NotIncremental, partial_fit, train


def test_new_files_only_the_old_ones_are_never_opened(service: shipyard.ModelService, tmp_path: Path, kit: Any) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        kit.transactions(500, start=500 * i).to_parquet(data / f"part-{i}.parquet", index=False)
    first = train(kit.spec(str(data)), promote="production", service=service)
    scaler_seen = int(service.load("fraud:1").raw.named_steps["standardscaler"].n_samples_seen_)
    assert scaler_seen == first.rows

    for i in (2, 3):
        kit.transactions(500, start=500 * i).to_parquet(data / f"part-{i}.parquet", index=False)
    for i in (0, 1):
        kit.spoil(data / f"part-{i}.parquet")  # any attempt to read the history would fail

    result = train(kit.spec(str(data)), incremental=True, from_ref="fraud@production", promote="production",
                   service=service)
    mv = result.version
    files = [str((data / f"part-{i}.parquet").resolve()) for i in range(4)]
    assert (mv.version, mv.parent_version, result.parent.ref if result.parent else None) == (2, 1, "fraud:1")
    assert mv.lineage["files"] == files  # everything consumed so far, for the next run
    assert mv.lineage["new_files"] == files[2:] == list(result.files_read)
    assert mv.lineage["rows"] == 1000
    assert result.rows + result.holdout_rows == 1000
    assert mv.params["training"] == "incremental"
    assert set(mv.metrics) == {"accuracy", "f1", "roc_auc", "log_loss"}

    # Both pipeline steps learnt from the new rows: the scaler's counts and the classifier's steps.
    assert result.report is not None
    assert (result.report.updated, result.report.frozen) == (("standardscaler", "sgdclassifier"), ())
    assert result.report.rows == result.rows
    old, new = service.load("fraud:1").raw, service.load("fraud:2").raw
    assert int(new.named_steps["standardscaler"].n_samples_seen_) == scaler_seen + result.rows
    assert new.named_steps["sgdclassifier"].t_ > old.named_steps["sgdclassifier"].t_
    assert not np.allclose(new.named_steps["sgdclassifier"].coef_, old.named_steps["sgdclassifier"].coef_)

    # The parent was scored again on the same (new) holdout rows, next to the new version.
    (parent,) = result.comparison.baselines
    assert (parent.ref, parent.roles, parent.error) == ("fraud:1", ("parent", "production"), None)
    assert set(parent.metrics) == set(mv.metrics)
    assert result.promotion is not None
    assert result.promotion.moved == (mv.metrics["accuracy"] >= parent.metrics["accuracy"])

    # Nothing new since fraud:2 took everything: a clear error and nothing registered.
    with pytest.raises(NoNewData, match=r"no new files in .* since fraud:2 \(it has consumed all 4\)"):
        train(kit.spec(str(data)), incremental=True, from_ref="fraud:2", service=service)
    assert [v.version for v in service.list_versions("fraud")] == [2, 1]

    kit.transactions(300, start=2000).to_parquet(data / "part-4.parquet", index=False)
    third = train(kit.spec(str(data)), incremental=True, from_ref="fraud:2", service=service)
    assert third.version.lineage["files"] == [*files, str((data / "part-4.parquet").resolve())]
    assert third.version.lineage["rows"] == 300


def test_watermark_on_parquet_files_reads_only_rows_past_the_parents_maximum(
    service: shipyard.ModelService, tmp_path: Path, kit: Any
) -> None:
    spec = kit.spec(str(tmp_path / "tx.parquet"), data={"source": str(tmp_path / "tx.parquet"),
                                                         "incremental": {"watermark": "ts"}},
                    preprocess=[{"class": "sklearn.preprocessing.StandardScaler"},
                                {"class": "sklearn.preprocessing.PolynomialFeatures", "params": {"degree": 2}}])
    kit.transactions(800).to_parquet(tmp_path / "tx.parquet", index=False)
    first = train(spec, service=service)
    assert first.version.lineage["watermark"] == {"column": "ts", "max": "2024-02-03 07:00:00"}  # row 799
    assert "ts" not in first.version.params["features"]

    with pytest.raises(NoNewData, match=r"no rows of .* have ts > 2024-02-03 07:00:00 \(the watermark of fraud:1\)"):
        train(spec, incremental=True, service=service)

    kit.transactions(1200).to_parquet(tmp_path / "tx.parquet", index=False)  # the same file, 400 rows longer
    result = train(spec, incremental=True, service=service)
    assert result.version.lineage["rows"] == 400
    assert result.rows + result.holdout_rows == 400
    assert result.version.lineage["watermark"] == {"column": "ts", "max": "2024-02-19 23:00:00"}  # row 1199
    assert result.version.parent_version == 1
    assert result.frozen_steps == ("polynomialfeatures",)
    assert "left as they were (no partial_fit): polynomialfeatures" in result.notes


@pytest.mark.parametrize("database", ["sqlite", "duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_watermark_on_a_database_filters_in_sql(
    service: shipyard.ModelService, tmp_path: Path, kit: Any, database: str, request: pytest.FixtureRequest
) -> None:
    db_url = {"sqlite": f"sqlite:///{tmp_path / 'tx.db'}",
              "postgres": request.getfixturevalue("postgres_url") if database == "postgres" else ""}.get(database)

    def append(frame: pd.DataFrame) -> None:
        if db_url is not None:
            import sqlalchemy as sa

            engine = sa.create_engine(db_url)
            frame.to_sql("tx", engine, index=False, if_exists="append")
            engine.dispose()
        else:
            import duckdb

            with duckdb.connect(str(tmp_path / "tx.duckdb")) as db:
                db.register("frame", frame)
                exists = db.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'tx'").fetchone()
                db.execute("INSERT INTO tx SELECT * FROM frame" if exists and exists[0] else
                           "CREATE TABLE tx AS SELECT * FROM frame")

    url = f"{db_url}?table=tx" if db_url is not None else f"duckdb:///{tmp_path / 'tx.duckdb'}?table=tx"
    spec = kit.spec(url, data={"source": url, "incremental": {"watermark": "ts"}})
    append(kit.transactions(600))
    first = train(spec, promote="production", service=service)
    assert first.version.lineage["watermark"]["max"] == "2024-01-25 23:00:00"

    append(kit.transactions(300, start=600))
    result = train(spec, incremental=True, from_ref="fraud@production", service=service)
    assert result.version.lineage["rows"] == 300
    assert result.version.lineage["watermark"]["max"] == "2024-02-07 11:00:00"
    assert result.version.lineage["source"] == url
    assert result.version.parent_version == 1


def test_an_estimator_without_partial_fit_is_named_and_nothing_is_registered(
    service: shipyard.ModelService, tmp_path: Path, kit: Any
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    kit.transactions(300).to_parquet(data / "a.parquet", index=False)
    forest = kit.spec(str(data), estimator={"class": "sklearn.ensemble.RandomForestClassifier",
                                            "params": {"n_estimators": 5, "random_state": 0}})
    train(forest, service=service)
    kit.transactions(300, start=300).to_parquet(data / "b.parquet", index=False)
    with pytest.raises(NotIncremental) as caught:
        train(forest, incremental=True, service=service)
    assert str(caught.value).startswith(
        "RandomForestClassifier (the last step of the Pipeline) cannot be trained incrementally (no partial_fit); "
        "train it again with 'shipyard train spec.yaml' or use an estimator such as SGDClassifier"
    )
    assert [v.version for v in service.list_versions("fraud")] == [1]


def test_incremental_needs_a_way_to_find_new_data_and_a_matching_parent(
    service: shipyard.ModelService, tmp_path: Path, kit: Any
) -> None:
    kit.transactions(300).to_parquet(tmp_path / "tx.parquet", index=False)
    spec = kit.spec(str(tmp_path / "tx.parquet"))
    service.register(__import__("sklearn.linear_model").linear_model.SGDClassifier().fit([[0.0], [1.0]], [0, 1]),
                     "fraud")  # registered by hand: no lineage
    with pytest.raises(InvalidInput, match=r"fraud:1 has no record of the files it was trained on"):
        train(spec, incremental=True, service=service)
    with pytest.raises(InvalidInput, match=r"data\.incremental: incremental training needs"):
        train({**spec, "data": {"source": str(tmp_path / "tx.parquet")}}, incremental=True, service=service)
    service.register(__import__("sklearn.linear_model").linear_model.SGDClassifier().fit([[0.0], [1.0]], [0, 1]),
                     "other")
    with pytest.raises(InvalidInput, match="is a version of 'other' but the spec trains 'fraud'"):
        train(spec, incremental=True, from_ref="other:1", service=service)
    with pytest.raises(InvalidInput, match="from_ref only applies to incremental training"):
        train(spec, from_ref="fraud:1", service=service)
    with pytest.raises(InvalidInput, match="force only applies when promoting"):
        train(spec, force=True, service=service)


# ---------------------------------------------------------------------- the pipeline updater on its own
def test_partial_fit_updates_partial_fit_steps_and_freezes_the_others() -> None:
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, PolynomialFeatures, StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = np.where(X[:, 0] + X[:, 1] > 0, "fraud", "ok")
    pipe = make_pipeline(StandardScaler(), PolynomialFeatures(2), MaxAbsScaler(), SGDClassifier(random_state=0))
    pipe.fit(X[:200], y[:200])
    frozen_powers = pipe.named_steps["polynomialfeatures"].powers_.copy()

    only_fraud = y[200:] == "fraud"  # a batch with one class still knows both, from classes_
    report = partial_fit(pipe, X[200:][only_fraud], y[200:][only_fraud])
    assert report.updated == ("standardscaler", "maxabsscaler", "sgdclassifier")
    assert report.frozen == ("polynomialfeatures",)
    assert report.rows == int(only_fraud.sum())
    assert int(pipe.named_steps["standardscaler"].n_samples_seen_) == 200 + report.rows
    np.testing.assert_array_equal(pipe.named_steps["polynomialfeatures"].powers_, frozen_powers)
    assert list(pipe.classes_) == ["fraud", "ok"]

    with pytest.raises(InvalidInput, match=r"labels 'chargeback' that SGDClassifier was not trained with"):
        partial_fit(pipe, X[:3], np.array(["chargeback", "ok", "ok"]))
    assert partial_fit(pipe, X[:0], y[:0]).rows == 0


def test_partial_fit_of_a_bare_regressor_and_of_an_unfitted_classifier_with_classes() -> None:
    from sklearn.linear_model import SGDClassifier, SGDRegressor

    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 3))
    regressor = SGDRegressor(random_state=0).fit(X, X[:, 0])
    report = partial_fit(regressor, X, X[:, 0])
    assert (report.updated, report.frozen, report.rows) == (("sgdregressor",), (), 100)
    fresh = SGDClassifier(random_state=0)
    partial_fit(fresh, X, (X[:, 0] > 0).astype(int), classes=[0, 1])
    assert list(fresh.classes_) == [0, 1]
