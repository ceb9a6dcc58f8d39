"""Three real replicas behind nginx on one PostgreSQL registry, under load, while the deployment changes.

(a) the production alias moves: no client request fails, every replica serves the new version within 2 s;
(b) a canary whose candidate disagrees with the incumbent is rolled back by its guard: no request fails, the
    deployment ends rolled back with a reason and every replica serves only the incumbent;
(c) one replica is SIGKILLed and restarted: only requests in flight on it may fail (nginx retries them);
(d) ``shipyard deploy --version``, a sticky A/B and ``shipyard rollback``: every replica follows each change
    within 2 s, a sticky key reaches the same version on every replica, no request fails.

Printed (``pytest -s``): requests sent, failed, and how fast each replica followed.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.rollouts.nginx import SHIPYARD, Fleet, Load, Outcome, Replica, fleets
from tests.serving.conftest import fraud_frame, fraud_pipeline

import shipyard

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
FOLLOW_S = 2.0  # the bound: every replica follows a change within 2 s


def _rows(X: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    records = X.head(n).to_dict("records")
    return [{str(k): (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in records]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """``fleet(3)``: three replicas behind nginx, on this process's environment; stopped at the end."""
    with fleets(tmp_path) as start:
        yield start


@pytest.fixture
def fraud_versions(home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """``fraud`` on a fresh PostgreSQL registry: versions 1 and 2 (same data), 3 trained on flipped labels;
    production on 1. Returns the feature table."""
    monkeypatch.setenv("SHIPYARD_REGISTRY_URL", postgres_url)
    X, y = fraud_frame()
    shipyard.register(fraud_pipeline(X, y), "fraud", X=X, y=y)
    shipyard.register(fraud_pipeline(X, y), "fraud", X=X, y=y)
    shipyard.register(fraud_pipeline(X, 1 - y), "fraud", X=X, y=1 - y, description="wrong on purpose")
    shipyard.set_alias("fraud", "production", 1)
    return X


def _served_version(replica: Replica, rows: list[dict[str, Any]]) -> int | None:
    answer = replica.predict("fraud", rows)
    return int(answer.json()["version"]) if answer.status_code == 200 else None


def _follow_times(replicas: list[Replica], rows: list[dict[str, Any]], version: int, since: float,
                  timeout: float = 10.0) -> dict[str, float]:  # fmt: skip
    """Ask each replica directly (one thread each), every 50 ms, until it serves ``version``; the seconds from
    ``since`` (a ``time.monotonic()`` value) to the first answer from ``version``, per replica that got there."""
    seen: dict[str, float] = {}

    def poll(replica: Replica) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _served_version(replica, rows) == version:
                seen[replica.name] = time.monotonic() - since
                return
            time.sleep(0.05)

    threads = [threading.Thread(target=poll, args=(replica,)) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen


def _summary(outcomes: list[Outcome]) -> str:
    failed = [o for o in outcomes if not o.ok]
    errors = sorted({o.error or str(o.status) for o in failed})[:5]
    return f"{len(outcomes)} requests, {len(failed)} failed {errors}"


def test_an_alias_move_reaches_every_replica_within_2_s_without_a_failed_request(
    fleet: Callable[..., Fleet], fraud_versions: pd.DataFrame
) -> None:
    rows = _rows(fraud_versions, 3)
    replicas = fleet(3)
    with Load(f"{replicas.url}/v1/models/fraud/predict", {"instances": rows}, threads=4, max_seconds=20) as load:
        time.sleep(2.0)
        assert {_served_version(r, rows) for r in replicas.replicas} == {1}
        moved_at = time.monotonic()
        shipyard.set_alias("fraud", "production", 2)  # straight into the registry, as the CLI would
        follow = _follow_times(replicas.replicas, rows, 2, moved_at)
        time.sleep(max(0.0, moved_at + FOLLOW_S + 1.0 - time.monotonic()))
    outcomes = load.snapshot()
    print(f"alias move: {_summary(outcomes)}; replicas switched after "
          + ", ".join(f"{name} {s:.2f} s" for name, s in sorted(follow.items())))  # fmt: skip
    assert [o for o in outcomes if not o.ok] == []
    assert len(follow) == 3, f"not every replica switched: {follow}"
    assert max(follow.values()) <= FOLLOW_S, follow
    late = [o.version for o in outcomes if o.sent > moved_at + FOLLOW_S]
    assert late and set(late) == {2}
    assert {o.version for o in outcomes if o.done < moved_at} == {1}
    for replica in replicas.replicas:  # the model listing agrees with the answers
        assert httpx.get(f"{replica.url}/v1/models", timeout=10.0).json()["models"][0]["version"] == 2


def test_a_sigkilled_replica_costs_at_most_its_in_flight_requests_and_comes_back(
    fleet: Callable[..., Fleet], fraud_versions: pd.DataFrame
) -> None:
    rows = _rows(fraud_versions, 3)
    replicas = fleet(3)
    victim = replicas.replicas[0]
    with Load(f"{replicas.url}/v1/models/fraud/predict", {"instances": rows}, threads=4, max_seconds=60) as load:
        time.sleep(2.0)
        killed_at = time.monotonic()
        victim.kill()
        time.sleep(2.0)
        victim.start()
        victim.wait_ready()
        ready_at = time.monotonic()
        time.sleep(3.0)  # nginx's fail_timeout (2 s) lapses and the restarted replica gets traffic again
    outcomes = load.snapshot()
    failures = [o for o in outcomes if not o.ok]
    down = [o for o in outcomes if killed_at < o.sent < ready_at]
    back = [o for o in outcomes if o.sent > ready_at and o.ok and o.upstream.endswith(f":{victim.port}")]
    retried = replicas.nginx.retried()
    print(f"SIGKILL of one replica: {_summary(outcomes)}; {replicas.nginx.cut_off()} in flight on it when killed; "
          f"{len(retried)} retried by nginx on another replica; "
          f"{len(down)} sent while it was down ({ready_at - killed_at:.1f} s); {len(back)} answered by it after "
          f"its restart")  # fmt: skip
    print("\n".join(retried[:10]))
    # only requests in flight on the killed replica may fail: sent before the kill, answered after it, and at
    # most one per client (a client has one request in flight)
    assert all(o.sent <= killed_at <= o.done for o in failures), failures
    assert len(failures) <= load.threads
    assert down and all(o.ok for o in down)  # the two other replicas took the traffic
    assert back, "nginx never sent a request to the restarted replica"
    assert victim.starts == 2 and victim.process is not None and victim.process.poll() is None


def test_a_canary_that_disagrees_is_rolled_back_on_every_replica_without_a_failed_request(
    fleet: Callable[..., Fleet], fraud_versions: pd.DataFrame
) -> None:
    rows = _rows(fraud_versions, 3)
    replicas = fleet(3)
    service = shipyard.connect()
    with Load(f"{replicas.url}/v1/models/fraud/predict", {"instances": rows}, threads=4, max_seconds=60) as load:
        time.sleep(2.0)
        deployed_at = time.monotonic()
        canary = ["--canary", "3", "--steps", "10,50,100", "--interval", "5s", "--min-agreement", "0.95",
                  "--min-requests", "30", "--check", "1s"]  # fmt: skip
        done = subprocess.run([SHIPYARD, "deploy", "fraud", *canary], capture_output=True, text=True,
                              env=dict(os.environ), timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        deadline = time.monotonic() + 40
        state = service.deployment("fraud")
        while time.monotonic() < deadline:
            state = service.deployment("fraud")
            if state is not None and state.spec is not None and state.spec.get("status") == "rolled_back":
                break
            time.sleep(0.1)
        rolled_back_at = time.monotonic()
        time.sleep(FOLLOW_S + 0.5)
        after = {r.name: {_served_version(r, rows) for _ in range(20)} for r in replicas.replicas}
        time.sleep(0.5)
    outcomes = load.snapshot()
    candidate = [o for o in outcomes if o.version == 3]
    print(f"canary rolled back: {_summary(outcomes)}; {len(candidate)} answered by the candidate; rolled back "
          f"{rolled_back_at - deployed_at:.1f} s after the deploy; reason: {state.reason if state else None!r}")
    assert state is not None and state.spec is not None
    assert state.spec.get("status") == "rolled_back", state
    assert state.reason, "a guard rollback must say why"
    assert "agree" in state.reason.lower(), state.reason
    assert [o for o in outcomes if not o.ok] == []
    assert candidate, "the candidate never answered: the canary did not run"
    assert after == {r.name: {1} for r in replicas.replicas}, after
    assert not [o for o in outcomes if o.version == 3 and o.sent > rolled_back_at + FOLLOW_S]
    assert "canary-rollback" in [h.action for h in service.deployment_history("fraud")]
    assert shipyard.resolve("fraud@production").version == 1  # the alias never moved


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([SHIPYARD, *args], capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _changed_at(model: str = "fraud") -> float:
    """When the current deployment revision of ``model`` was written, on this process's monotonic clock."""
    state = shipyard.connect().deployment(model)
    assert state is not None
    return time.monotonic() - (time.time() - state.at.timestamp())


def _sticky_versions(replica: Replica, rows: list[dict[str, Any]], keys: list[str]) -> dict[str, int]:
    answers = {}
    with httpx.Client(base_url=replica.url, timeout=10.0) as client:
        for key in keys:
            answer = client.post("/v1/models/fraud/predict", json={"instances": rows}, headers={"X-Shipyard-Key": key})
            assert answer.status_code == 200, answer.text
            answers[key] = int(answer.headers["X-Shipyard-Version"])
    return answers


def test_pin_sticky_ab_and_rollback_reach_every_replica_within_2_s_without_a_failed_request(
    fleet: Callable[..., Fleet], fraud_versions: pd.DataFrame
) -> None:
    rows = _rows(fraud_versions, 3)
    replicas = fleet(3)
    keys = [f"customer-{i}" for i in range(40)]
    with Load(f"{replicas.url}/v1/models/fraud/predict", {"instances": rows}, threads=4, max_seconds=60) as load:
        time.sleep(1.0)
        _cli("deploy", "fraud", "--version", "2")
        pinned_at = _changed_at()  # when the change was committed (the CLI's start-up is not the servers' delay)
        pinned = _follow_times(replicas.replicas, rows, 2, pinned_at)
        _cli("deploy", "fraud", "--ab", "1:50,3:50", "--sticky", "customer_id")  # no 2: the rollback shows
        time.sleep(FOLLOW_S)
        sticky = {r.name: _sticky_versions(r, rows, keys) for r in replicas.replicas}
        _cli("rollback", "fraud")  # back to the pin on version 2
        rolled_back_at = _changed_at()
        rolled_back = _follow_times(replicas.replicas, rows, 2, rolled_back_at)
        time.sleep(max(0.0, rolled_back_at + FOLLOW_S + 1.0 - time.monotonic()))
        after = {r.name: {_served_version(r, rows) for _ in range(20)} for r in replicas.replicas}
    outcomes = load.snapshot()
    print(f"pin, sticky A/B, rollback: {_summary(outcomes)}; pin followed after "
          + ", ".join(f"{s:.2f} s" for _, s in sorted(pinned.items()))
          + "; rollback followed after " + ", ".join(f"{s:.2f} s" for _, s in sorted(rolled_back.items())))
    assert [o for o in outcomes if not o.ok] == []
    assert len(pinned) == 3 and max(pinned.values()) <= FOLLOW_S, pinned
    first = sticky[replicas.replicas[0].name]
    assert all(answers == first for answers in sticky.values()), "a key reached different versions on replicas"
    assert set(first.values()) == {1, 3}, first  # 40 keys at 50/50: both variants get some
    assert len(rolled_back) == 3 and max(rolled_back.values()) <= FOLLOW_S, rolled_back
    assert after == {r.name: {2} for r in replicas.replicas}, after
    assert [h.action for h in shipyard.connect().deployment_history("fraud")][-1] == "rollback"
