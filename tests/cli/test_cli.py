"""The installed ``shipyard`` command, run as a real subprocess on a fresh SHIPYARD_HOME per test.

Every start of the command costs about a second (importing shipyard imports pandas, SQLAlchemy and
pydantic), so independent commands run concurrently (``run_many``) and the model files are registered
once per module and copied into each test's home.
"""

from __future__ import annotations

import io
import os
import pickle
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
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
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_USER="tester", COLUMNS="200", NO_COLOR="1", PYTHONIOENCODING="utf-8")
    return env


def start(home: Path, *commands: list[str] | tuple[str, ...]) -> Callable[[], list[Result]]:
    """Start every command at once and return a function that waits for their results.

    Each command is the arguments of ``shipyard``, or a full command line starting with ``sys.executable``.
    """
    procs = []
    for command in commands:
        args = list(command)
        if not args or args[0] != sys.executable:
            args = [SHIPYARD, *args]
        procs.append(
            (
                tuple(args),
                subprocess.Popen(
                    args, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=home.parent
                ),
            )
        )

    def wait() -> list[Result]:
        results = []
        for args, proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT)
            results.append(Result(args, proc.returncode, out, err))
        return results

    return wait


def run_many(home: Path, *commands: list[str] | tuple[str, ...]) -> list[Result]:
    """Run the commands concurrently and return their results in order."""
    return start(home, *commands)()


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
    """Model files and data made in the test process, and the registry the module's tests start from."""

    root: Path
    skops: Path
    pkl: Path
    train_csv: Path
    score_csv: Path
    score_parquet: Path
    X_score: pd.DataFrame
    model: Any
    registered: tuple[Result, Result]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """Fit a sklearn pipeline, save it as .skops and .pkl, and register both through the CLI once per module.

    toy:1 comes from the .skops file (with a metric, a tag and a description), pickled:1 from the pickle
    with --trust, toy:2 from the SDK. Tests get a copy of this registry in their own SHIPYARD_HOME (``home``).
    """
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    root = tmp_path_factory.mktemp("template")
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
    data = root / "data"
    data.mkdir()
    sio.dump(pipe, data / "model.skops")
    with (data / "model.pkl").open("wb") as handle:
        pickle.dump(pipe, handle)
    X.assign(label=y).to_csv(data / "train.csv", index=False)
    X_score, _ = _frame(250, seed=2)
    X_score.to_csv(data / "score.csv", index=False)
    X_score.to_parquet(data / "score.parquet", index=False)

    home = root / "home"
    example = ["--example", str(data / "train.csv"), "--target", "label"]
    first, second = run_many(
        home,
        ["models", "register", str(data / "model.skops"), "-n", "toy", *example, "-m", "auc=0.91", "--tag", "team=risk",
         "-d", "first cut"],
        ["models", "register", str(data / "model.pkl"), "--name", "pickled", *example, "--trust"],
    )  # fmt: skip
    if first.code == 0:  # a second version of toy, registered in-process to save a CLI start
        from shipyard.app import build_service
        from shipyard.config import Settings

        service = build_service(Settings(home=home, user="tester"))
        service.register(pipe, "toy", X=X, y=y)
        service.store.close()
    return Files(
        root=home,
        skops=data / "model.skops",
        pkl=data / "model.pkl",
        train_csv=data / "train.csv",
        score_csv=data / "score.csv",
        score_parquet=data / "score.parquet",
        X_score=X_score,
        model=pipe,
        registered=(first, second),
    )


@pytest.fixture
def home(template: Files, tmp_path: Path) -> Path:
    """This test's own SHIPYARD_HOME: a copy of the template registry (toy:1, toy:2, pickled:1; no aliases)."""
    template.registered[0].ok()
    template.registered[1].ok()
    path = tmp_path / "home"
    shutil.copytree(template.root, path)
    return path


# ---------------------------------------------------------------------- help and version
GROUPS = [[], ["models"], ["alias"]]
COMMANDS = [
    ["models", "list"],
    ["models", "show"],
    ["models", "register"],
    ["models", "versions"],
    ["alias", "set"],
    ["alias", "delete"],
    ["alias", "list"],
    ["alias", "history"],
    ["rollback"],
    ["predict"],
    ["demo"],
]
# One process prints the help of every command through the CLI's entry point (one start instead of eleven).
EVERY_COMMAND_HELP = f"""
from shipyard.cli import main
for args in {COMMANDS!r}:
    print("=== " + " ".join(args), flush=True)
    try:
        main([*args, "--help"])
    except SystemExit as exc:
        print("=== exit", exc.code, flush=True)
"""


