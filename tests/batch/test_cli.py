"""``shipyard batch score`` as a real subprocess: the summary, JSON, one-line errors, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import Registry, make_rows
from .test_score import check_scores

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
TIMEOUT = 120
STAMP = "2024-05-01T12:00:00Z"


def _env(registry: Registry) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "DASK_"))}
    env.update(SHIPYARD_HOME=str(registry.home), SHIPYARD_USER="tester", COLUMNS="200", NO_COLOR="1")
    env["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"] = "1s"
    return env


def start(registry: Registry, cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SHIPYARD, "batch", "score", *args],
        env=_env(registry),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def run_many(registry: Registry, cwd: Path, *commands: list[str]) -> list[tuple[int, str, str]]:
    """Run the commands at once (each start costs seconds of imports) and return (code, stdout, stderr)."""
    procs = [start(registry, cwd, *command) for command in commands]
    return [finish(proc) for proc in procs]


# One process runs the command line once per case, through the CLI's entry point, and marks each on
# stderr: the refusals share one start-up instead of paying one each.
EVERY_CASE = """
import json, sys
from shipyard.cli import main
for args in json.loads(sys.argv[1]):
    try:
        main(["batch", "score", *args])
    except SystemExit as exc:
        print(f"=== exit {exc.code}", file=sys.stderr, flush=True)
"""


def run_cases(registry: Registry, cwd: Path, *cases: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", EVERY_CASE, json.dumps(cases)],
        env=_env(registry),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_summary_json_and_one_line_errors(registry: Registry, tmp_path: Path) -> None:
    rows = make_rows(1_500, seed=21)
    rows.to_parquet(tmp_path / "tx.parquet")
    tx = str(tmp_path / "tx.parquet")
    (tmp_path / "tx.csv").write_text(rows.to_csv(index=False))
    common = ["--id-column", "tx_id", "--chunk-rows", "400", "--scored-at", STAMP]
    refusals = run_cases(
        registry,
        tmp_path,
        ["fraud", "-i", "missing.parquet", "-o", "x.parquet"],
        ["nope@production", "-i", tx, "-o", "x.parquet"],
        ["fraud", "-i", tx, "-o", "x.parquet", "--keep", "note,nope"],
        ["fraud", "-i", tx, "-o", "no/such/folder/x.parquet"],
        ["fraud", "-i", tx, "-o", "x.parquet", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9"],
        ["fraud", "-i", tx, "-o", "x.parquet", "--engine", "spark"],
        ["fraud", "-i", tx, "-o", "x.parquet", "--scored-at", "yesterday"],
    )
    (code, out, err), (json_code, json_out, json_err) = run_many(
        registry,
        tmp_path,
        ["fraud@production", "--input", tx, "--output", "scores.parquet", "--keep", "note,channel", *common],
        ["fraud", "-i", str(tmp_path / "tx.csv"), "-o", "scores.csv", "--json", "--resume", *common],
    )

    assert code == 0, err
    assert out.startswith("Scored 1,500 rows with fraud:1 in ")
    assert f"rows/s) -> {tmp_path / 'scores.parquet'}\n" in out
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert list(scores.columns[:3]) == ["tx_id", "note", "channel"]
    check_scores(registry, scores, rows)
    assert (scores["scored_at"] == pd.Timestamp(STAMP)).all()

    assert json_code == 0, json_err
    result = json.loads(json_out)
    assert {k: result[k] for k in ("model", "engine", "rows", "rejected", "chunks", "resumed_chunks", "rejects")} == {
        "model": "fraud:1", "engine": "local", "rows": 1_500, "rejected": 0, "chunks": 4, "resumed_chunks": 0,
        "rejects": None,
    }  # fmt: skip
    assert "Nothing to resume for job" in json_err
    check_scores(registry, pd.read_csv(tmp_path / "scores.csv"), rows)

    expected = [
        "no such file or folder: missing.parquet",
        "model 'nope' is not registered",
        "keep column 'nope' is not in",
        "the folder " + str(tmp_path / "no/such/folder") + " does not exist",
        "cannot reach the Dask scheduler at tcp://127.0.0.1:9",
        "unknown engine 'spark'; use one of local, dask",
        "--scored-at expects an ISO time such as 2024-05-01T12:00:00Z, got 'yesterday'",
    ]
    cases_code, cases_out, cases_err = finish(refusals)
    assert cases_code == 0 and cases_out == "", cases_err
    blocks: list[tuple[str, list[str]]] = []
    lines: list[str] = []
    for line in cases_err.splitlines():
        if line.startswith("=== exit "):
            blocks.append((line.removeprefix("=== exit "), lines))
            lines = []
        else:
            lines.append(line)
    for (exit_code, printed), message in zip(blocks, expected, strict=True):
        assert exit_code == "1" and len(printed) == 1, (message, printed)
        assert printed[0].startswith("error: ") and message in printed[0], (message, printed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv", "scores.parquet", "tx.csv", "tx.parquet"]


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_clean_output(registry: Registry, tmp_path: Path) -> None:
    rows = make_rows(200_000, seed=22)
    rows.to_parquet(tmp_path / "tx.parquet", row_group_size=50_000)
    job = ["fraud", "--input", "tx.parquet", "--id-column", "tx_id", "--chunk-rows", "1000", "--scored-at", STAMP]

    victim = start(registry, tmp_path, *job, "--output", "scores.parquet")
    staging: list[Path] = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and victim.poll() is None:
        staging = list(tmp_path.glob(".scores.parquet.*.parts"))
        if staging and len(list(staging[0].glob("part-*.arrow"))) >= 5:
            break
        time.sleep(0.02)
    assert victim.poll() is None, "the job finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    assert finish(victim)[0] == -signal.SIGKILL

    assert not (tmp_path / "scores.parquet").exists()  # nothing half-written is visible
    done = len(list(staging[0].glob("part-*.arrow")))
    assert 5 <= done < 200

    resumed, clean = run_many(
        registry,
        tmp_path,
        [*job, "--output", "scores.parquet", "--resume", "--json"],
        [*job, "--output", "clean.parquet"],
    )
    assert resumed[0] == 0, resumed[2]
    assert clean[0] == 0, clean[2]
    result = json.loads(resumed[1])
    assert result["resumed_chunks"] >= done and result["chunks"] == 200 and result["rows"] == 200_000
    assert f"Resuming job {result['job_id']}: " in resumed[2]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "scores.parquet"), pd.read_parquet(tmp_path / "clean.parquet"), check_exact=True
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.parquet", "scores.parquet", "tx.parquet"]
