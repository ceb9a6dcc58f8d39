"""Deployments in the registry through the service API, on SQLite and on PostgreSQL.

Every test runs on both backends (the ``service`` fixture of tests/conftest.py); each gets a model
``fraud`` with versions 1-4 and no alias.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import shipyard
from shipyard.errors import Conflict, InvalidInput, ModelNotFound, VersionNotFound
from shipyard.registry import DeploymentState
from shipyard.rollouts import CanaryPlan, DeploymentSpec, RolloutCounters, Variant, parse_ab

PLAN = CanaryPlan(incumbent=0, candidate=4, steps=(10, 50, 100), interval_s=60, max_error_rate=0.01)


def pin(version: int) -> DeploymentSpec:
    return DeploymentSpec(kind="pin", variants=(Variant(version, 100),))


@pytest.fixture
def fraud(service: shipyard.ModelService) -> shipyard.ModelService:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    for c in (0.5, 1.0, 2.0, 4.0):
        service.register(LogisticRegression(C=c).fit(X, y), "fraud")
    return service


def test_deploy_records_every_change_with_actor_time_and_revision(fraud: shipyard.ModelService) -> None:
    assert fraud.deployment("fraud") is None and fraud.deployment_history("fraud") == []
    assert fraud.deployment_revisions() == {}
    before = datetime.now(UTC)
    first = fraud.deploy("fraud", pin(4), reason="hotfix")
    second = fraud.deploy("fraud", DeploymentSpec(kind="ab", variants=parse_ab("3:90,4:10"), sticky="customer_id"))
    assert (first.revision, first.action, first.reason, first.actor) == (1, "deploy", "hotfix", "tester")
    assert before <= first.at <= second.at <= datetime.now(UTC)
    current = fraud.deployment("fraud")
    assert current == second and current is not None
    spec = current.deployment_spec()
    assert spec is not None and spec.weights() == {3: 90.0, 4: 10.0} and spec.sticky == "customer_id"
    assert [(s.revision, s.describe()) for s in fraud.deployment_history("fraud")] == [
        (1, "pinned to version 4"), (2, "A/B 3:90, 4:10 (sticky customer_id)")]
    assert fraud.deployment_revisions() == {"fraud": 2}
    # a second handle (another process or replica) sees the same
    other = shipyard.connect()
    assert other.deployment("fraud") == current and other.deployment_revisions() == {"fraud": 2}
    other.store.close()


def test_bad_deployments_are_refused_and_write_nothing(fraud: shipyard.ModelService) -> None:
    fraud.deploy("fraud", pin(1))
    with pytest.raises(VersionNotFound, match="model 'fraud' has no version 9; the latest version is 4"):
        fraud.deploy("fraud", DeploymentSpec(kind="ab", variants=parse_ab("3:50,9:50")))
    with pytest.raises(ModelNotFound, match="model 'nope' is not registered"):
        fraud.deploy("nope", pin(1))
    with pytest.raises(InvalidInput, match="invalid model name"):
        fraud.deploy("Bad Name", pin(1))
    with pytest.raises(InvalidInput, match="a deployment is a DeploymentSpec"):
        fraud.deploy("fraud", {"kind": "pin"})  # type: ignore[arg-type]
    with pytest.raises(shipyard.errors.AliasNotFound, match="has no alias 'staging'"):
        fraud.deploy("fraud", DeploymentSpec(kind="alias", alias="staging"))
    assert [s.revision for s in fraud.deployment_history("fraud")] == [1]
    assert fraud.deployment_revisions() == {"fraud": 1}


def test_canary_and_shadow_start_from_the_version_served_now(fraud: shipyard.ModelService) -> None:
    canary = DeploymentSpec(kind="canary", canary=PLAN)
    with pytest.raises(Conflict, match="no deployment and no 'production' alias, so no version is served now"):
        fraud.deploy("fraud", canary)
    with pytest.raises(Conflict, match="no version is served now"):
        fraud.deploy("fraud", DeploymentSpec(kind="shadow", shadow=4))
    assert fraud.deployment("fraud") is None

    fraud.set_alias("fraud", "production", 2)
    assert fraud.served_version("fraud") == 2
    started = time.time()
    state = fraud.deploy("fraud", canary)
    spec = state.deployment_spec()
    assert spec is not None and spec.canary is not None and spec.canary.incumbent == 2
    assert spec.weights() == {2: 90.0, 4: 10.0} and spec.status == "running" and spec.step == 0
    assert spec.step_started_at is not None and started - 1 <= spec.step_started_at <= time.time() + 1

    fraud.deploy("fraud", pin(3))
    shadow = fraud.deploy("fraud", DeploymentSpec(kind="shadow", shadow=4, sample=0.5)).deployment_spec()
    assert shadow is not None and shadow.weights() == {3: 100.0} and shadow.shadow == 4 and shadow.sample == 0.5
    with pytest.raises(InvalidInput, match="version 3 cannot shadow itself"):
        fraud.deploy("fraud", DeploymentSpec(kind="shadow", shadow=3))
    with pytest.raises(InvalidInput, match="the canary candidate 3 is already the incumbent"):
        fraud.deploy("fraud", DeploymentSpec(kind="canary", canary=CanaryPlan(0, 3, (50, 100), 60)))
    explicit = fraud.deploy("fraud", DeploymentSpec(kind="canary", canary=CanaryPlan(1, 4, (50, 100), 60)))
    assert explicit.deployment_spec().weights() == {1: 50.0, 4: 50.0}  # type: ignore[union-attr]


def test_expected_revision_is_a_compare_and_set(fraud: shipyard.ModelService) -> None:
    with pytest.raises(Conflict, match="it is at revision 0, not 3"):
        fraud.deploy("fraud", pin(1), expected_revision=3)
    first = fraud.deploy("fraud", pin(1), expected_revision=0)
    with pytest.raises(Conflict, match="changed meanwhile: it is at revision 1, not 0"):
        fraud.deploy("fraud", pin(2), expected_revision=0)
    assert fraud.deploy("fraud", pin(2), expected_revision=first.revision).revision == 2
    assert [s.describe() for s in fraud.deployment_history("fraud")] == ["pinned to version 1", "pinned to version 2"]


def test_concurrent_changes_with_the_same_expected_revision_let_exactly_one_win(
    fraud: shipyard.ModelService,
) -> None:
    """Eight writers (own connections) race from revision 1: one writes revision 2, seven get Conflict."""
    fraud.deploy("fraud", pin(1))
    services = [shipyard.connect() for _ in range(8)]
    barrier = threading.Barrier(len(services))
    outcomes: list[str] = []

    def attempt(index: int) -> None:
        barrier.wait()
        try:
            services[index].deploy("fraud", pin(2 + index % 3), expected_revision=1)
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(services))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for other in services:
        other.store.close()
    assert sorted(outcomes) == ["conflict"] * 7 + ["won"]
    assert [s.revision for s in fraud.deployment_history("fraud")] == [1, 2]


def test_rollback_walks_back_through_user_changes(fraud: shipyard.ModelService) -> None:
    with pytest.raises(Conflict, match="no earlier state to go back to \\(it has no deployment history\\)"):
        fraud.rollback_deployment("fraud")
    fraud.set_alias("fraud", "production", 2)
    fraud.deploy("fraud", pin(3))
    fraud.deploy("fraud", DeploymentSpec(kind="ab", variants=parse_ab("3:50,4:50")))
    canary = fraud.deploy("fraud", DeploymentSpec(kind="canary", canary=PLAN))
    # the controller's automatic steps are part of the canary's change
    spec = canary.deployment_spec()
    assert spec is not None
    stepped = fraud.deploy("fraud", spec.at_step(1, started_at=time.time()), action="canary-step",
                           expected_revision=canary.revision)
    fraud.deploy("fraud", spec.at_step(1, started_at=1.0).finished("rolled_back", "error rate 0.5 above 0.01"),
                 action="canary-rollback", reason="error rate 0.5 above 0.01", expected_revision=stepped.revision)

    back = fraud.rollback_deployment("fraud")
    assert (back.action, back.describe(), back.actor) == ("rollback", "A/B 3:50, 4:50", "tester")
    assert fraud.rollback_deployment("fraud").describe() == "pinned to version 3"
    nothing = fraud.rollback_deployment("fraud")
    assert nothing.spec is None and nothing.describe() == "no deployment: follows alias production"
    assert fraud.deployment("fraud") == nothing and fraud.served_version("fraud") == 2
    with pytest.raises(Conflict, match="its history is used up"):
        fraud.rollback_deployment("fraud")
    # a new change after rollbacks can be rolled back to the state it replaced
    fraud.deploy("fraud", pin(1))
    assert fraud.rollback_deployment("fraud").spec is None
    actions = [s.action for s in fraud.deployment_history("fraud")]
    assert actions == ["deploy", "deploy", "deploy", "canary-step", "canary-rollback", "rollback", "rollback",
                       "rollback", "deploy", "rollback"]
    assert [s.revision for s in fraud.deployment_history("fraud")] == list(range(1, 11))


def test_rollout_stats_are_upserted_per_replica_and_summed(fraud: shipyard.ModelService) -> None:
    state = fraud.deploy("fraud", DeploymentSpec(kind="ab", variants=parse_ab("3:50,4:50")))

    def counters(requests: int, errors: int, fast: int, slow: int) -> RolloutCounters:
        c = RolloutCounters(requests=requests, errors=errors, agree=requests - 1, compared=requests)
        c.latency_buckets[2] = fast
        c.latency_buckets[20] = slow
        return c

    fraud.record_rollout_stats("fraud", state.revision, "a", {3: counters(10, 0, 10, 0), 4: counters(5, 1, 4, 0)})
    fraud.record_rollout_stats("fraud", state.revision, "b", {4: counters(20, 2, 18, 0)})
    # replica a reports its cumulative counters again: they replace its earlier row
    fraud.record_rollout_stats("fraud", state.revision, "a", {4: counters(50, 1, 40, 9)})
    fraud.record_rollout_stats("fraud", state.revision + 7, "a", {4: counters(999, 999, 0, 0)})
    fraud.record_rollout_stats("fraud", state.revision, "c", {})
    stats = fraud.rollout_stats("fraud", state.revision)
    assert list(stats) == [3, 4]
    assert (stats[3].requests, stats[3].errors, stats[3].latency_buckets[2]) == (10, 0, 10)
    four = stats[4]
    assert (four.requests, four.errors, four.agree, four.compared) == (70, 3, 68, 70)
    assert (four.latency_buckets[2], four.latency_buckets[20], sum(four.latency_buckets)) == (58, 9, 67)
    assert four.error_rate() == pytest.approx(3 / 70)
    assert four.p99_ms() == pytest.approx(300 + 100 * (0.99 * 67 - 58) / 9)  # inside the (300, 400] ms bucket
    assert fraud.rollout_stats("fraud", 99) == {}
    with pytest.raises(ModelNotFound):
        fraud.record_rollout_stats("nope", 1, "a", {1: RolloutCounters()})


def test_the_rollout_lease_has_one_holder_at_a_time(fraud: shipyard.ModelService) -> None:
    assert fraud.acquire_rollout_lease("fraud", "a", 30) is False  # no deployment yet: nothing to control
    fraud.deploy("fraud", pin(1))
    other = shipyard.connect()
    try:
        assert fraud.acquire_rollout_lease("fraud", "a", 0.5) is True
        assert other.acquire_rollout_lease("fraud", "b", 30) is False
        assert fraud.acquire_rollout_lease("fraud", "a", 0.5) is True  # renewal
        fraud.deploy("fraud", pin(2))  # changing the deployment keeps the lease
        assert other.acquire_rollout_lease("fraud", "b", 30) is False
        time.sleep(0.7)
        assert other.acquire_rollout_lease("fraud", "b", 30) is True  # a expired
        assert fraud.acquire_rollout_lease("fraud", "a", 30) is False
        fraud.release_rollout_lease("fraud", "a")  # not the holder: no effect
        assert fraud.acquire_rollout_lease("fraud", "a", 30) is False
        other.release_rollout_lease("fraud", "b")
        assert fraud.acquire_rollout_lease("fraud", "a", 30) is True
    finally:
        other.store.close()


def test_promote_canary_moves_production_and_ends_the_canary_in_one_change(fraud: shipyard.ModelService) -> None:
    fraud.set_alias("fraud", "production", 3)
    fraud.deploy("fraud", pin(3))
    canary = fraud.deploy("fraud", DeploymentSpec(kind="canary", canary=PLAN))
    with pytest.raises(Conflict, match="is not a canary"):
        fraud.promote_canary("fraud", fraud.deployment_history("fraud")[0], "no")
    spec = canary.deployment_spec()
    assert spec is not None
    last = fraud.deploy("fraud", spec.at_step(2, started_at=time.time()), action="canary-step",
                        expected_revision=canary.revision)
    with pytest.raises(Conflict, match="changed meanwhile"):  # a stale state: nothing moves
        fraud.promote_canary("fraud", canary, "passed every step")
    assert fraud.get_model("fraud").aliases == {"production": 3}

    promoted = fraud.promote_canary("fraud", last, "passed every step")
    assert (promoted.action, promoted.reason, promoted.revision) == ("canary-promote", "passed every step", 4)
    assert promoted.spec is not None and promoted.spec["kind"] == "alias" and promoted.spec["alias"] == "production"
    assert fraud.get_model("fraud").aliases == {"production": 4} and fraud.served_version("fraud") == 4
    move = fraud.alias_history("fraud", "production")[-1]
    assert (move.action, move.from_version, move.to_version, move.actor) == ("canary-promote", 3, 4, "tester")
    assert fraud.deployment("fraud") == promoted

    # rolling the promotion back restores the deployment before the canary and moves production back
    back = fraud.rollback_deployment("fraud")
    assert back.describe() == "pinned to version 3"
    assert fraud.get_model("fraud").aliases == {"production": 3}
    assert [m.action for m in fraud.alias_history("fraud", "production")] == ["set", "canary-promote", "rollback"]


def test_a_deployment_state_reads_back_as_a_spec() -> None:
    state = DeploymentState("fraud", 3, pin(2).to_json(), "apply", "", "ann", datetime.now(UTC))
    assert state.deployment_spec() == pin(2) and state.describe() == "pinned to version 2"
    empty = DeploymentState("fraud", 4, None, "rollback", "", "ann", datetime.now(UTC))
    assert empty.deployment_spec() is None and "no deployment" in empty.describe()
