"""The canary controller's decisions on a real registry (SQLite and PostgreSQL), with counters as replicas record them.

The clock is the controller's own (passed in), so a step's interval can pass without waiting; everything
else (deployments, leases, counters summed over replicas, compare-and-set) is the real registry.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import shipyard
from shipyard.rollouts import CanaryPlan, DeploymentSpec, RolloutCounters
from shipyard.rollouts.controller import CanaryController, breach


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fraud(service: shipyard.ModelService) -> shipyard.ModelService:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    for c in (0.5, 1.0):
        service.register(LogisticRegression(C=c).fit(X, y), "fraud")
    service.set_alias("fraud", "production", 1)
    return service


def counters(requests: int, *, errors: int = 0, ms: float = 2.0, agree: int = 0, compared: int = 0) -> RolloutCounters:
    c = RolloutCounters(agree=agree, compared=compared)
    for n in range(requests):
        c.observe(ms, error=n < errors)
    return c


def test_steps_advance_after_the_interval_and_the_canary_is_promoted(fraud: shipyard.ModelService) -> None:
    clock = Clock()
    plan = CanaryPlan(0, 2, (10, 50, 100), interval_s=60, max_error_rate=0.01, min_requests=20)
    fraud.deploy("fraud", DeploymentSpec(kind="canary", canary=plan))
    controller = CanaryController(fraud, "replica-a", lambda: ["fraud"], clock=clock)
    for step, share in enumerate((10.0, 50.0, 100.0)):
        state = fraud.deployment("fraud")
        assert state is not None and state.spec is not None
        assert state.spec["step"] == step and state.spec["variants"][1]["weight"] == share
        # two replicas' counters for this revision: 15 + 15 candidate requests, no errors
        for replica in ("r1", "r2"):
            fraud.record_rollout_stats("fraud", state.revision, replica, {1: counters(50), 2: counters(15)})
        clock.now = (state.spec["step_started_at"] or 0) + 30
        decision, _ = controller.check("fraud")
        assert decision.action == "wait"  # half the interval
        clock.now += 31
        decision, check_s = controller.check("fraud")
        assert check_s == plan.check_s
        assert decision.action == ("promote" if step == 2 else "step"), decision
    final = fraud.deployment("fraud")
    assert final is not None and final.action == "canary-promote" and final.spec is not None
    assert final.spec["kind"] == "alias"
    assert fraud.resolve("fraud@production").version == 2
    assert [h.action for h in fraud.deployment_history("fraud")] == [
        "deploy",
        "canary-step",
        "canary-step",
        "canary-promote",
    ]


def test_a_guarded_step_does_not_advance_before_min_requests(fraud: shipyard.ModelService) -> None:
    clock = Clock()
    plan = CanaryPlan(0, 2, (10, 100), interval_s=1, max_error_rate=0.01, min_requests=50)
    state = fraud.deploy("fraud", DeploymentSpec(kind="canary", canary=plan))
    fraud.record_rollout_stats("fraud", state.revision, "r1", {2: counters(49, errors=49)})
    clock.now += 10
    controller = CanaryController(fraud, "replica-a", lambda: ["fraud"], clock=clock)
    decision, _ = controller.check("fraud")
    assert decision.action == "wait" and "49 of 50" in decision.reason  # too few to judge, too few to pass
    fraud.record_rollout_stats("fraud", state.revision, "r2", {2: counters(1)})
    decision, _ = controller.check("fraud")
    assert decision.action == "rollback"
    assert decision.reason == "rolled back at step 1/2: error rate 0.98 > 0.01 over 50 candidate requests"


@pytest.mark.parametrize(
    ("plan", "candidate", "expected"),
    [
        (CanaryPlan(1, 2, (50,), 60, max_p99_ms=50, min_requests=10), counters(100, ms=400.0), "p99 latency"),
        (
            CanaryPlan(1, 2, (50,), 60, min_agreement=0.95, min_requests=10),
            counters(100, agree=80, compared=100),
            "agreement with version 1 0.8 < 0.95 over 100 compared rows",
        ),
        (CanaryPlan(1, 2, (50,), 60, max_error_rate=0.1, min_requests=10), counters(100, errors=5), None),
        (CanaryPlan(1, 2, (50,), 60, min_agreement=0.95, min_requests=10), counters(100, compared=5), None),
    ],
)
def test_guards(plan: CanaryPlan, candidate: RolloutCounters, expected: str | None) -> None:
    found = breach(plan, candidate)
    if expected is None:
        assert found is None
    else:
        assert found is not None and expected in found


def test_a_breach_rolls_back_to_the_incumbent_and_only_the_lease_holder_acts(fraud: shipyard.ModelService) -> None:
    plan = CanaryPlan(0, 2, (50, 100), interval_s=600, min_agreement=0.9, min_requests=10)
    state = fraud.deploy("fraud", DeploymentSpec(kind="canary", canary=plan))
    first = CanaryController(fraud, "replica-a", lambda: ["fraud"])
    second = CanaryController(fraud, "replica-b", lambda: ["fraud"])
    assert first.check("fraud")[0].action == "wait"  # takes the lease; nothing to judge yet
    fraud.record_rollout_stats("fraud", state.revision, "r1", {2: counters(20, agree=0, compared=20)})
    assert second.check("fraud")[0].reason == "another server holds the lease"
    decision, _ = first.check("fraud")
    assert decision.action == "rollback" and "agreement with version 1 0 < 0.9" in decision.reason
    rolled = fraud.deployment("fraud")
    assert rolled is not None and rolled.action == "canary-rollback" and rolled.reason == decision.reason
    spec = DeploymentSpec.from_json(rolled.spec)
    assert spec.status == "rolled_back" and {v: w for v, w in spec.weights().items() if w} == {1: 100.0}
    assert fraud.resolve("fraud@production").version == 1
    assert first.check("fraud")[0].reason == "no running canary"
