"""One command line: one-line usage errors, help without type placeholders, the same option names for the same
things (``--since``, ``--output``, ``--json``), and a ``serve.yaml`` whose typos are errors with a "did you mean".

Help and parsing run in-process on the real command tree (``typer.main.get_command``); the entry point's stderr and
exit code, and ``shipyard serve`` refusing a typo before it binds, run as real subprocesses.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from sklearn.linear_model import LogisticRegression

from shipyard.cli.app import app, run
from shipyard.cli.usage import walk
from shipyard.errors import InvalidInput
from shipyard.serving.settings import ServeSettings

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
PLACEHOLDER = re.compile(
    r"<(str|bool|int|float|path|text|int range|float range|list\[[a-z]+\])>|\b(TEXT|INTEGER|FLOAT)\b"
)
LISTS_AND_SHOWS = {"list", "show", "history", "versions", "status", "deploy"}


def commands() -> list[tuple[str, ...]]:
    """The path of every command and group of ``shipyard``, root first."""
    return [path for path, _ in walk(typer.main.get_command(app))]


@pytest.fixture(autouse=True)
def wide_plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("SHIPYARD_DEBUG", raising=False)


def invoke(*args: str) -> tuple[int, str, str]:
    """Run ``shipyard ARGS`` in-process through its entry point: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        run(list(args))
    code = exited.value.code
    return code if isinstance(code, int) else 1, out.getvalue(), err.getvalue()


