"""``shipyard train`` first-use edges: the README's spec on data with a text column, --incremental without
partial_fit or without new data, and --promote's exit code when it refuses. Real subprocesses, run concurrently."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from shipyard.demo import make_transactions


def test_first_use_edges_of_train(tmp_path: Path, kit: Any) -> None:
    home = tmp_path / "home"
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    kit.transactions(400).to_parquet(project / "data" / "part-0.parquet", index=False)
    spec = kit.write_spec(project, kit.spec("data/", metrics=["accuracy"]))
    forest = kit.write_spec(project, kit.spec("data/", name="forest", preprocess=[], metrics=["accuracy"],
                                              estimator={"class": "sklearn.ensemble.RandomForestClassifier",
                                                         "params": {"n_estimators": 3, "random_state": 0}}),
                            "forest.yaml")  # fmt: skip
    dummy = {"class": "sklearn.dummy.DummyClassifier", "params": {"strategy": "constant", "constant": 0}}
    worse = kit.write_spec(project, kit.spec("data/", estimator=dummy, metrics=["accuracy"]), "worse.yaml")
    # the README's spec (no features:) on the demo's data, which has a text column (channel)
    (project / "demo").mkdir()
    make_transactions(600).to_parquet(project / "demo" / "tx.parquet", index=False)
    readme = kit.write_spec(project, {
        "name": "demo", "data": {"source": "demo/", "incremental": {"new_files": True}}, "target": "is_fraud",
        "preprocess": [{"class": "sklearn.preprocessing.StandardScaler"}],
        "estimator": {"class": "sklearn.linear_model.SGDClassifier", "params": {"loss": "log_loss", "random_state": 0}},
        "validation": {"holdout": 0.2, "seed": 0}, "metrics": ["roc_auc", "accuracy"],
    }, "train.yaml")  # fmt: skip

    from shipyard.app import build_service
    from shipyard.config import Settings
    from shipyard.training import train

    service = build_service(Settings(home=home, user="tester"))
    train(spec, promote="production", service=service)  # fraud:1 has consumed every file
    train(forest, service=service)
    service.store.close()

    from_readme, not_incremental, nothing_new, refused, helped = kit.run_many(
        home,
        ["train", str(readme)],
        ["train", str(forest), "--incremental"],
        ["train", str(spec), "--incremental"],
        ["train", str(worse), "--promote", "production"],
        ["train", "--help"],
    )
    out = from_readme.ok().out
    assert out.startswith("Registered demo:1 (one-off): trained on ")
    assert "note: text columns one-hot encoded: channel (list features: to choose columns)" in out

    assert not_incremental.error_line.startswith(
        "error: RandomForestClassifier cannot be trained incrementally (no partial_fit)"
    )  # said before looking for data, of which there is none new either

    assert nothing_new.ok().out.startswith("nothing new: no new files in ")
    assert "nothing was registered" in nothing_new.out

    assert refused.code == 3, (refused.out, refused.err)
    assert "Registered fraud:2 (one-off)" in refused.out
    assert "fraud@production stays at 1: " in refused.out
    assert "exit code 3" in " ".join(helped.ok().out.split())


def test_text_the_model_cannot_take_names_its_column(tmp_path: Path, kit: Any, service: Any) -> None:
    from shipyard.errors import InvalidInput
    from shipyard.training import train

    frame = kit.transactions(200).assign(channel=["web", "pos"] * 100)
    frame.to_parquet(tmp_path / "tx.parquet", index=False)
    spec = kit.spec(str(tmp_path / "tx.parquet"), features=[*kit.FEATURES, "channel"], metrics=["accuracy"])
    try:
        train(spec, service=service)
    except InvalidInput as exc:
        message = exc.message
    else:
        raise AssertionError("training on a text column without an encoder should fail")
    expected = r"training StandardScaler -> SGDClassifier failed: column 'channel' holds text \('(web|pos)'\)"
    assert re.match(expected, message), message