def test_help_version_and_usage_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    *groups, commands, version, module_version, bad_int = run_many(
        home,
        *[[*path, "--help"] for path in GROUPS],
        [sys.executable, "-c", EVERY_COMMAND_HELP],
        ["--version"],
        [sys.executable, "-m", "shipyard", "--version"],
        ["alias", "set", "toy", "production", "x"],
    )
    for result in groups:
        assert "Usage: shipyard" in result.ok().out, result.args
    assert all(word in groups[0].out for word in ("models", "alias", "predict", "rollback", "demo"))
    helps = commands.ok().out.split("=== ")[1:]
    assert len(helps) == 2 * len(COMMANDS), commands.out
    for args, text, code in zip(COMMANDS, helps[::2], helps[1::2], strict=True):
        assert text.startswith(" ".join(args)), text
        assert f"Usage: shipyard {' '.join(args)} [OPTIONS]" in text, text
        assert code.strip() == "exit 0", (args, code)
    assert "--example" in helps[2 * COMMANDS.index(["models", "register"])]
    assert "--chunk-rows" in helps[2 * COMMANDS.index(["predict"])]
    assert version.ok().out == "shipyard 0.1.0\n"
    assert module_version.ok().out == "shipyard 0.1.0\n"
    assert bad_int.code == 2, bad_int
    assert "Invalid value for 'VERSION'" in bad_int.err
    assert not home.exists(), "--help, --version and usage errors must not create a registry"


# ---------------------------------------------------------------------- demo
def test_demo(tmp_path: Path) -> None:
    """The CLI demo end to end; meanwhile, in-process, running the demo twice adds fraud:2 and moves production."""
    from rich.console import Console

    from shipyard.app import build_service
    from shipyard.config import Settings
    from shipyard.demo import run_demo

    home = tmp_path / "home"
    wait = start(home, ["demo"])

    service = build_service(Settings(home=tmp_path / "sdk", user="tester"))
    console = Console(file=io.StringIO(), width=200)
    first = run_demo(service, console, rows=600, sample_dir=tmp_path / "sdk-demo")
    second = run_demo(service, console, rows=600, sample_dir=tmp_path / "sdk-demo")
    aliases = service.get_model("fraud").aliases
    service.store.close()
    assert (first.version, second.version) == (1, 2)
    assert aliases == {"production": 2}
    assert "fraud@production: 1 -> 2" in console.file.getvalue()  # type: ignore[attr-defined]
    assert len(pd.read_csv(tmp_path / "sdk-demo" / "transactions.csv")) == 150

    (demo,) = wait()
    for text in ("test AUC", "registered fraud:1", "fraud@production: none -> 1", "fraud probability", "Next steps"):
        assert text in demo.ok().out, text
    sample = home / "demo" / "transactions.csv"
    assert sample.is_file()
    # The printed predict line works as copied.
    predict_line = next(line.strip() for line in demo.out.splitlines() if " predict fraud@production " in line)
    assert Path(shlex.split(predict_line)[0]).name == "shipyard"  # the command itself, or its path
    copied = shlex.split(predict_line)
    output = Path(copied[copied.index("--output") + 1])

    listing, show, scored = run_many(home, ["models", "list"], ["models", "show", "fraud"], copied[1:])
    row = next(line for line in listing.ok().out.splitlines() if "fraud" in line)
    assert "│ 1 " in row
    assert "production=1" in row
    for text in ("Versions", "sklearn", "tester", "auc=", "channel", "string", "is_foreign", "bool", "production"):
        assert text in show.ok().out, text
    assert scored.ok().out.startswith("Scored ")
    result = pd.read_csv(output)
    assert len(result) == len(pd.read_csv(sample))
    assert {"prediction", "proba_0", "proba_1", "amount", "channel"} <= set(result.columns)
    assert np.allclose(result["proba_0"] + result["proba_1"], 1.0)


# ---------------------------------------------------------------------- register, aliases, rollback
def test_register_prints_version_and_sha256(template: Files) -> None:
    first, second = template.registered
    assert first.ok().out.startswith("Registered toy:1 (sklearn")
    sha = first.out.split("sha256 ")[1].split()[0]
    assert len(sha) == 64
    assert set(sha) <= set("0123456789abcdef")
    assert "shipyard alias set toy production 1" in first.out
    assert second.ok().out.startswith("Registered pickled:1 (sklearn")  # the pickle, accepted with --trust


def test_alias_set_history_rollback(home: Path) -> None:
    from shipyard.app import build_service
    from shipyard.config import Settings

    service = build_service(Settings(home=home, user="tester"))
    service.set_alias("toy", "production", 1)  # the first move, made with the SDK to save a CLI start
    service.store.close()

    new, moved = run_many(home, ["alias", "set", "toy", "staging", "1"], ["alias", "set", "toy", "production", "2"])
    assert new.ok().out == "toy@staging: none -> 1\n"
    assert moved.ok().out == "toy@production: 1 -> 2\n"

    same, show, aliases, rolled = run_many(
        home,
        ["alias", "set", "toy", "staging", "1"],
        ["models", "show", "toy", "--version", "1"],
        ["alias", "list", "toy"],
        ["rollback", "toy"],
    )
    assert same.ok().out == "toy@staging already points to 1; nothing changed\n"
    for text in ("auc=0.91", "team=risk", "first cut", "Inputs of toy:1", "amount", "Outputs of toy:1", "label"):
        assert text in show.ok().out, text
    assert "production" in aliases.ok().out
    assert "staging" in aliases.out
    assert rolled.ok().out.startswith("undid: alias production moved 1 -> 2 by tester at ")
    assert rolled.out.endswith("; toy@production: 2 -> 1\n")

    again, history, deleted = run_many(
        home,
        ["rollback", "toy", "--alias", "production"],
        ["alias", "history", "toy", "production"],
        ["alias", "delete", "toy", "staging"],
    )
    assert "has no earlier version to go back to (it points to version 1" in again.failed().error_line
    rows = [[c.strip() for c in line.split("│")[2:7]] for line in history.ok().out.splitlines() if "tester" in line]
    assert rows == [
        ["tester", "production", "set", "none", "1"],
        ["tester", "production", "set", "1", "2"],
        ["tester", "production", "rollback", "2", "1"],
    ]
    assert deleted.ok().out == "deleted toy@staging (was 1)\n"


