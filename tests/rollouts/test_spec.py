"""The deployment data model: specs, parsing of user input, counters and the declarative file format."""

from __future__ import annotations

import json
import math
import random
from itertools import pairwise
from typing import Any

import pytest

from shipyard.errors import InvalidInput
from shipyard.rollouts import (
    LATENCY_BUCKETS_MS,
    CanaryPlan,
    DeploymentSpec,
    RolloutCounters,
    Variant,
    bucket_index,
    parse_ab,
    parse_duration,
    parse_steps,
)
from shipyard.rollouts.declarative import build_spec, parse_deployments

PLAN = CanaryPlan(incumbent=3, candidate=4, steps=(5, 25, 50, 100), interval_s=600, max_error_rate=0.01,
                  max_p99_ms=50, min_agreement=0.95, min_requests=20, check_s=0.5)
SPECS = [
    DeploymentSpec(kind="alias"),
    DeploymentSpec(kind="alias", alias="staging"),
    DeploymentSpec(kind="pin", variants=(Variant(4, 100),)),
    DeploymentSpec(kind="ab", variants=parse_ab("3:90,4:10"), sticky="customer_id"),
    DeploymentSpec(kind="ab", variants=parse_ab("1:33.4,2:33.3,3:33.3")),
    DeploymentSpec(kind="canary", canary=PLAN, step=2, step_started_at=1_700_000_000.5, sticky="customer_id"),
    DeploymentSpec(kind="canary", canary=PLAN).finished("rolled_back", "candidate p99 <= 75 ms above 50 ms"),
    DeploymentSpec(kind="shadow", variants=(Variant(3, 100),), shadow=4, sample=0.5),
    DeploymentSpec(kind="shadow", shadow=4),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_every_kind_survives_a_json_round_trip(spec: DeploymentSpec) -> None:
    data = json.loads(json.dumps(spec.to_json()))
    assert DeploymentSpec.from_json(data) == spec
    assert DeploymentSpec.from_json(data).to_json() == spec.to_json()


def test_versions_and_weights_per_kind() -> None:
    pin, ab, canary = SPECS[2], SPECS[3], SPECS[5]
    assert (pin.versions(), pin.weights(), pin.primary) == ([4], {4: 100.0}, 4)
    assert (ab.versions(), ab.weights(), ab.primary) == ([3, 4], {3: 90.0, 4: 10.0}, 3)
    assert (canary.versions(), canary.weights(), canary.primary) == ([3, 4], {3: 50.0, 4: 50.0}, 3)
    assert SPECS[0].versions() == [] and SPECS[0].weights() == {} and SPECS[0].alias == "production"
    shadow = SPECS[7]
    assert (shadow.versions(), shadow.weights(), shadow.primary) == ([3, 4], {3: 100.0}, 3)


def test_a_canary_moves_through_its_steps_and_ends() -> None:
    spec = DeploymentSpec(kind="canary", canary=PLAN)
    assert spec.status == "running" and spec.weights() == {3: 95.0, 4: 5.0}
    shares = [spec.at_step(i, started_at=float(i)).weights()[4] for i in range(4)]
    assert shares == [5.0, 25.0, 50.0, 100.0]
    assert spec.at_step(3, started_at=0.0).weights()[3] == 0.0  # the incumbent is still loaded for agreement
    promoted = spec.finished("promoted", "passed every step")
    assert (promoted.weights(), promoted.primary, promoted.reason) == ({3: 0.0, 4: 100.0}, 4, "passed every step")
    rolled_back = spec.at_step(2, started_at=5.0).finished("rolled_back", "error rate 0.2 above 0.01")
    assert rolled_back.weights() == {3: 100.0, 4: 0.0} and rolled_back.primary == 3
    assert "rolled back" in rolled_back.describe() and "error rate 0.2 above 0.01" in rolled_back.describe()
    with pytest.raises(InvalidInput, match="canary step must be an index from 0 to 3"):
        spec.at_step(4, started_at=0.0)


def test_an_open_incumbent_or_primary_is_resolved_to_the_version_served_now() -> None:
    open_canary = DeploymentSpec(kind="canary", canary=CanaryPlan(0, 4, (10, 100), 60))
    assert not open_canary.is_resolved and open_canary.weights() == {} and open_canary.versions() == [4]
    resolved = open_canary.resolved(3)
    assert resolved.is_resolved and resolved.weights() == {3: 90.0, 4: 10.0}
    with pytest.raises(InvalidInput, match="already the incumbent"):
        open_canary.resolved(4)
    assert DeploymentSpec(kind="shadow", shadow=4).resolved(2).weights() == {2: 100.0}
    assert SPECS[2].resolved(9) == SPECS[2]  # nothing open: unchanged


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DeploymentSpec(kind="blue-green"),  # type: ignore[arg-type]
         "unknown deployment kind 'blue-green'; use one of: alias, pin"),
        (lambda: DeploymentSpec(kind="pin", variants=(Variant(4, 50),)), "exactly one version with weight 100"),
        (lambda: DeploymentSpec(kind="ab", variants=(Variant(3, 50), Variant(3, 50))), "a version appears twice"),
        (lambda: DeploymentSpec(kind="ab", variants=(Variant(3, 100), Variant(4, 0))), "weight above 0"),
        (lambda: DeploymentSpec(kind="pin", variants=(Variant(4, 100),), sticky="customer_id"),
         "--sticky only applies to A/B and canary"),
        (lambda: DeploymentSpec(kind="ab", variants=parse_ab("3:50,4:50"), sticky="no spaces"),
         "sticky must be the name of a request field"),
        (lambda: DeploymentSpec(kind="shadow", variants=(Variant(4, 100),), shadow=4), "cannot shadow itself"),
        (lambda: DeploymentSpec(kind="shadow", shadow=4, sample=0), "sample is the fraction of requests"),
        (lambda: DeploymentSpec(kind="shadow"), "needs the shadow version"),
        (lambda: DeploymentSpec(kind="canary"), "needs a canary plan"),
        (lambda: DeploymentSpec(kind="canary", canary=PLAN, status="paused"), "canary status must be one of"),
        (lambda: DeploymentSpec(kind="pin", variants=(Variant(4, 100),), step=1), "only apply to canary"),
        (lambda: DeploymentSpec(kind="pin", variants=(Variant(4, 100),), alias="production"),
         "alias only applies to deployments of kind 'alias'"),
        (lambda: Variant(0, 100), "must be a version number"),
        (lambda: Variant(True, 100), "must be a version number"),
        (lambda: Variant(3, math.nan), "must be a finite number"),
        (lambda: CanaryPlan(3, 4, (), 60), "strictly increasing percents in (0, 100]"),
        (lambda: CanaryPlan(3, 4, (0, 50), 60), "strictly increasing"),
        (lambda: CanaryPlan(3, 4, (50, 150), 60), "got 50,150"),
        (lambda: CanaryPlan(3, 4, (50, 100), 0), "positive duration"),
        (lambda: CanaryPlan(3, 4, (50, 100), 60, check_s=-1), "check period must be a positive duration"),
        (lambda: CanaryPlan(3, 4, (50, 100), 60, max_error_rate=5), "between 0 and 1 (e.g. 0.01 for 1%)"),
        (lambda: CanaryPlan(3, 4, (50, 100), 60, min_agreement=-0.1), "min agreement is a fraction"),
        (lambda: CanaryPlan(3, 4, (50, 100), 60, max_p99_ms=0), "positive number of milliseconds"),
        (lambda: CanaryPlan(3, 4, (50, 100), 60, min_requests=-1), "min requests must be a whole number"),
        (lambda: CanaryPlan(4, 4, (50, 100), 60), "already the incumbent"),
    ],
)
def test_bad_specs_are_refused_with_a_message_that_says_what_to_do(make: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        make()  # type: ignore[operator]
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a mapping with a 'kind'"),
        ({"variants": []}, "needs a 'kind'"),
        ({"kind": "pin", "version": 4}, "unknown deployment field(s): version"),
        ({"kind": "pin", "variants": "4:100"}, "variants must be a list"),
        ({"kind": "pin", "variants": [{"version": 4}]}, "each variant must be {version, weight}"),
        ({"kind": "canary", "canary": {"candidate": 4}}, "canary is missing steps, interval_s"),
        ({"kind": "canary", "canary": {"candidate": 4, "steps": [50], "interval_s": 1, "speed": 2}},
         "unknown canary field(s): speed"),
    ],
)
def test_from_json_names_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        DeploymentSpec.from_json(data)
    assert message in str(caught.value)


