"""The installed ``shipyard`` command, run as a real subprocess on a fresh SHIPYARD_HOME per test.

Every CLI start imports the registry stack, so independent commands run concurrently (``run_many``)
to keep the file fast.
"""

from __future__ import annotations

import os
import pickle
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
TIMEOUT = 120


@dataclass(frozen=True)
class Result:
    """What one command did."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def ok(self) -> Result:
        assert self.code == 0, f"{self.args} exited {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"
        return self

    def failed(self, code: int = 1) -> Result:
        assert self.code == code, f"{self.args} exited {self.code}, expected {code}\n{self.out}\n{self.err}"
        assert "Traceback" not in self.err
        return self

    @property
    def error_line(self) -> str:
        """The single ``error: ...`` line a failing command printed on stderr."""
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got:\n{self.err}"
        assert lines[0].startswith("error: "), lines[0]
        return lines[0]


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("SHIPYARD_REGISTRY_URL", "SHIPYARD_ARTIFACTS_URL", "SHIPYARD_TRUSTED_TYPES", "SHIPYARD_DEBUG"):
        env.pop(key, None)
    env.pop("FORCE_COLOR", None)
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_USER="tester", COLUMNS="200", NO_COLOR="1")
    return env


def run_many(home: Path, *commands: list[str] | tuple[str, ...]) -> list[Result]:
    """Start every command at once (each is ``shipyard ARGS...`` unless it starts with a path) and wait."""
    procs = []
    for command in commands:
        args = list(command)
        if not args or not (args[0].startswith("/") or args[0] == sys.executable):
            args = [SHIPYARD, *args]
        procs.append(
            (
                tuple(args),
                subprocess.Popen(
                    args, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=home.parent
                ),
            )
        )
    results = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        results.append(Result(args, proc.returncode, out, err))
    return results


def run(home: Path, *args: str) -> Result:
    """Run one ``shipyard`` command."""
    return run_many(home, args)[0]


# ---------------------------------------------------------------------- fixtures
def _frame(rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "amount": np.round(rng.lognormal(3.0, 1.0, rows), 2),
            "count": rng.integers(0, 20, rows).astype("int64"),
            "channel": pd.array(rng.choice(["web", "pos", "app"], rows).tolist(), dtype="str"),
            "flag": rng.random(rows) < 0.3,
        }
    )
    y = pd.Series(((np.log(X["amount"]) + X["flag"] * 1.5 + rng.normal(0, 0.5, rows)) > 3.4).astype("int64"))
    return X, y.rename("label")


@dataclass(frozen=True)
class Files:
    home: Path
    skops: Path
    pkl: Path
    train_csv: Path
    score_csv: Path
    score_parquet: Path
    X_score: pd.DataFrame
    model: Any


@pytest.fixture
def files(tmp_path: Path) -> Files:
    """A fitted sklearn pipeline saved as .skops and .pkl, a training CSV and rows to score."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = _frame(300, seed=1)
    pipe = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["amount", "count"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
                        ("flag", "passthrough", ["flag"]),
                    ]
                ),
            ),
            ("model", LogisticRegression()),
        ]
    ).fit(X, y)
    data = tmp_path / "data"
    data.mkdir()
    sio.dump(pipe, data / "model.skops")
    with (data / "model.pkl").open("wb") as handle:
        pickle.dump(pipe, handle)
    X.assign(label=y).to_csv(data / "train.csv", index=False)
    X_score, _ = _frame(250, seed=2)
    X_score.to_csv(data / "score.csv", index=False)
    X_score.to_parquet(data / "score.parquet", index=False)
    return Files(
        home=tmp_path / "home",
        skops=data / "model.skops",
        pkl=data / "model.pkl",
        train_csv=data / "train.csv",
        score_csv=data / "score.csv",
        score_parquet=data / "score.parquet",
        X_score=X_score,
        model=pipe,
    )


def _register(f: Files, *extra: str) -> Result:
    return run(
        f.home, "models", "register", str(f.skops), "--name", "toy", "--example", str(f.train_csv),
        "--target", "label", *extra,
    ).ok()  # fmt: skip


# ---------------------------------------------------------------------- help and version
HELP_PATHS = [
    [],
    ["models"],
    ["models", "list"],
    ["models", "show"],
    ["models", "register"],
    ["models", "versions"],
    ["alias"],
    ["alias", "set"],
    ["alias", "delete"],
    ["alias", "list"],
    ["alias", "history"],
    ["rollback"],
    ["predict"],
    ["demo"],
]


