"""Temporary output files of ``shipyard predict`` and ``shipyard batch score`` never outlive their run.

Real subprocesses are killed by pid in the middle of a run (once a temporary file beside the output holds
scored rows); the next run on the same output must leave nothing behind but its complete, correct output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard import batch
from shipyard.batch import tempfiles

from .conftest import Registry, expected_scores, make_rows
from .test_cli import SHIPYARD, STAMP, TIMEOUT, _env, finish, start
from .test_score import check_scores


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def kill_when(process: subprocess.Popen[str], ready: Callable[[], bool], sig: int) -> None:
    """Send ``sig`` to ``process`` (by pid) as soon as ``ready()``; fail if it ends first."""
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        assert process.poll() is None, f"the run ended before it could be stopped: {process.communicate()[1]}"
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.005)
    os.kill(process.pid, sig)


def temp_with_rows(folder: Path, output: str) -> Callable[[], bool]:
    """Whether a hidden temporary file of ``output`` (any naming) exists with some bytes in it."""

    def ready() -> bool:
        for path in folder.glob(f".{output}.*"):
            try:
                if path.is_file() and path.stat().st_size > 0:
                    return True
            except FileNotFoundError:
                continue
        return False

    return ready


def test_a_batch_score_killed_with_kill_9_leaves_nothing_after_the_next_run(registry: Registry, tmp_path: Path) -> None:
    rows = make_rows(200_000, seed=31)  # the output is streamed from 131,072 rows on: some are left to kill it in
    rows.to_parquet(tmp_path / "tx.parquet", row_group_size=50_000)
    job = ["fraud", "--input", "tx.parquet", "--id-column", "tx_id", "--chunk-rows", "1000", "--scored-at", STAMP]
    victim = start(registry, tmp_path, *job, "--output", "scores.parquet")
    kill_when(victim, temp_with_rows(tmp_path, "scores.parquet"), signal.SIGKILL)
    assert finish(victim)[0] == -signal.SIGKILL
    left = [name for name in hidden(tmp_path) if name.endswith(f"-{victim.pid}") or f"-{victim.pid}-" in name]
    assert left, hidden(tmp_path)  # the killed run's output in progress, named after it

    stamp = pd.Timestamp(STAMP).to_pydatetime()
    run = batch.score("fraud", str(tmp_path / "tx.parquet"), str(tmp_path / "scores.parquet"), id_column="tx_id",
                      chunk_rows=1000, scored_at=stamp, service=registry.service)  # fmt: skip
    assert run.rows == len(rows) and run.resumed_chunks == 0
    assert hidden(tmp_path) == []  # no temporary file, no staging folder
    check_scores(registry, pd.read_parquet(tmp_path / "scores.parquet"), rows)


def test_shipyard_predict_removes_its_temporary_file_on_sigterm_and_after_kill_9(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = make_rows(100_000, seed=32)
    rows.to_parquet(tmp_path / "tx.parquet", row_group_size=50_000)

    def predict(output: str) -> list[str]:
        return ["predict", "fraud", "--input", "tx.parquet", "--output", output, "--allow-extra",
                "--chunk-rows", "1000"]  # fmt: skip

    terminated, killed = (
        subprocess.Popen([SHIPYARD, *predict(output)], env=_env(registry), cwd=tmp_path, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for output in ("terminated.csv", "killed.csv")
    )  # fmt: skip
    kill_when(terminated, temp_with_rows(tmp_path, "terminated.csv"), signal.SIGTERM)
    kill_when(killed, temp_with_rows(tmp_path, "killed.csv"), signal.SIGKILL)
    assert finish(terminated)[0] == -signal.SIGTERM  # it still dies of the signal
    assert finish(killed)[0] == -signal.SIGKILL
    assert not (tmp_path / "terminated.csv").exists() and not (tmp_path / "killed.csv").exists()
    assert [name for name in hidden(tmp_path) if name.startswith(".terminated.csv")] == []  # removed on SIGTERM
    assert [name for name in hidden(tmp_path) if name.startswith(".killed.csv")] != []  # kill -9: nobody could

    from shipyard.cli import main

    monkeypatch.chdir(tmp_path)
    for name, value in _env(registry).items():
        if name.startswith("SHIPYARD_"):
            monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as done:
        main(predict("killed.csv"))
    assert done.value.code == 0
    assert hidden(tmp_path) == []
    scores = pd.read_csv(tmp_path / "killed.csv")
    expected = expected_scores(registry, "fraud", rows)
    assert scores["tx_id"].tolist() == rows["tx_id"].tolist()
    assert np.array_equal(scores["prediction"].to_numpy(), expected["prediction"].to_numpy())
    assert np.allclose(scores["proba_1"].to_numpy(), expected["proba_1"].to_numpy(), rtol=1e-9)


HOLD_A_TEMP = """
import sys, time
from pathlib import Path
from shipyard.batch import tempfiles
path = tempfiles.temp_path(Path(sys.argv[1]))
path.write_bytes(b"half an output")
print(path, flush=True)
time.sleep(60)
"""


def test_only_temporary_files_of_dead_processes_are_swept(tmp_path: Path) -> None:
    target = tmp_path / "scores.parquet"
    own = tempfiles.temp_path(target)
    holders = [
        subprocess.Popen([sys.executable, "-c", HOLD_A_TEMP, str(target)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        dead_path, live_path = (Path(holder.stdout.readline().strip()) for holder in holders)  # type: ignore[union-attr]
        os.kill(holders[0].pid, signal.SIGKILL)
        holders[0].wait(timeout=TIMEOUT)
        other = tmp_path / ".scores.parquet.12345.part"  # not of our naming: never touched
        other.write_bytes(b"someone else's")
        own.write_bytes(b"this process's")

        assert tempfiles.sweep(target) == [dead_path]
        assert not dead_path.exists() and live_path.exists() and other.exists() and own.exists()
    finally:
        for holder in holders:
            holder.kill()
            holder.communicate(timeout=TIMEOUT)
        tempfiles.discard(own)