# ---------------------------------------------------------------------- predict
def test_predict_csv_and_parquet(home: Path, template: Files) -> None:
    out = home.parent / "out"
    out.mkdir()
    to_csv, to_parquet, slim = run_many(
        home,
        ["predict", "toy:1", "--input", str(template.score_csv), "--output", str(out / "a.csv"), "--chunk-rows", "64"],
        ["predict", "toy", "-i", str(template.score_csv), "--output", str(out / "b.parquet"), "--chunk-rows", "100"],
        ["predict", "toy:2", "-i", str(template.score_parquet), "-o", str(out / "c.csv"), "--no-keep-columns"],
    )
    expected = template.model.predict(template.X_score)
    expected_proba = template.model.predict_proba(template.X_score)
    for result, name, ref in ((to_csv, "a.csv", "toy:1"), (to_parquet, "b.parquet", "toy:2"), (slim, "c.csv", "toy:2")):
        assert result.ok().out.startswith(f"Scored 250 rows with {ref} in ")
        assert result.out.rstrip().endswith(f"-> {out / name}")
        frame = pd.read_csv(out / name) if name.endswith(".csv") else pd.read_parquet(out / name)
        assert len(frame) == len(template.X_score)
        assert np.array_equal(frame["prediction"].to_numpy(), expected)
        assert np.allclose(frame[["proba_0", "proba_1"]].to_numpy(), expected_proba)
    kept = pd.read_parquet(out / "b.parquet")
    stamp = ["model", "model_version", "scored_at"]  # predict is the batch engine's front end
    features = ["amount", "count", "channel", "flag"]
    assert list(kept.columns) == ["row", *features, "prediction", "proba_0", "proba_1", *stamp]
    assert np.allclose(kept["amount"], template.X_score["amount"])
    assert kept["flag"].dtype == bool
    assert list(pd.read_csv(out / "c.csv").columns) == ["row", "prediction", "proba_0", "proba_1", *stamp]
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.parquet", "c.csv"]


# ---------------------------------------------------------------------- errors
def test_errors_are_one_line_with_exit_1(home: Path, template: Files) -> None:
    bad = home.parent / "bad.csv"
    lines = template.score_csv.read_text().splitlines()
    lines[38] = ",".join(["oops", *lines[38].split(",")[1:]])  # data row 37 (line 1 is the header)
    bad.write_text("\n".join(lines) + "\n")
    out = home.parent / "never.csv"
    boom = (
        "import shipyard.cli.app as app, shipyard.cli.models as m\n"
        "def boom():\n    raise RuntimeError('boom')\n"
        "m.get_service = boom\napp.run(['models', 'list'])\n"
    )
    unknown, bad_name, no_version, pkl, bad_value, missing, unexpected = run_many(
        home,
        ["models", "show", "nope"],
        ["models", "show", "../x"],
        ["alias", "set", "toy", "production", "9"],
        ["models", "register", str(template.pkl), "--name", "pickled", "--example", str(template.train_csv)],
        ["predict", "toy", "--input", str(bad), "--output", str(out), "--chunk-rows", "10", "--strict"],
        ["predict", "toy", "--input", str(home.parent / "missing.csv"), "--output", str(out)],
        [sys.executable, "-c", boom],
    )
    assert "model 'nope' is not registered" in unknown.failed().error_line
    assert "invalid model name '../x'" in bad_name.failed().error_line
    assert "model 'toy' has no version 9; the latest version is 2" in no_version.failed().error_line
    assert "pickle" in pkl.failed().error_line
    assert "--trust" in pkl.error_line
    line = bad_value.failed().error_line
    assert "column 'amount': expected float64, got string 'oops' (row 37)" in line, line
    assert "missing.csv does not exist" in missing.failed().error_line
    assert unexpected.failed().error_line == (
        "error: unexpected RuntimeError: boom (set SHIPYARD_DEBUG=1 for the traceback)"
    )
    assert not out.exists()
    assert not [p.name for p in home.parent.iterdir() if p.name.startswith(".never")], "temp output left behind"