def test_parse_ab_steps_and_durations() -> None:
    assert parse_ab(" 3 : 90 , 4:10% ") == (Variant(3, 90), Variant(4, 10))
    assert parse_ab("1:33.4,2:33.3,3:33.3")[0].weight == 33.4
    for bad, message in [("", "expected VERSION:PERCENT"), ("3:90,", "expected VERSION:PERCENT"),
                         ("3:90,4:20", "must add up to 100, got 110"), ("3:100", "at least two versions"),
                         ("3:-10,4:110", "expected VERSION:PERCENT"), ("0:50,1:50", "must be a version number")]:
        with pytest.raises(InvalidInput) as caught:
            parse_ab(bad)
        assert message in str(caught.value), bad
    assert parse_steps("5,25,50,100") == (5.0, 25.0, 50.0, 100.0)
    assert parse_steps("10%,100%") == (10.0, 100.0)
    with pytest.raises(InvalidInput, match="strictly increasing"):
        parse_steps("50,25")
    expected = {"10m": 600.0, "30s": 30.0, "1h": 3600.0, "500ms": 0.5, "2.5": 2.5, "1m30s": 90.0, " 2 m ": 120.0,
                "1d": 86400.0, "0": 0.0}
    assert {text: parse_duration(text) for text in expected} == expected
    assert parse_duration(7) == 7.0
    for bad in ["", "10 minutes", "m", "-5s", "1x", "inf", "nan"]:
        with pytest.raises(InvalidInput, match="duration"):
            parse_duration(bad)


