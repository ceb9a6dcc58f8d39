"""Choosing a version: weights, sticky keys stable across processes, the sticky field in every row shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest

from shipyard.serving.routing import RoutingTable, key_point, sticky_value, without_field


def test_weights_split_the_unit_interval_exactly() -> None:
    table = RoutingTable.build({3: 90.0, 4: 10.0})
    points = [i / 100 for i in range(10_000)]  # 0.00 .. 99.99
    counts = Counter(table.choose(p) for p in points)
    assert counts == {3: 9_000, 4: 1_000}
    assert RoutingTable.build({3: 100.0, 4: 0.0}).single == 3  # a zero weight gets nothing
    with pytest.raises(ValueError, match="positive weight"):
        RoutingTable.build({3: 0.0})


def test_random_draws_follow_the_weights() -> None:
    table = RoutingTable.build({1: 70.0, 2: 20.0, 3: 10.0})
    counts = Counter(table.pick() for _ in range(100_000))
    assert abs(counts[1] / 1_000 - 70) < 1 and abs(counts[2] / 1_000 - 20) < 1 and abs(counts[3] / 1_000 - 10) < 1


def test_sticky_keys_hash_the_same_in_every_process() -> None:
    keys = [f"customer-{n}" for n in range(200)] + ["", "ünïcode", "42"]
    here = [key_point(k) for k in keys]
    code = (
        "import sys, json; from shipyard.serving.routing import key_point; "
        "print(json.dumps([key_point(k) for k in json.loads(sys.argv[1])]))"
    )
    for seed in ("1", "2"):  # hash() would differ between these processes; blake2b does not
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(keys)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        assert json.loads(out) == here
    table = RoutingTable.build({1: 50.0, 2: 50.0})
    assert set(Counter(table.pick_for_key(k) for k in keys)) == {1, 2}


def test_a_growing_canary_keeps_its_keys() -> None:
    keys = [f"k{n}" for n in range(2_000)]
    on_candidate: set[str] = set()
    for share in (5.0, 25.0, 50.0, 100.0):
        table = RoutingTable.build({3: 100.0 - share, 4: share})
        now = {k for k in keys if table.pick_for_key(k) == 4}
        assert on_candidate <= now  # nobody moves back to the incumbent as the candidate's share grows
        assert abs(len(now) / len(keys) * 100 - share) < 3
        on_candidate = now


def test_the_sticky_field_is_read_from_every_row_shape_and_dropped() -> None:
    records = [{"customer_id": 7, "amount": 1.0}, {"customer_id": 8, "amount": 2.0}]
    columns = {"customer_id": ["a", "b"], "amount": [1.0, 2.0]}
    frame = pd.DataFrame(columns)
    assert sticky_value(records, "customer_id") == "7"
    assert sticky_value(columns, "customer_id") == "a"
    assert sticky_value(frame, "customer_id") == "a"
    assert sticky_value([[1.0, 2.0]], "customer_id") is None  # rows of values: use the X-Shipyard-Key header
    assert sticky_value([{"amount": 1.0}], "customer_id") is None
    assert without_field(records, "customer_id") == [{"amount": 1.0}, {"amount": 2.0}]
    assert records[0] == {"customer_id": 7, "amount": 1.0}  # the caller's rows are left alone
    assert without_field(columns, "customer_id") == {"amount": [1.0, 2.0]}
    assert list(without_field(frame, "customer_id").columns) == ["amount"]
