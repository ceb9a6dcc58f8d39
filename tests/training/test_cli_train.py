"""``shipyard train`` as a user runs it: a real subprocess on its own SHIPYARD_HOME.

Each start of the command that trains imports scikit-learn and skops (seconds of CPU), so independent
commands run concurrently, in three rounds: a one-off training and bad specs; incremental trainings;
what is left (commands that fail early or only read the registry).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.slow
def test_train_promote_incremental_and_errors_from_the_command_line(tmp_path: Path, kit: Any) -> None:
    home = tmp_path / "home"
    project = tmp_path / "project"
    data = project / "data"
    data.mkdir(parents=True)
    for i in range(2):
        kit.transactions(500, start=500 * i).to_parquet(data / f"part-{i}.parquet", index=False)
    kit.write_spec(project, kit.spec("data/"))  # relative to the spec's folder, whatever the working folder
    kit.write_spec(project, kit.spec("data/", name="forest", preprocess=[], metrics=["accuracy"],
                                     estimator={"class": "sklearn.ensemble.RandomForestClassifier",
                                                "params": {"n_estimators": 5, "random_state": 0}}), "forest.yaml")
    kit.write_spec(project, {**kit.spec("data/"), "epochs": 3}, "unknown.yaml")
    kit.write_spec(project, kit.spec("data/", estimator={"class": "os.system"}), "evil.yaml")
    kit.write_spec(project, kit.spec("data/", target="label"), "target.yaml")
    spec = str(project / "spec.yaml")

    wait = kit.start(
        home,
        ["train", spec, "--promote", "production"],
        ["train", str(project / "unknown.yaml")],
        ["train", str(project / "evil.yaml")],
        ["train", str(project / "target.yaml")],
        ["train", spec, "--force"],
    )
    # Meanwhile, a model without partial_fit, trained in this process to save a command start.
    from shipyard.app import build_service
    from shipyard.config import Settings
    from shipyard.training import train

    service = build_service(Settings(home=home, user="tester"))
    train(project / "forest.yaml", service=service)
    service.store.close()
    one_off, unknown, evil, target, force_alone = wait()
    out = one_off.ok().out
    assert out.startswith("Registered fraud:1 (one-off): trained on ")
    assert re.search(r"│ accuracy\s+│ 0\.\d+\s+│", out)
    assert "log_loss (lower is better)" in out
    assert "fraud@production: none -> 1 (production did not exist yet)" in out
    assert "Reading " in one_off.err  # progress goes to stderr
    assert unknown.error_line == (
        f"error: invalid {project / 'unknown.yaml'}: unknown field 'epochs'; the fields here are: name, data, "
        "target, features, preprocess, estimator, validation, metrics, chunk_rows"
    )
    assert evil.error_line.startswith("error: estimator.class: 'os.system' is not allowed; a spec may name the public "
                                      "estimators, kernels and splitters of scikit-learn")
    assert target.error_line.startswith("error: target: 'label' is not a column of ")
    assert "its columns are: amount, merchant_risk, hour, is_fraud, ts" in target.error_line
    assert force_alone.error_line == "error: --force only applies with --promote ALIAS"

    for i in (2, 3):
        kit.transactions(500, start=500 * i).to_parquet(data / f"part-{i}.parquet", index=False)
    for i in (0, 1):
        kit.spoil(data / f"part-{i}.parquet")
    incremental, not_incremental = kit.run_many(
        home,
        ["train", spec, "--incremental", "--from", "fraud@production", "--promote", "production"],
        ["train", str(project / "forest.yaml"), "--incremental"],
        cwd=tmp_path,
    )
    out = incremental.ok().out
    assert out.startswith("Registered fraud:2 (incremental, parent fraud:1): trained on ")
    assert "from 2 new files" in out
    header = next(line for line in out.splitlines() if "Metric" in line)
    assert "fraud:1 (parent, production)" in header
    assert "fraud:2 (new)" in header
    assert "Change" in header
    assert re.search(r"fraud@production: 1 -> 2 \(accuracy|fraud@production stays at 1: accuracy", out)
    assert "2 new of 4 files" in incremental.err
    assert not_incremental.error_line.startswith(
        "error: RandomForestClassifier cannot be trained incrementally (no partial_fit); train it again with "
        "'shipyard train spec.yaml' or use an estimator such as SGDClassifier"
    )

    nothing_new, show = kit.run_many(home, ["train", spec, "--incremental", "--from", "fraud:2"],
                                     ["models", "show", "fraud"])
    assert nothing_new.ok().out.startswith("nothing new: no new files in ")  # exit 0: a cron job sees no failure
    assert "since fraud:2 (it has consumed all 4); nothing was registered" in nothing_new.out
    out = show.ok().out
    assert "v2 parent" in out
    assert re.search(r"v2 parent\s+│ fraud:1", out)
    assert "files (4): " in out
    assert "new_files (2): " in out
    assert re.search(r"│ 2\s+│ 1\s+│ sklearn", out)  # the Versions table's Parent column
