"""``shipyard apply`` reports every mistake of a deployments file in one run, one line each, and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def test_four_mistakes_give_four_lines_and_nothing_is_applied(home: Path, tmp_path: Path) -> None:
    from shipyard.app import build_service
    from shipyard.config import Settings

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = (X[:, 0] > 0).astype(int)
    service = build_service(Settings(home=home, user="sdk"))
    for name in ("fraud", "churn", "risk"):
        for c in (1.0, 2.0):
            service.register(LogisticRegression(C=c).fit(X, y), name)
    service.store.close()

    spec = tmp_path / "deployments.yaml"
    spec.write_text(
        "fraud: {ab: '1:50,2:40'}\n"  # weights do not add up
        "churn: {version: 7}\n"  # no such version
        "spam: {version: 1}\n"  # no such model
        "risk: {version: 1, sticky: customer_id}\n",  # sticky on a pin
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_USER="tester", NO_COLOR="1")
    result = subprocess.run([SHIPYARD, "apply", str(spec)], env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: deployment of 'fraud': A/B weights must add up to 100, got 90 (1:50, 2:40)",
        "error: deployment of 'churn': model 'churn' has no version 7; the latest version is 2",
        "error: deployment of 'spam': model 'spam' is not registered; run 'shipyard models list' to see the "
        "registered models",
        "error: deployment of 'risk': --sticky only applies to A/B and canary deployments (--ab, --canary)",
    ]
    service = build_service(Settings(home=home, user="sdk"))
    assert all(service.deployment_history(name) == [] for name in ("fraud", "churn", "risk"))
    service.store.close()
