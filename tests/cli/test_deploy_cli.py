"""``shipyard deploy``, ``shipyard apply`` and ``shipyard rollback`` as real subprocesses.

Each test gets its own SHIPYARD_HOME, a copy of a registry made once per module in-process: model
``fraud`` with versions 1-4 and ``production`` -> 3, model ``churn`` with versions 1-2 and no alias.
Independent commands run concurrently (a start of the command costs about a second).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
TIMEOUT = 120


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def ok(self) -> Result:
        assert self.code == 0, f"{self.args} exited {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"
        return self

    @property
    def error_line(self) -> str:
        """The one ``error: ...`` line of a command that failed with exit code 1."""
        assert self.code == 1, f"{self.args} exited {self.code}\n{self.out}\n{self.err}"
        lines = self.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), self.err
        return lines[0]


def run_many(home: Path, *commands: list[str]) -> list[Result]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_") and k != "FORCE_COLOR"}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_USER="tester", COLUMNS="220", NO_COLOR="1", PYTHONIOENCODING="utf-8")
    procs = [
        (tuple(args), subprocess.Popen([SHIPYARD, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, cwd=home.parent))
        for args in commands
    ]
    results = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        results.append(Result(args, proc.returncode, out, err))
    return results


def run(home: Path, *args: str) -> Result:
    return run_many(home, list(args))[0]


def service_for(home: Path):  # type: ignore[no-untyped-def]
    from shipyard.app import build_service
    from shipyard.config import Settings

    return build_service(Settings(home=home, user="sdk"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("deploy-template") / "home"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    service = service_for(home)
    for c in (0.5, 1.0, 2.0, 4.0):
        service.register(LogisticRegression(C=c).fit(X, y), "fraud")
    for c in (1.0, 2.0):
        service.register(LogisticRegression(C=c).fit(X, y), "churn")
    service.set_alias("fraud", "production", 3)
    service.store.close()
    return home


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "home"
    shutil.copytree(template, path)
    return path


def test_deploy_show_history_and_rollback(home: Path) -> None:
    assert run(home, "deploy", "fraud", "--version", "4", "--reason", "pin the fix").ok().out == (
        "fraud: revision 1: pinned to version 4\n")
    assert run(home, "deploy", "fraud", "--ab", "3:90,4:10", "--sticky", "customer_id").ok().out == (
        "fraud: revision 2: A/B 3:90, 4:10 (sticky customer_id)\n")
    canary = run(home, "deploy", "fraud", "--canary", "4", "--steps", "5,25,50,100", "--interval", "10m",
                 "--max-error-rate", "0.01", "--max-p99-ms", "50", "--min-agreement", "0.95", "--min-requests", "20",
                 "--check", "500ms").ok()
    assert canary.out == (
        "fraud: revision 3: canary 4 over 3 at 5% (step 1/4, every 10m), running; "
        "guards: error rate <= 0.01, p99 <= 50 ms, agreement >= 0.95\n")

    service = service_for(home)  # what two serving replicas would have reported for revision 3
    from shipyard.rollouts import RolloutCounters

    fast, slow = RolloutCounters(), RolloutCounters()
    for _ in range(95):
        fast.observe(3.0)
    for i in range(5):
        slow.observe(30.0, error=i == 0)
        slow.observe_agreement(i != 4)
    service.record_rollout_stats("fraud", 3, "replica-a", {3: fast, 4: slow})
    service.record_rollout_stats("fraud", 3, "replica-b", {4: slow})
    service.store.close()

    show, show_json, history, history_json = run_many(
        home, ["deploy", "show", "fraud"], ["deploy", "show", "fraud", "--json"], ["deploy", "history", "fraud"],
        ["deploy", "history", "fraud", "--json"])
    lines = show.ok().out.splitlines()
    assert lines[0] == canary.out.strip()
    assert lines[1].startswith("changed ") and lines[1].endswith(" by tester (deploy)")
    assert lines[2] == "canary running: step 1 of 4 (5% -> 25% -> 50% -> 100%)"
    assert lines[3].startswith("next step in ") and "judged after 20 requests" in lines[3]
    rows = {cells[0]: cells[1:] for line in lines if line.startswith("│")
            for cells in [[c.strip() for c in line.strip("│").split("│")]]}
    assert rows["3"] == ["incumbent", "95", "95", "0", "0", "2.99", "-"]
    assert rows["4"] == ["candidate", "5", "10", "2", "0.2", "29.9", "0.8"]
    data = json.loads(show_json.ok().out)
    assert (data["model"], data["revision"], data["action"], data["actor"]) == ("fraud", 3, "deploy", "tester")
    assert data["spec"]["canary"]["incumbent"] == 3 and data["spec"]["canary"]["max_p99_ms"] == 50.0
    assert data["stats"]["4"]["requests"] == 10 and data["stats"]["4"]["agreement"] == 0.8
    assert data["stats"]["4"]["p99_ms"] == pytest.approx(29.9) and data["served_version"] == 3
    table = [[c.strip() for c in line.strip("│").split("│")] for line in history.ok().out.splitlines()
             if line.startswith("│") and "tester" in line]
    assert [(r[0], r[2], r[3], r[5]) for r in table] == [
        ("1", "tester", "deploy", "pin the fix"), ("2", "tester", "deploy", "-"), ("3", "tester", "deploy", "-")]
    assert table[0][4] == "pinned to version 4"
    assert [(s["revision"], s["description"]) for s in json.loads(history_json.ok().out)] == [
        (1, "pinned to version 4"), (2, "A/B 3:90, 4:10 (sticky customer_id)"),
        (3, canary.out.split(": ", 2)[2].strip())]

    undid_canary = run(home, "rollback", "fraud").ok().out
    assert undid_canary.startswith("undid: deployment revision 3 (canary 4 over 3 at 5% ")
    assert " by tester at " in undid_canary
    assert undid_canary.endswith("; fraud: revision 4: rolled back to: A/B 3:90, 4:10 (sticky customer_id)\n")
    undid_ab = run(home, "rollback", "fraud").ok().out
    assert undid_ab.startswith("undid: deployment revision 2 (A/B 3:90, 4:10 (sticky customer_id)) by tester at ")
    assert undid_ab.endswith("; fraud: revision 5: rolled back to: pinned to version 4\n")
    shadow = run(home, "deploy", "fraud", "--shadow", "2", "--sample", "0.5").ok()
    assert shadow.out == "fraud: revision 6: version 4, shadow 2 (50% of requests)\n"  # primary: the version served now
    with_primary = run(home, "deploy", "fraud", "--shadow", "4", "--version", "3").ok()
    assert with_primary.out == "fraud: revision 7: version 3, shadow 4 (100% of requests)\n"
    back_to_alias, alias_rollback = run_many(home, ["deploy", "fraud", "--alias", "production"],
                                             ["rollback", "churn"])
    assert back_to_alias.ok().out == "fraud: revision 8: follows alias production\n"
    assert "model 'churn' has no alias 'production'" in alias_rollback.error_line  # no history: the alias path
    shown, explicit_alias = run_many(home, ["deploy", "show", "fraud"], ["rollback", "fraud", "--alias", "production"])
    assert shown.ok().out.splitlines()[0] == "fraud: revision 8: follows alias production"
    assert "alias production points to version 3" in shown.out
    assert "alias 'production' of model 'fraud' has no earlier version" in explicit_alias.error_line


def test_apply_validates_the_whole_file_then_records_only_changes(home: Path) -> None:
    good = home.parent / "deployments.yaml"
    good.write_text(
        "fraud:\n"
        "  canary: {version: 4, steps: [10, 50, 100], interval: 5m, max_error_rate: 0.02}\n"
        "  sticky: customer_id\n"
        "churn:\n"
        "  ab: {1: 70, 2: 30}\n",
        encoding="utf-8",
    )
    bad = home.parent / "bad.yaml"
    bad.write_text("churn: {version: 2}\nfraud: {ab: '3:50,9:50'}\n", encoding="utf-8")
    broken = home.parent / "broken.yaml"
    broken.write_text("fraud: {version: 4\n", encoding="utf-8")
    not_a_number = home.parent / "nan.yaml"
    not_a_number.write_text("fraud:\n  ab: '3:50,4:40'\n", encoding="utf-8")
    refused = run_many(home, ["apply", str(bad)], ["apply", str(broken)], ["apply", str(not_a_number)],
                       ["apply", str(home.parent / "missing.yaml")])
    assert refused[0].error_line == (
        "error: deployment of 'fraud': model 'fraud' has no version 9; the latest version is 4")
    assert refused[1].error_line.startswith(f"error: {broken} is not valid YAML at line 2")
    assert refused[2].error_line == "error: deployment of 'fraud': A/B weights must add up to 100, got 90 (3:50, 4:40)"
    assert refused[3].error_line == f"error: no deployments file at {home.parent / 'missing.yaml'}"

    first = run(home, "apply", str(good), "--reason", "release 12").ok()
    assert first.out.splitlines() == [
        "fraud: revision 1: canary 4 over 3 at 10% (step 1/3, every 5m), running; guards: error rate <= 0.02; "
        "sticky customer_id",
        "churn: revision 1: A/B 1:70, 2:30",
    ]  # churn was not touched by bad.yaml: the whole file is checked before anything is written
    again = run(home, "apply", str(good)).ok()
    assert again.out.splitlines()[-1] == "nothing to change"
    assert again.out.splitlines()[0].startswith("fraud: unchanged (revision 1: canary 4 over 3")
    good.write_text(good.read_text(encoding="utf-8").replace("{1: 70, 2: 30}", "'1:50,2:50'"), encoding="utf-8")
    third = run(home, "apply", str(good)).ok()
    assert third.out.splitlines()[1] == "churn: revision 2: A/B 1:50, 2:50"
    service = service_for(home)
    try:
        assert [(s.revision, s.action, s.actor, s.reason) for s in service.deployment_history("churn")] == [
            (1, "apply", "tester", "release 12"), (2, "apply", "tester", "")]
        assert len(service.deployment_history("fraud")) == 1
    finally:
        service.store.close()


def test_usage_mistakes_are_one_line_errors(home: Path) -> None:
    cases = {
        ("deploy", "fraud", "--ab", "3:90,4:20"): "error: A/B weights must add up to 100, got 110 (3:90, 4:20)",
        ("deploy", "fraud", "--ab", "3=90"): "error: invalid A/B split '3=90': expected VERSION:PERCENT pairs",
        ("deploy", "fraud", "--version", "9"): "error: model 'fraud' has no version 9; the latest version is 4",
        ("deploy", "fraud", "--version", "4", "--ab", "3:50,4:50"): "error: give one of --version, --ab, --canary, "
                                                                    "--shadow or --alias, not --version and --ab",
        ("deploy", "fraud"): "error: say how to deploy: --version N, --ab 3:90,4:10",
        ("deploy", "fraud", "--canary", "4", "--interval", "soon"): "error: invalid duration 'soon'",
        ("deploy", "fraud", "--canary", "4", "--steps", "50,25"): "error: canary steps must be strictly increasing",
        ("deploy", "fraud", "--canary", "3"): "error: the canary candidate 3 is already the incumbent",
        ("deploy", "churn", "--canary", "2"): "error: model 'churn' has no deployment and no 'production' alias",
        ("deploy", "fraud", "--version", "4", "--sample", "0.5"): "error: --sample only applies to a shadow",
        ("deploy", "fraud", "--ab", "3:50,4:50", "--max-p99-ms", "5"): "error: --max-p99-ms only apply to a canary",
        ("deploy", "nope", "--version", "1"): "error: model 'nope' is not registered",
        ("deploy", "show", "fraud", "--version", "4"): "error: 'shipyard deploy show' takes no --version",
        ("deploy", "show", "fraud", "extra"): "error: expected NAME, 'show NAME' or 'history NAME'",
        ("deploy", "fraud", "--version", "4", "--json"): "error: --json applies to 'shipyard deploy show'",
        ("deploy", "show", "nope"): "error: model 'nope' is not registered",
    }
    results = run_many(home, *[list(args) for args in cases])
    for result, expected in zip(results, cases.values(), strict=True):
        assert result.error_line.startswith(expected), (result.args, result.error_line)
        assert result.out == ""
    empty_show, empty_history, usage = run_many(
        home, ["deploy", "show", "churn"], ["deploy", "history", "churn"], ["deploy", "fraud", "--version", "0"])
    assert empty_show.ok().out == "churn: no deployment: requests follow alias production\n"
    assert empty_history.ok().out.startswith("no deployment changes recorded for churn")
    assert usage.code == 2 and "Traceback" not in usage.err  # Typer's own usage error
    service = service_for(home)
    try:
        assert service.deployment_revisions() == {}  # nothing above wrote anything
    finally:
        service.store.close()


def test_help_lists_the_options(tmp_path: Path) -> None:
    deploy, apply, rollback = run_many(tmp_path / "home", ["deploy", "--help"], ["apply", "--help"],
                                       ["rollback", "--help"])
    for option in ("--version", "--ab", "--sticky", "--canary", "--steps", "--interval", "--max-error-rate",
                   "--max-p99-ms", "--min-agreement", "--min-requests", "--check", "--shadow", "--sample", "--alias",
                   "--json", "show NAME", "history NAME"):
        assert option in deploy.ok().out, option
    assert "canary: {version: 4" in apply.ok().out
    assert "deployment" in rollback.ok().out and "--alias" in rollback.out
    assert not (tmp_path / "home").exists()
