"""One-off training and the promotion guard, through the Python API (``shipyard.training.train``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import shipyard
from shipyard.data import open_source
from shipyard.training import InvalidSpec, train
from shipyard.training.components import import_class


def test_one_off_from_a_parquet_folder_registers_metrics_params_fingerprint_signature_and_files(
    service: shipyard.ModelService, tmp_path: Path, kit: Any
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    kit.transactions(600).to_parquet(data / "part-0.parquet", index=False)
    kit.transactions(600, start=600).to_parquet(data / "part-1.parquet", index=False)
    result = train(kit.spec(str(data)), promote="production", service=service)

    mv = result.version
    assert (mv.ref, mv.parent_version, result.mode) == ("fraud:1", None, "one-off")
    assert set(mv.metrics) == {"accuracy", "f1", "roc_auc", "log_loss"}
    assert mv.metrics == result.metrics
    assert mv.metrics["accuracy"] > 0.8
    assert result.rows + result.holdout_rows == 1200
    assert 200 < result.holdout_rows < 400  # a 25 % seeded holdout
    assert mv.params["estimator"] == "SGDClassifier"
    assert mv.params["estimator_params"]["loss"] == "log_loss"
    assert (mv.params["preprocess"], mv.params["features"], mv.params["training"]) == (
        ["StandardScaler"], kit.FEATURES, "one-off")
    assert mv.lineage["fingerprint"] == open_source(str(data)).fingerprint()
    assert mv.lineage["files"] == [str((data / f"part-{i}.parquet").resolve()) for i in (0, 1)]
    assert mv.lineage["rows"] == 1200
    assert mv.signature is not None
    assert [c["name"] for c in mv.signature["inputs"]] == kit.FEATURES
    assert mv.input_example is not None
    assert result.comparison.baselines == ()  # the first version has nothing to compare with
    assert result.promotion is not None
    assert (result.promotion.moved, result.promotion.from_version) == (True, None)
    assert service.get_model("fraud").aliases == {"production": 1}
    assert service.load("fraud@production").predict(kit.transactions(5, start=2000)[kit.FEATURES]).shape == (5,)


def test_one_off_from_csv_with_a_regressor_and_lower_is_better_metrics(
    service: shipyard.ModelService, tmp_path: Path, kit: Any
) -> None:
    frame = kit.transactions(800)
    frame["amount_next"] = frame["amount"] * 3 + frame["hour"]
    frame.to_csv(tmp_path / "tx.csv", index=False)
    spec = kit.write_spec(tmp_path, kit.spec(
        "tx.csv", name="amounts", target="amount_next", data={"source": "tx.csv"}, preprocess=[],
        estimator={"class": "sklearn.linear_model.Ridge"}, metrics=["r2", "mean_squared_error"],
    ))  # a relative source is read from the spec's folder
    first = train(spec, service=service)
    assert first.version.metrics["r2"] > 0.99
    assert first.version.lineage["fingerprint"] == open_source(tmp_path / "tx.csv").fingerprint()
    second = train(spec, service=service)
    (row_r2, row_mse) = second.comparison.rows()
    assert (row_r2.greater_is_better, row_mse.greater_is_better) == (True, False)
    assert row_mse.old == [pytest.approx(second.metrics["mean_squared_error"])]  # same data, same model
    assert second.comparison.baselines[0].roles == ("latest",)


def test_one_off_from_sqlite_with_a_relative_url(service: shipyard.ModelService, tmp_path: Path, kit: Any) -> None:
    with sqlite3.connect(tmp_path / "tx.db") as db:
        kit.transactions(700).drop(columns=["ts"]).to_sql("tx", db, index=False)
    spec = kit.write_spec(tmp_path, kit.spec("sqlite:///tx.db?table=tx", data={"source": "sqlite:///tx.db?table=tx"},
                                          features=None))
    result = train(spec, service=service)
    mv = result.version
    assert mv.lineage["source"] == f"sqlite:///{tmp_path}/tx.db?table=tx"
    assert mv.lineage["fingerprint"] == open_source(f"sqlite:///{tmp_path}/tx.db?table=tx").fingerprint()
    assert "files" not in mv.lineage
    assert mv.params["features"] == kit.FEATURES  # every column but the target
    assert mv.metrics["accuracy"] > 0.8


def test_promotion_guard_worse_stays_equal_moves_force_moves(
    service: shipyard.ModelService, tmp_path: Path, kit: Any
) -> None:
    kit.transactions(800).to_parquet(tmp_path / "tx.parquet", index=False)
    good = kit.spec(str(tmp_path / "tx.parquet"), metrics=["accuracy"])
    bad = {**good, "preprocess": [],
           "estimator": {"class": "sklearn.dummy.DummyClassifier", "params": {"strategy": "constant", "constant": 0}}}

    first = train(good, promote="production", service=service)
    assert first.promotion is not None and first.promotion.moved

    worse = train(bad, promote="production", service=service)
    assert worse.version.version == 2  # registered, but the alias stays
    assert worse.promotion is not None
    assert (worse.promotion.moved, worse.promotion.from_version) == (False, 1)
    assert "worse than" in worse.promotion.reason
    assert "--force" in worse.promotion.reason
    (baseline,) = worse.comparison.baselines
    assert (baseline.ref, baseline.roles) == ("fraud:1", ("production",))
    assert baseline.metrics == pytest.approx(first.metrics)  # the same holdout rows as when it was trained
    assert service.get_model("fraud").aliases == {"production": 1}

    equal = train(good, promote="production", service=service)
    assert equal.metrics == first.metrics
    assert equal.promotion is not None
    assert (equal.promotion.moved, equal.promotion.from_version, equal.promotion.to_version) == (True, 1, 3)
    assert "equal to" in equal.promotion.reason

    forced = train(bad, promote="production", force=True, service=service)
    assert forced.promotion is not None
    assert (forced.promotion.moved, forced.promotion.forced) == (True, True)
    assert service.get_model("fraud").aliases == {"production": 4}
    moves = [(m.from_version, m.to_version) for m in service.alias_history("fraud", "production")]
    assert moves == [(None, 1), (1, 3), (3, 4)]


def test_a_holdout_source_is_used_for_old_and_new(service: shipyard.ModelService, tmp_path: Path, kit: Any) -> None:
    kit.transactions(600).to_parquet(tmp_path / "tx.parquet", index=False)
    kit.transactions(200, start=5000).to_parquet(tmp_path / "holdout.parquet", index=False)
    spec = kit.spec(str(tmp_path / "tx.parquet"),
                     validation={"holdout_source": str(tmp_path / "holdout.parquet")}, metrics=["accuracy"])
    result = train(spec, service=service)
    assert (result.rows, result.holdout_rows) == (600, 200)
    assert result.version.lineage["holdout_source"] == str(tmp_path / "holdout.parquet")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 3}, "unknown field 'epochs'"),
        ({"estimator": {"class": "os.system"}}, "estimator.class: 'os.system' is not allowed"),
        ({"preprocess": [{"class": "subprocess.Popen"}]}, "preprocess[0].class: 'subprocess.Popen' is not allowed"),
        # Inside an allowed library is not enough: exact, reviewed classes only, no private modules.
        ({"estimator": {"class": "sklearn.utils._testing.TempMemmap"}}, "'sklearn.utils._testing.TempMemmap' is not"),
        ({"estimator": {"class": "sklearn.utils.Bunch"}}, "estimator.class: 'sklearn.utils.Bunch' is not allowed"),
        ({"preprocess": [{"class": "river.stream.Cache"}]}, "'river.stream.Cache' is not allowed"),
        ({"target": "label"}, "target: 'label' is not a column of"),
        ({"features": ["amount", "nope"]}, "features: 'nope' not a column of"),
        ({"metrics": ["acuracy"]}, "unknown metric 'acuracy'"),
        ({"estimator": {"class": "sklearn.linear_model.SGDClassifier", "params": {"los": 1}}},
         "estimator.params: SGDClassifier"),
        ({"estimator": {"class": "sklearn.linear_model.SGDClassifier", "params": {"loss": "nope"}}},
         "'loss' parameter of SGDClassifier"),
        ({"validation": {"holdout": 1.5}}, "validation.holdout"),
        ({"data": {"source": "tx.parquet", "query": "SELECT 1"}}, "data.query: tx.parquet is not a database"),
    ],
)
def test_bad_specs_name_the_field_and_register_nothing(
    service: shipyard.ModelService, tmp_path: Path, kit: Any, change: dict[str, object], message: str
) -> None:
    kit.transactions(100).to_parquet(tmp_path / "tx.parquet", index=False)
    with pytest.raises(shipyard.ShipyardError, match=message.replace("[", r"\[").replace("(", r"\(")) as caught:
        train({**kit.spec(str(tmp_path / "tx.parquet")), **change}, service=service)
    assert "\n" not in str(caught.value)
    assert service.list_models() == []


def test_a_spec_file_that_is_not_yaml_or_missing_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: fraud\ndata: [\n")
    with pytest.raises(InvalidSpec, match=r"broken.yaml is not valid YAML \(line 3"):
        train(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(InvalidSpec, match="must hold a mapping"):
        train(tmp_path / "list.yaml")
    with pytest.raises(shipyard.ShipyardError, match="no training spec at"):
        train(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "path",
    [
        "sklearn.compose.ColumnTransformer",
        "sklearn.gaussian_process.kernels.RBF",
        "sklearn.model_selection.KFold",
        "xgboost.XGBClassifier",
        "lightgbm.LGBMRegressor",
        "river.linear_model.LogisticRegression",
    ],
)
def test_reviewed_classes_of_each_library_may_be_named(path: str) -> None:
    assert import_class(path, "estimator.class").__name__ == path.rsplit(".", 1)[1]


def test_an_exact_trusted_name_admits_a_class_outside_the_reviewed_list() -> None:
    with pytest.raises(InvalidSpec, match="SHIPYARD_TRUSTED_TYPES"):
        import_class("sklearn.utils.Bunch", "estimator.class")
    assert import_class("sklearn.utils.Bunch", "estimator.class", trusted=["sklearn.utils.Bunch"]).__name__ == "Bunch"
