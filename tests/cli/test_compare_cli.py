"""``shipyard compare`` in a real subprocess: Rich output, JSON, exit codes and one-line errors.

The models are registered once per module, and one subprocess runs every case through the command
line's entry point. Expected figures come from the estimators themselves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import shipyard

TIMEOUT = 120


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def exited(self, code: int) -> Result:
        assert self.code == code, f"{self.args} exited {self.code}, expected {code}\n{self.out}\n{self.err}"
        assert "Traceback" not in self.err
        return self

    @property
    def error_line(self) -> str:
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got:\n{self.err}"
        assert lines[0].startswith("error: "), lines[0]
        return lines[0]

    @property
    def last_line(self) -> str:
        return self.out.rstrip().splitlines()[-1]


@dataclass(frozen=True)
class Setup:
    home: Path
    folder: Path
    holdout: pd.DataFrame
    first: Any
    second: Any


# One process runs the command line once per case through the CLI's entry point (each start costs seconds of
# imports), and ends each case with a marker on both streams.
EVERY_CASE = """
import json, sys
from shipyard.cli import main
for args in json.loads(sys.argv[1]):
    try:
        main(["compare", *args])
    except SystemExit as exc:
        code = exc.code
    sys.stdout.flush()
    print(f"=== exit {code}", flush=True)
    print("=== end", file=sys.stderr, flush=True)
"""


def run_all(setup: Setup, *commands: list[str]) -> list[Result]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.pop("FORCE_COLOR", None)
    env.update(SHIPYARD_HOME=str(setup.home), SHIPYARD_USER="tester", COLUMNS="200", NO_COLOR="1")
    done = subprocess.run(
        [sys.executable, "-c", EVERY_CASE, json.dumps(commands)],
        env=env,
        cwd=setup.folder,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    outs = re.split(r"^=== exit (\S+)\n", done.stdout, flags=re.MULTILINE)
    errs = done.stderr.split("=== end\n")
    assert len(outs) == 2 * len(commands) + 1 and len(errs) == len(commands) + 1, (done.stdout, done.stderr)
    return [Result(tuple(command), int(outs[2 * i + 1]), outs[2 * i], errs[i]) for i, command in enumerate(commands)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """fraud:1 a logistic regression, fraud:2 a tree, fraud:3 the ONNX export of fraud:1; holdout files."""
    from skl2onnx import to_onnx

    folder = tmp_path_factory.mktemp("compare-cli")
    rng = np.random.default_rng(7)
    X = pd.DataFrame({"amount": rng.gamma(2.0, 30.0, 1200), "hour": rng.integers(0, 24, 1200)})
    X["score"] = rng.normal(0, 1, len(X))
    y = (X["amount"] / 60 + X["score"] + rng.normal(0, 0.7, len(X)) > 1.2).astype(int)
    first = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    second = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    service = shipyard.connect(shipyard.Settings(home=folder / "home"))
    service.register(first, "fraud", X=X)
    service.register(second, "fraud", X=X)
    service.register(to_onnx(first, X.to_numpy(np.float32)[:1], options={"zipmap": False}), "fraud", X=X)
    service.store.close()

    holdout = pd.DataFrame({"amount": rng.gamma(2.0, 30.0, 2000), "hour": rng.integers(0, 24, 2000)})
    holdout["score"] = rng.normal(0, 1, len(holdout))
    holdout.to_parquet(folder / "holdout.parquet")
    holdout.to_csv(folder / "holdout.csv", index=False)
    holdout.drop(columns=["score"]).to_parquet(folder / "no-score.parquet")
    return Setup(folder / "home", folder, holdout, first, second)


def test_compare_command(setup: Setup) -> None:
    la, lb = setup.first.predict(setup.holdout), setup.second.predict(setup.holdout)
    agreement = float(np.mean(la == lb))
    diff = np.abs(setup.first.predict_proba(setup.holdout) - setup.second.predict_proba(setup.holdout))
    assert 0.5 < agreement < 1

    same, differ, as_json, onnx, lenient, unknown, missing, columns = run_all(
        setup,
        ["fraud:1", "fraud:1", "--data", "holdout.parquet"],
        ["fraud:1", "fraud:2", "--data", "holdout.csv", "--top", "3", "--chunk-rows", "300"],
        ["fraud:1", "fraud:2", "--data", "holdout.parquet", "--json", "--top", "2"],
        ["fraud:1", "fraud:3", "--data", "holdout.parquet", "--atol", "1e-5"],
        ["fraud:1", "fraud:2", "--data", "holdout.parquet", "--atol", "1", "--min-agreement", "0.5"],
        ["fraud:1", "fraud:9", "--data", "holdout.parquet"],
        ["fraud:1", "fraud:2", "--data", "missing.parquet"],
        ["fraud:1", "fraud:2", "--data", "no-score.parquet"],
    )

    same.exited(0)
    assert same.last_line == "PASS: labels agree on 100.00% of 2,000 rows, max absolute difference 0 <= atol 1e-06"
    assert "Label confusion" in same.out and "fraud:1 \\ fraud:1" in same.out
    assert "disagreeing rows" not in same.out

    differ.exited(1)
    assert differ.last_line.startswith(
        f"FAIL: label agreement {agreement:.6g} is below the minimum 1; "
        f"max absolute probability difference {diff.max():.6g} is above atol 1e-06"
    )
    assert "Top 3 disagreeing rows" in differ.out and "(7 chunks)" in differ.out
    worst = int(np.lexsort((np.arange(len(la)), -diff.max(axis=1), -(la != lb).astype(int)))[0])
    assert f"│ {worst} " in differ.out

    as_json.exited(1)
    data = json.loads(as_json.out)
    assert data["verdict"] == "fail" and data["agreement"] == agreement and data["rows"] == 2000
    assert data["max_abs_diff"] == pytest.approx(float(diff.max()), abs=1e-12)
    assert data["confusion"] == confusion_matrix(la, lb, labels=[0, 1]).tolist()
    assert [row["row"] for row in data["top"]][:1] == [worst] and len(data["top"]) == 2

    onnx.exited(0)
    assert onnx.last_line.startswith("PASS: labels agree on 100.00% of 2,000 rows, max absolute difference ")
    assert "fraud:1 (sklearn) vs fraud:3 (onnx)" in onnx.out

    lenient.exited(0)
    assert lenient.last_line.startswith(f"PASS: labels agree on {agreement:.2%} of 2,000 rows")

    assert unknown.exited(1).error_line == "error: model 'fraud' has no version 9; the latest version is 3"
    assert missing.exited(1).error_line.startswith("error: no such file or folder: missing.parquet")
    line = columns.exited(1).error_line
    assert line.startswith("error: input does not match the model signature: fraud:1 and fraud:2: missing column")
    assert "'score'" in line
