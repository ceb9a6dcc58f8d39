"""What a new user meets first in ``shipyard batch score`` and ``shipyard predict`` (issue 15, item 16).

Each command runs in this process through Typer's ``CliRunner``, on the session registry of
``conftest.py`` and a few hundred rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from shipyard.cli.app import app

from .conftest import Registry, make_rows


def cli(registry: Registry, *args: str) -> Result:
    """``shipyard ARGS`` in this process, on the session registry."""
    env = {"SHIPYARD_HOME": str(registry.home), "SHIPYARD_USER": "tester", "COLUMNS": "200", "NO_COLOR": "1"}
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_output_without_id_column_keeps_the_row_number(registry: Registry, here: Path) -> None:
    rows = make_rows(300, seed=31)
    rows.to_parquet("tx.parquet")
    done = cli(registry, "batch", "score", "fraud", "-i", "tx.parquet", "-o", "scores.parquet", "--chunk-rows", "128")
    assert done.exit_code == 0, done.output
    scores = pd.read_parquet("scores.parquet")
    assert list(scores.columns[:2]) == ["row", "prediction"]
    assert scores["row"].tolist() == list(range(300))
    keyed = cli(registry, "batch", "score", "fraud", "-i", "tx.parquet", "-o", "keyed.parquet", "--id-column", "tx_id")
    assert keyed.exit_code == 0, keyed.output
    assert list(pd.read_parquet("keyed.parquet").columns[:2]) == ["tx_id", "prediction"]