def test_latency_buckets_are_log_spaced_from_half_a_millisecond_to_ten_seconds() -> None:
    edges = LATENCY_BUCKETS_MS
    assert edges[0] == 0.5 and edges[-1] == 10_000.0 and 25 <= len(edges) <= 35
    assert all(a < b for a, b in pairwise(edges))
    ratios = [b / a for a, b in pairwise(edges)]
    assert max(ratios) <= 2.0 and min(ratios) >= 1.2
    assert [bucket_index(ms) for ms in (0.0, 0.5, 0.50001, 49.9, 50.0, 50.1, 10_000.0, 10_000.1)] == [
        0, 0, 1, edges.index(50.0), edges.index(50.0), edges.index(50.0) + 1, len(edges) - 1, len(edges)]


def test_counters_p99_error_rate_agreement_and_sum() -> None:
    rng = random.Random(7)
    latencies = [rng.uniform(1.0, 40.0) for _ in range(990)] + [rng.uniform(120.0, 140.0) for _ in range(10)]
    a, b = RolloutCounters(), RolloutCounters()
    for i, ms in enumerate(latencies):
        (a if i % 2 else b).observe(ms, error=i % 100 == 0)
    for i in range(200):
        (a if i % 2 else b).observe_agreement(i % 10 != 0)
    total = a + b
    assert (total.requests, total.errors, total.compared, total.agree) == (1000, 10, 200, 180)
    assert total.error_rate() == 0.01 and total.agreement() == 0.9
    p99 = total.p99_ms()
    for q, estimate in ((0.99, p99), (0.5, total.quantile_ms(0.5)), (0.9, total.quantile_ms(0.9))):
        exact = sorted(latencies)[math.ceil(q * len(latencies)) - 1]
        upper = min(e for e in LATENCY_BUCKETS_MS if e >= exact)
        lower = max([0.0, *(e for e in LATENCY_BUCKETS_MS if e < exact)])
        assert estimate is not None and lower <= estimate <= upper, (q, exact, estimate)
        assert abs(estimate - exact) <= 0.25 * exact, (q, exact, estimate)  # within the bucket, close to the truth
    assert sum(total.latency_buckets) == 1000 and total.latency_buckets == [
        x + y for x, y in zip(a.latency_buckets, b.latency_buckets, strict=True)]
    assert (RolloutCounters().p99_ms(), RolloutCounters().error_rate(), RolloutCounters().agreement()) == (
        None, None, None)
    slow = RolloutCounters()
    slow.observe(60_000)
    assert slow.p99_ms() == math.inf
    assert RolloutCounters(latency_buckets=[1]) + RolloutCounters() == RolloutCounters(
        requests=0, latency_buckets=[1] + [0] * len(LATENCY_BUCKETS_MS))
    data = total.to_json()
    assert data["requests"] == 1000 and data["p99_ms"] == p99
    assert len(data["latency_buckets"]) == len(LATENCY_BUCKETS_MS) + 1