def cli(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_USER="tester", COLUMNS="200", NO_COLOR="1")
    return subprocess.run([SHIPYARD, *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.fixture(scope="module")
def registered_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with ``fraud`` version 1, ``production`` -> 1 and one API key, made once (the tests only read it)."""
    from shipyard.app import build_service
    from shipyard.config import Settings

    home = tmp_path_factory.mktemp("consistency") / "home"
    X = pd.DataFrame({"amount": np.arange(20.0), "hour": np.arange(20.0) % 24})
    service = build_service(Settings(home=home, user="tester"))
    service.register(LogisticRegression().fit(X, (X["amount"] > 9).astype(int)), "fraud", X=X)
    service.set_alias("fraud", "production", 1)
    service.create_key("app", ["predict"])
    service.store.close()
    return home


@pytest.fixture
def registered(registered_home: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """:func:`registered_home` as this test's SHIPYARD_HOME."""
    monkeypatch.setenv("SHIPYARD_HOME", str(registered_home))
    return registered_home


# ------------------------------------------------------------------ one-line usage errors
def test_usage_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    """Unknown option, missing argument, bad value, unknown command: ``error: ...`` and where to look, exit 2."""
    cases = {
        ("models", "list", "--bogus"): "error: No such option: --bogus (try 'shipyard models list --help')",
        ("models", "show"): "error: Missing argument 'NAME[:V]' (try 'shipyard models show --help')",
        ("monitor", "fraud", "--last", "x"): "error: Invalid value for '--last'",
        ("modls",): "error: No such command 'modls'. Did you mean 'models'? (try 'shipyard --help')",
    }
    for args, expected in cases.items():
        code, out, err = invoke(*args)
        assert code == 2, (args, code, out, err)
        assert len(err.splitlines()) == 1 and err.startswith(expected), (args, err)
        assert "╭" not in err + out and "Usage:" not in err, (args, err)
    # the installed entry point, as a user runs it
    real = cli(tmp_path / "home", "alias", "set", "fraud")
    assert real.returncode == 2, real
    assert real.stderr == "error: Missing argument 'ALIAS' (try 'shipyard alias set --help')\n"
    assert not (tmp_path / "home").exists(), "a usage error must not create a registry"


# ------------------------------------------------------------------ help without placeholders
def test_no_help_shows_type_placeholders() -> None:
    """Every command's help names values (NAME, DURATION, PATH, N) and shows flags bare: no <str>, <bool>, TEXT."""
    paths = commands()
    assert len(paths) > 30, paths
    for path in paths:
        code, out, _ = invoke(*path, "--help")
        assert code == 0, (path, out)
        found = PLACEHOLDER.findall(out)
        assert not found, (path, found, out)
    _, monitor_help, _ = invoke("monitor", "--help")
    assert re.search(r"--since\s+DURATION", monitor_help), monitor_help
    assert re.search(r"--config\s+PATH", monitor_help), monitor_help


# ------------------------------------------------------------------ --since and --output everywhere
def test_time_windows_are_since_and_files_are_output(tmp_path: Path) -> None:
    """monitor and report take --since (and report --output) like logs, ab and compare; the old names still work
    but are hidden, and giving both spellings is a mistake."""
    for path in [("monitor",), ("report",), ("logs", "show"), ("logs", "query"), ("ab", "report"), ("compare",)]:
        _, text, _ = invoke(*path, "--help")
        assert "--since" in text, path
        assert "--window" not in text, path
    _, report_help, _ = invoke("report", "--help")
    assert re.search(r"--output\s+-o\s+PATH", report_help), report_help
    assert not re.search(r"--out\b", report_help), report_help

    out = str(tmp_path / "r.html")
    code, _, err = invoke("report", "fraud", "--output", out, "--out", out)
    assert (code, err) == (1, "error: --out is the old name of --output; give only --output\n")
    code, _, err = invoke("monitor", "fraud", "--since", "1h", "--window", "1h")
    assert (code, err) == (1, "error: --window is the old name of --since; give only --since\n")
    code, _, err = invoke("monitor", "fraud", "--since", "soon")
    assert code == 1 and err.startswith("error: --since expects a duration such as 30m, 1h or 7d, got 'soon'"), err
    code, _, err = invoke("report", "fraud", "--window", "soon", "--output", out)
    assert code == 1 and err.startswith("error: --window expects a duration"), err
    code, _, err = invoke("report", "fraud", "--since", "1h", "--last", "5", "--output", out)
    assert (code, err) == (1, "error: give either --since or --last, not both\n")
    code, _, err = invoke("report", "fraud")
    assert code == 2 and "--output" in err and len(err.splitlines()) == 1, err


def test_since_reaches_the_monitor(registered: Path) -> None:
    """--since (a duration or an ISO time) is read and used: with nothing logged, the monitor says so."""
    for since in ("1h", "2020-01-01T00:00"):
        code, _, err = invoke("monitor", "fraud", "--since", since)
        assert code == 1, err
        assert err.startswith("error: ") and "predictions" in err and "--since" not in err, err


# ------------------------------------------------------------------ --json on every list and show
def test_every_list_and_show_command_takes_json() -> None:
    """Walk the command tree: each list/show/history/versions/status command has --json."""
    root = typer.main.get_command(app)
    listing = [(path, command) for path, command in walk(root) if path and path[-1] in LISTS_AND_SHOWS]
    assert len(listing) >= 9, [p for p, _ in listing]
    missing = [p for p, c in listing if not any("--json" in getattr(param, "opts", ()) for param in c.params)]
    assert not missing, missing


def test_json_output_parses(registered: Path) -> None:
    """The new --json outputs are one JSON document each, holding what the tables show."""
    code, out, err = invoke("models", "list", "--json")
    assert code == 0, err
    (model,) = json.loads(out)
    assert (model["name"], model["latest_version"], model["aliases"]) == ("fraud", 1, {"production": 1})

    code, out, err = invoke("models", "show", "fraud", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["model"]["name"] == "fraud" and [v["version"] for v in shown["versions"]] == [1]
    assert [c["name"] for c in shown["version"]["signature"]["inputs"]] == ["amount", "hour"]
    assert "seal" not in shown["version"]

    code, out, err = invoke("models", "versions", "fraud", "--json")
    assert code == 0 and json.loads(out)[0]["version"] == 1, err
    code, out, err = invoke("alias", "list", "fraud", "--json")
    assert code == 0 and json.loads(out) == {"production": 1}, err
    code, out, err = invoke("alias", "history", "fraud", "--json")
    assert code == 0, err
    (move,) = json.loads(out)
    assert (move["alias"], move["to_version"], move["actor"]) == ("production", 1, "tester")
    code, out, err = invoke("keys", "list", "--json")
    assert code == 0, err
    (key,) = json.loads(out)
    assert (key["name"], key["scopes"], key["revoked_at"]) == ("app", ["predict"], None)
    assert "secret" not in out and "sy_" not in out


# ------------------------------------------------------------------ serve.yaml typos
def test_serve_yaml_unknown_keys_say_did_you_mean() -> None:
    """Every unknown key is reported at once, at its place, with the closest known key."""
    with pytest.raises(InvalidInput) as caught:
        ServeSettings.from_yaml_text(
            "loging: {enabled: false}\nmodels: {fraud: {max_bach_size: 8}}\nmonitoring: {x: 1}"
        )
    message = str(caught.value)
    assert "loging: unknown setting; did you mean 'logging'?" in message
    assert "models.fraud.max_bach_size: unknown setting; did you mean 'max_batch_size'?" in message
    assert "monitoring.x: unknown setting (choose from " in message
    settings = ServeSettings.from_yaml_text("models: {fruad: {max_batch_size: 8}, churn: {}}")
    with pytest.raises(InvalidInput, match=r"models.fruad: no model 'fruad' is served; did you mean 'fraud'\?$"):
        settings.check_model_names(["fraud", "churn"])
    settings.check_model_names(["fraud", "churn", "fruad"])


def test_serve_refuses_a_typo_in_models_before_starting(registered: Path, tmp_path: Path) -> None:
    """``models: {fruad: ...}`` names no model: one line naming the file and the likely model, exit 1, no server."""
    (tmp_path / "serve.yaml").write_text("models:\n  fruad: {max_batch_size: 8}\n")
    (tmp_path / "typo.yaml").write_text("loging:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(SHIPYARD_HOME=str(registered), SHIPYARD_USER="tester", COLUMNS="200", NO_COLOR="1")
    procs = [
        subprocess.Popen(
            [SHIPYARD, "serve", *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args in (["fraud", "--config", "serve.yaml", "--port", "0"], ["--config", "typo.yaml", "--port", "0"])
    ]
    (served_out, served_err), (typo_out, typo_err) = (p.communicate(timeout=60) for p in procs)
    assert [p.returncode for p in procs] == [1, 1], (served_out, served_err, typo_out, typo_err)
    assert served_err == "error: serve.yaml: models.fruad: no model 'fruad' is served; did you mean 'fraud'?\n"
    assert typo_err == "error: typo.yaml: loging: unknown setting; did you mean 'logging'?\n"
