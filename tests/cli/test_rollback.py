"""``shipyard rollback`` undoes the last change of what is served, whichever kind it was, and says what it undid;
``shipyard alias set`` refuses, without --force, a version whose inputs differ from the current target's.

Real subprocesses on a real SQLite registry: model ``fraud`` with versions 1-2 taking columns ``a, b`` and version 3
taking ``a, b, channel``; ``production`` -> 3 and a deployment that follows ``production``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_") or k == "SHIPYARD_REGISTRY_URL"}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_USER="tester", COLUMNS="200", NO_COLOR="1")
    return subprocess.run([SHIPYARD, *args], env=env, capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_rollback_undoes_the_alias_move_that_broke_clients(home: Path, backend: str) -> None:
    """On SQLite and on PostgreSQL (the order of changes comes from two tables' timestamps)."""
    from shipyard.app import build_service
    from shipyard.config import Settings
    from shipyard.rollouts.spec import DeploymentSpec, Variant

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    y = (X["a"] > 0).astype(int)
    wide = X.assign(channel=rng.integers(0, 3, 40).astype("float64"))
    service = build_service(Settings(home=home, user="sdk"))  # SHIPYARD_REGISTRY_URL on PostgreSQL
    for c in (1.0, 2.0):
        service.register(LogisticRegression(C=c).fit(X, y), "fraud", X=X)
    service.register(LogisticRegression().fit(wide, y), "fraud", X=wide)
    service.set_alias("fraud", "production", 3)
    service.deploy("fraud", DeploymentSpec(kind="pin", variants=(Variant(3, 100),)))
    service.deploy("fraud", DeploymentSpec(kind="alias", alias="production"))
    service.store.close()

    refused = one_error_line(cli(home, "alias", "set", "fraud", "production", "2"))
    assert refused == (
        "error: fraud:2 takes other inputs than fraud:3, which production points to now: 'channel' only in version 3; "
        "clients of fraud@production would get 422s: pass --force to move it anyway"
    )
    forced = cli(home, "alias", "set", "fraud", "production", "2", "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == "fraud@production: 3 -> 2\n"
    assert forced.stderr.startswith("warning: fraud:2 takes other inputs than fraud:3")

    undone = cli(home, "rollback", "fraud")
    assert undone.returncode == 0, undone.stderr
    assert undone.stdout.startswith("undid: alias production moved 3 -> 2 by tester at ")
    assert undone.stdout.endswith("; fraud@production: 2 -> 3\n")

    service = build_service(Settings(home=home, user="sdk"))
    assert service.get_model("fraud").aliases == {"production": 3}
    assert [s.revision for s in service.deployment_history("fraud")] == [1, 2]  # the deployment was not touched
    service.store.close()

    # the next change back is the deployment's: from "follow production" to the pin
    again = cli(home, "rollback", "fraud")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("undid: deployment revision 2 (follows alias production) by sdk at ")
    assert again.stdout.endswith("; fraud: revision 3: rolled back to: pinned to version 3\n")


def test_alias_set_to_the_same_inputs_needs_no_force(home: Path) -> None:
    from shipyard.app import build_service
    from shipyard.config import Settings

    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    service = build_service(Settings(home=home, user="sdk"))
    for c in (1.0, 2.0):
        service.register(LogisticRegression(C=c).fit(X, [0, 0, 1, 1]), "fraud", X=X)
    service.set_alias("fraud", "production", 1)
    service.store.close()
    moved = cli(home, "alias", "set", "fraud", "production", "2")
    assert (moved.returncode, moved.stdout, moved.stderr) == (0, "fraud@production: 1 -> 2\n", "")
