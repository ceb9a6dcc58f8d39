"""Each atheris harness of fuzz/ replays its corpus (seeds and the crashes kept as regression cases), then
fuzzes for a short, bounded run; any exception other than a 4xx shipyard error fails the test.

The long by-hand runs are in fuzz/README.md. Without atheris the test is skipped, except under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).parents[2] / "fuzz"
HARNESSES = ["v2_codec", "tabular", "signature_validate"]
RUNS = 20_000  # executions after the corpus, at most
SECONDS = 6  # and at most this long: the three harnesses take < 30 s of CPU together


@pytest.fixture(scope="module")
def atheris_available() -> None:
    if importlib.util.find_spec("atheris") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("atheris must be installed when CI=true: pip install -e '.[dev]'")
        pytest.skip("atheris is not installed (pip install atheris)")


@pytest.mark.parametrize("harness", HARNESSES)
def test_harness_replays_its_corpus_and_survives_a_short_run(
    harness: str, tmp_path: Path, atheris_available: None
) -> None:
    kept = sorted((FUZZ / "corpus" / harness).iterdir())
    assert any(p.name.startswith("seed-") for p in kept), f"no seeds in fuzz/corpus/{harness}: run fuzz/seeds.py"
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "corpus" / harness, corpus)  # the fuzzer adds what it finds: not into the repository
    command = [
        sys.executable,
        str(FUZZ / f"{harness}.py"),
        str(corpus),
        f"-runs={RUNS}",
        f"-max_total_time={SECONDS}",
        "-seed=14",
        f"-artifact_prefix={tmp_path}/",
        "-print_final_stats=1",
    ]
    dictionary = FUZZ / f"{harness}.dict"
    if dictionary.exists():
        command.append(f"-dict={dictionary}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    log = done.stdout + done.stderr
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert done.returncode == 0 and not crashes, (
        f"{harness} crashed (exit {done.returncode}); the input is kept in {crashes}: add it to "
        f"fuzz/corpus/{harness}/ as crash-<what>, fix the code, rerun.\n{log[-6000:]}"
    )
    replayed = [line for line in log.splitlines() if "INITED" in line]
    assert replayed, log[-3000:]  # the corpus ran through before fuzzing began
    assert "stat::number_of_executed_units" in log, log[-3000:]
