"""``shipyard ab report`` covers one A/B deployment revision by default: not the traffic served before the test."""

from __future__ import annotations

import json
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from tests.evaluation.test_abtest import Arm, write_log
from typer.testing import CliRunner

import shipyard
from shipyard.cli.app import app
from shipyard.errors import ShipyardError
from shipyard.rollouts.spec import DeploymentSpec, Variant, parse_ab


def _report(*args: str) -> tuple[int, str]:
    """Exit code and output; a ShipyardError's message as the output (``shipyard`` prints it as one line)."""
    result = CliRunner().invoke(app, ["ab", "report", "fraud", *args], env={"COLUMNS": "200", "NO_COLOR": "1"})
    if isinstance(result.exception, ShipyardError):
        return 1, result.exception.message
    return result.exit_code, result.output


def test_the_report_covers_the_ab_revision_not_the_traffic_before_it(home: Path) -> None:
    service = shipyard.connect()
    X, y = [[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]
    for _ in range(3):
        service.register(LogisticRegression().fit(X, y), "fraud", X=X, y=y)
    # before the test: versions 1 and 3 served (3 as a pin), 50 requests each
    write_log(home / "logs", [Arm(1, labelled=50, correct=10), Arm(3, labelled=50, correct=50)], shadow=False)
    pinned = service.deploy("fraud", DeploymentSpec(kind="pin", variants=(Variant(1, 100),)))
    ab = service.deploy("fraud", DeploymentSpec(kind="ab", variants=parse_ab("1:50,2:50")))
    write_log(home / "logs", [Arm(1, labelled=60, correct=40), Arm(2, labelled=60, correct=50)], seed=1, shadow=False)

    code, out = _report("--json")
    assert code == 0, out
    report = json.loads(out)
    # only the test's traffic and variants: version 3 and the 50 earlier requests of version 1 are left out
    assert [(v["version"], v["requests"], v["labelled"]) for v in report["variants"]] == [(1, 60, 72), (2, 60, 72)]
    assert report["window"].startswith(f"deployment revision {ab.revision} (versions 1, 2) since ")

    code, out = _report()
    assert code == 0, out
    assert "chi-squared" not in out and f"deployment revision {ab.revision}" in out

    code, out = _report("--since", "1h", "--json")  # --since overrides: everything logged in the last hour
    assert code == 0, out
    assert [(v["version"], v["requests"]) for v in json.loads(out)["variants"]] == [(1, 110), (2, 60), (3, 50)]

    code, out = _report("--revision", str(pinned.revision))
    assert code != 0 and "not an A/B test" in out
    code, out = _report("--revision", "99")
    assert code != 0 and "no deployment revision 99" in out
