"""Synthetic transactions, spec files and a ``shipyard`` subprocess runner for the training tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import shipyard

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
FEATURES = ["amount", "merchant_risk", "hour"]
START = pd.Timestamp("2024-01-01")


def transactions(rows: int, *, start: int = 0, seed: int = 0) -> pd.DataFrame:
    """``rows`` labelled transactions; ``start`` numbers the first row.

    Row ``i`` is the same whatever the call, so parts made with different ``start`` values join into
    one growing history (``ts`` is one hour per row). The label is a noisy linear rule of the features.
    """
    X = np.random.default_rng([seed, 0]).normal(size=(start + rows, len(FEATURES)))[start:]
    noise = np.random.default_rng([seed, 1]).normal(scale=0.5, size=start + rows)[start:]
    frame = pd.DataFrame(X * [50.0, 1.0, 6.0] + [100.0, 0.0, 12.0], columns=FEATURES)
    frame["is_fraud"] = ((X @ np.array([1.5, -1.0, 0.5]) + noise) > 0.3).astype("int64")
    frame["ts"] = START + pd.to_timedelta(np.arange(start, start + rows), unit="h")
    return frame


def spec_dict(source: str, **changes: Any) -> dict[str, Any]:
    """A spec for a StandardScaler + SGDClassifier pipeline on ``source``; ``changes`` replace top-level fields."""
    spec: dict[str, Any] = {
        "name": "fraud",
        "data": {"source": source, "incremental": {"new_files": True}},
        "target": "is_fraud",
        "features": FEATURES,
        "preprocess": [{"class": "sklearn.preprocessing.StandardScaler"}],
        "estimator": {"class": "sklearn.linear_model.SGDClassifier",
                      "params": {"loss": "log_loss", "random_state": 0}},
        "validation": {"holdout": 0.25, "seed": 0},
        "metrics": ["accuracy", "f1", "roc_auc", "log_loss"],
        "chunk_rows": 300,
    }
    spec.update(changes)
    return spec


def write_spec(folder: Path, spec: dict[str, Any], name: str = "spec.yaml") -> Path:
    """Write ``spec`` as YAML in ``folder``."""
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def spoil(path: Path) -> None:
    """Make a data file unusable: garbage bytes, then no permissions (root ignores the latter, not the former)."""
    path.write_bytes(b"this is not a data file any more\n\x00\x01")
    path.chmod(0)


@pytest.fixture
def service(home: Path) -> Iterator[shipyard.ModelService]:
    """The SDK's service on this test's SQLite registry."""
    svc = shipyard.connect()
    yield svc
    svc.store.close()


# ---------------------------------------------------------------------- the real command
@dataclass(frozen=True)
class Result:
    """What one ``shipyard`` command did."""

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
        assert "Traceback" not in self.err
        lines = [line for line in self.err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1, f"expected one error line, got:\n{self.err}"
        assert lines[-1] == errors[0], f"the error must be the last thing printed:\n{self.err}"
        return errors[0]


def start(home: Path, *commands: Sequence[str], cwd: Path | None = None) -> Callable[[], list[Result]]:
    """Start every ``shipyard`` command at once; the returned function waits for their results."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SHIPYARD_REGISTRY_URL", "SHIPYARD_ARTIFACTS_URL", "SHIPYARD_TRUSTED_TYPES",
                        "SHIPYARD_DEBUG", "FORCE_COLOR")}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_USER="tester", COLUMNS="200", NO_COLOR="1",
               PYTHONIOENCODING="utf-8")
    procs = [
        (tuple(command), subprocess.Popen([SHIPYARD, *command], env=env, cwd=cwd or home.parent,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for command in commands
    ]

    def wait() -> list[Result]:
        results = []
        for args, proc in procs:
            out, err = proc.communicate(timeout=180)
            results.append(Result(args, proc.returncode, out, err))
        return results

    return wait


def run_many(home: Path, *commands: Sequence[str], cwd: Path | None = None) -> list[Result]:
    """Run the commands concurrently; their results in order."""
    return start(home, *commands, cwd=cwd)()


class Kit:
    """The helpers above, handed to tests as the ``kit`` fixture (test modules cannot import conftest)."""

    FEATURES = FEATURES
    Result = Result
    transactions = staticmethod(transactions)
    spec = staticmethod(spec_dict)
    write_spec = staticmethod(write_spec)
    spoil = staticmethod(spoil)
    start = staticmethod(start)
    run_many = staticmethod(run_many)


@pytest.fixture
def kit() -> type[Kit]:
    """Data, spec and subprocess helpers."""
    return Kit