def test_build_spec_from_options_and_files() -> None:
    canary = build_spec({"canary": 4, "steps": "10,100", "interval": "30s", "max_error_rate": 0.01,
                         "min_requests": 5, "check": "250ms", "incumbent": 3, "sticky": "customer_id"})
    assert canary.canary == CanaryPlan(3, 4, (10, 100), 30.0, max_error_rate=0.01, min_requests=5, check_s=0.25)
    assert canary.sticky == "customer_id" and canary.weights() == {3: 90.0, 4: 10.0}
    assert build_spec({"alias": "staging"}) == DeploymentSpec(kind="alias", alias="staging")
    specs = parse_deployments({"deployments": {
        "fraud": {"canary": {"version": 4, "steps": [5, 50, 100], "interval": "10m", "max-p99-ms": 50}},
        "churn": {"ab": [{"version": 1, "weight": 30}, {"version": 2, "weight": 70}]},
        "spam": {"shadow": 4, "version": 2, "sample": 0.1},
        "risk": 7,
    }})
    assert specs["fraud"].canary is not None and specs["fraud"].canary.steps == (5.0, 50.0, 100.0)
    assert specs["fraud"].canary.max_p99_ms == 50.0 and specs["fraud"].canary.incumbent == 0
    assert specs["churn"].weights() == {1: 30.0, 2: 70.0}
    assert specs["spam"].weights() == {2: 100.0} and specs["spam"].shadow == 4 and specs["spam"].sample == 0.1
    assert specs["risk"].describe() == "pinned to version 7"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"version": 4, "canary": 5}, "not --version and --canary"),
        ({}, "say how to deploy"),
        ({"version": 4, "steps": "5,100"}, "--steps only apply to a canary deployment"),
        ({"ab": "1:50,2:50", "interval": "1m", "check": "1s"}, "--interval, --check only apply to a canary"),
        ({"version": 4, "sticky": "k"}, "--sticky only applies to A/B and canary"),
        ({"version": 4, "colour": "red"}, "unknown deployment field(s): colour"),
        ({"canary": {"steps": [5]}}, "needs 'version', the candidate"),
        ({"canary": 4, "min_requests": "many"}, "--min-requests must be a whole number"),
        ({"canary": 4, "max_p99_ms": "fast"}, "--max-p99-ms must be a number"),
        ({"version": "four"}, "--version must be a version number"),
        ({"alias": "Not An Alias"}, "invalid alias name"),
    ]
    for bad, message in cases:
        with pytest.raises(InvalidInput) as caught:
            build_spec(bad)
        assert message in str(caught.value), bad
    for data, message in [
        ("fraud", "maps model names to deployments"),
        ({}, "names no model"),
        ([{"version": 4}], "entry 1 of the deployments list needs a 'model' name"),
        ({"Fraud!": {"version": 4}}, "invalid model name"),
        ({"fraud": [4]}, "deployment of 'fraud': expected a mapping such as {version: 4}"),
        ([{"model": "a", "version": 1}, {"model": "a", "version": 2}], "deployment of 'a': the model appears twice"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            parse_deployments(data)
        assert message in str(caught.value), data