def test_help_on_every_command_and_version(tmp_path: Path) -> None:
    results = run_many(
        tmp_path / "home",
        *[[*path, "--help"] for path in HELP_PATHS],
        ["--version"],
        [sys.executable, "-m", "shipyard", "--version"],
    )
    for result in results[: len(HELP_PATHS)]:
        result.ok()
        assert "Usage: shipyard" in result.out, result.args
    assert "predict" in results[0].out and "models" in results[0].out and "alias" in results[0].out
    assert "--example" in results[HELP_PATHS.index(["models", "register"])].out
    assert "--chunk-rows" in results[HELP_PATHS.index(["predict"])].out
    assert results[-2].ok().out.strip() == "shipyard 0.1.0"
    assert results[-1].ok().out.strip() == "shipyard 0.1.0"
    assert not (tmp_path / "home").exists(), "--help and --version must not create a registry"


def test_usage_errors_stay_typers(tmp_path: Path) -> None:
    missing, bad_int = run_many(tmp_path / "home", ["models", "register"], ["alias", "set", "toy", "production", "x"])
    assert missing.code == 2 and "Missing argument" in missing.err
    assert bad_int.code == 2 and "Traceback" not in bad_int.err


# ---------------------------------------------------------------------- demo
def test_demo_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = run(home, "demo").ok()
    assert "fraud:1" in first.out and "fraud@production: none -> 1" in first.out
    assert "fraud probability" in first.out and "test AUC" in first.out
    sample = home / "demo" / "transactions.csv"
    assert sample.is_file()
    predict_line = next(line.strip() for line in first.out.splitlines() if line.strip().startswith("shipyard predict"))
    copied = shlex.split(predict_line)
    output = Path(copied[copied.index("--output") + 1])

    listing, show, scored, second = run_many(
        home, ["models", "list"], ["models", "show", "fraud"], copied[1:], ["demo", "--rows", "2000"]
    )
    assert "fraud" in listing.ok().out and "production" in listing.out
    show.ok()
    for text in ("Versions", "sklearn", "tester", "auc=", "channel", "string", "is_foreign", "bool", "production"):
        assert text in show.out, text
    assert "Scored" in scored.ok().out
    result = pd.read_csv(output)
    assert len(result) == len(pd.read_csv(sample))
    assert {"prediction", "proba_0", "proba_1", "amount", "channel"} <= set(result.columns)
    assert np.allclose(result["proba_0"] + result["proba_1"], 1.0)

    assert "fraud:2" in second.ok().out and "fraud@production: 1 -> 2" in second.out
    listing, history = run_many(home, ["models", "list"], ["alias", "history", "fraud"])
    row = next(line for line in listing.ok().out.splitlines() if "fraud" in line)
    assert "│ 2 " in row and "production→2" in row
    assert history.ok().out.count("tester") == 2


# ---------------------------------------------------------------------- register, aliases, rollback
def test_register_alias_history_rollback(files: Files) -> None:
    home = files.home
    first = _register(files, "--metric", "auc=0.91", "--tag", "team=risk", "--description", "first cut")
    assert first.out.startswith("Registered toy:1 (sklearn")
    sha = first.out.split("sha256 ")[1].split()[0]
    assert len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)
    second = _register(files)
    assert second.out.startswith("Registered toy:2 ")

    assert run(home, "alias", "set", "toy", "production", "1").ok().out == "toy@production: none -> 1\n"
    assert run(home, "alias", "set", "toy", "production", "2").ok().out == "toy@production: 1 -> 2\n"
    same, show, aliases = run_many(
        home, ["alias", "set", "toy", "production", "2"], ["models", "show", "toy", "--version", "1"], ["alias", "list", "toy"]
    )
    assert "already points to 2" in same.ok().out
    assert "auc=0.91" in show.ok().out and "team=risk" in show.out and "first cut" in show.out
    assert sha[:12] in show.out and "amount" in show.out and "Outputs of toy:1" in show.out
    assert "production" in aliases.ok().out

    assert run(home, "rollback", "toy").ok().out == "toy@production: 2 -> 1\n"
    again, history, one_alias = run_many(
        home, ["rollback", "toy", "--alias", "production"], ["alias", "history", "toy"], ["alias", "history", "toy", "nope"]
    )
    assert "nothing to roll back" in again.failed().error_line
    rows = [line for line in history.ok().out.splitlines() if "tester" in line]
    assert [r.split("│")[4].strip() for r in rows] == ["set", "set", "rollback"]
    assert [(r.split("│")[5].strip(), r.split("│")[6].strip()) for r in rows] == [("none", "1"), ("1", "2"), ("2", "1")]
    assert "no alias moves recorded for toy@nope" in one_alias.ok().out

    deleted = run(home, "alias", "delete", "toy", "production").ok()
    assert deleted.out == "deleted toy@production (was 1)\n"
    assert "has no aliases" in run(home, "alias", "list", "toy").ok().out


# ---------------------------------------------------------------------- predict
def test_predict_csv_and_parquet(files: Files) -> None:
    home = files.home
    _register(files)
    out_csv = home.parent / "out" / "scored.csv"
    out_parquet = home.parent / "out" / "scored.parquet"
    out_slim = home.parent / "out" / "slim.csv"
    out_csv.parent.mkdir()
    to_csv, to_parquet, slim = run_many(
        home,
        ["predict", "toy", "--input", str(files.score_csv), "--output", str(out_csv), "--chunk-rows", "64"],
        ["predict", "toy:1", "--input", str(files.score_csv), "--output", str(out_parquet), "--chunk-rows", "100"],
        ["predict", "toy", "-i", str(files.score_parquet), "-o", str(out_slim), "--no-keep-columns", "--chunk-rows", "7"],
    )
    expected_proba = files.model.predict_proba(files.X_score)
    expected = files.model.predict(files.X_score)
    for result, path in ((to_csv, out_csv), (to_parquet, out_parquet), (slim, out_slim)):
        assert result.ok().out.startswith("Scored 250 rows with toy:1 in ")
        assert result.out.rstrip().endswith(f"-> {path}")
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        assert len(frame) == len(files.X_score)
        assert np.array_equal(frame["prediction"].to_numpy(), expected)
        assert np.allclose(frame[["proba_0", "proba_1"]].to_numpy(), expected_proba)
    kept = pd.read_parquet(out_parquet)
    assert list(kept.columns) == ["amount", "count", "channel", "flag", "prediction", "proba_0", "proba_1"]
    assert np.allclose(kept["amount"], files.X_score["amount"]) and kept["flag"].dtype == bool
    assert list(pd.read_csv(out_slim).columns) == ["prediction", "proba_0", "proba_1"]
    assert sorted(p.name for p in out_csv.parent.iterdir()) == ["scored.csv", "scored.parquet", "slim.csv"]


# ---------------------------------------------------------------------- errors
def test_errors_are_one_line_with_exit_1(files: Files) -> None:
    home = files.home
    _register(files)
    bad = home.parent / "bad.csv"
    text = files.score_csv.read_text().splitlines()
    cells = text[38].split(",")  # data row 37
    text[38] = ",".join(["oops", *cells[1:]])
    bad.write_text("\n".join(text) + "\n")
    out = home.parent / "never.csv"
    boom = (
        "import shipyard.cli.app as app, shipyard.cli.models as m\n"
        "def boom():\n    raise RuntimeError('boom')\n"
        "m.get_service = boom\napp.run(['models', 'list'])\n"
    )

    (
        unknown, bad_name, no_version, no_version_alias, nothing, pkl, bad_value, missing, bad_metric, unexpected,
        unknown_predict,
    ) = run_many(
        home,
        ["models", "show", "nope"],
        ["models", "show", "../x"],
        ["models", "show", "toy", "--version", "9"],
        ["alias", "set", "toy", "production", "9"],
        ["rollback", "toy"],
        ["models", "register", str(files.pkl), "--name", "pickled", "--example", str(files.train_csv), "-t", "label"],
        ["predict", "toy", "--input", str(bad), "--output", str(out), "--chunk-rows", "10"],
        ["predict", "toy", "--input", str(home.parent / "missing.csv"), "--output", str(out)],
        ["models", "register", str(files.skops), "--name", "toy", "--example", str(files.train_csv), "--metric", "auc"],
        [sys.executable, "-c", boom],
        ["predict", "nope@production", "--input", str(files.score_csv), "--output", str(out)],
    )  # fmt: skip
    assert "model 'nope' is not registered" in unknown.failed().error_line
    assert "invalid model name '../x'" in bad_name.failed().error_line
    assert "has no version 9" in no_version.failed().error_line
    assert "has no version 9" in no_version_alias.failed().error_line
    assert "no alias 'production'" in nothing.failed().error_line
    assert "--trust" in pkl.failed().error_line
    line = bad_value.failed().error_line
    assert "column 'amount'" in line and "'oops'" in line and "(row 37)" in line, line
    assert "missing.csv does not exist" in missing.failed().error_line
    assert "--metric expects KEY=NUMBER" in bad_metric.failed().error_line
    assert unexpected.failed().error_line == (
        "error: unexpected RuntimeError: boom (set SHIPYARD_DEBUG=1 for the traceback)"
    )
    assert "model 'nope' is not registered" in unknown_predict.failed().error_line
    assert not out.exists()
    assert not [p for p in home.parent.iterdir() if p.name.startswith(".never.csv")], "temp output left behind"

    trusted = run(
        home, "models", "register", str(files.pkl), "--name", "pickled", "--example", str(files.train_csv),
        "--target", "label", "--trust",
    )  # fmt: skip
    assert trusted.ok().out.startswith("Registered pickled:1 (sklearn")
    run(home, "alias", "set", "toy", "production", "1").ok()
    assert "never pointed elsewhere" in run(home, "rollback", "toy").failed().error_line
