"""Real learner processes: SIGKILL mid-stream, takeover by a second process, and a result equal to a clean replay."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tests.online.conftest import coefficients, replay, stream

import shipyard
from shipyard.online import FeedbackEvent, OnlineStore


def _start(name: str, holder: str, log: Path) -> subprocess.Popen[bytes]:
    options = ["--batch", "50", "--snapshot-every", "200", "--snapshot-seconds", "0.5", "--lease-seconds", "2",
               "--poll-seconds", "0.05", "--holder", holder]
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "shipyard.online", name, *options], env=dict(os.environ),
                                stdout=out, stderr=subprocess.STDOUT)


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, f"timed out after {seconds} s waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def test_sigkill_mid_stream_then_takeover_gives_the_clean_replay(service: shipyard.ModelService,
                                                                  tmp_path: Path) -> None:
    X0, y0 = stream(200, seed=0)
    base = make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)).fit(X0, y0)
    service.register(base, "fraud-online", X=X0, y=y0, online=True)
    store = OnlineStore(service)
    X, y = stream(3000, drift_at=2000)

    def feed(start: int, stop: int) -> None:
        store.append("fraud-online", [FeedbackEvent(r, t) for r, t in
                                      zip(X[start:stop].tolist(), y[start:stop].tolist(), strict=True)])

    feed(0, 1000)
    processes = {h: _start("fraud-online", h, tmp_path / f"{h}.log") for h in ("a", "b")}
    try:
        _wait(lambda: store.status("fraud-online").committed_offset >= 400, 60, "a first snapshot")
        holder = store.status("fraud-online").lease_holder
        assert holder in processes
        processes[holder].send_signal(signal.SIGKILL)
        processes[holder].wait()
        killed_at = store.status("fraud-online").committed_offset
        for start in range(1000, 3000, 500):
            feed(start, start + 500)
        other = "b" if holder == "a" else "a"
        took = _wait(lambda: store.status("fraud-online").lease_holder == other, 10, "the takeover")
        assert took < 10
        _wait(lambda: store.status("fraud-online").committed_offset == 3000, 60, "every event to be snapshotted")
        processes[other].send_signal(signal.SIGTERM)
        assert processes[other].wait(timeout=30) == 0
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    status = store.status("fraud-online")
    assert status.lease_holder is None  # the survivor gave its lease up on SIGTERM
    last = service.load(f"fraud-online:{status.last_snapshot_version}").raw
    np.testing.assert_allclose(coefficients(last), coefficients(replay(base, X, y, 50)), rtol=0, atol=1e-9)
    snapshots = sorted((v for v in service.list_versions("fraud-online") if v.tags.get("online")),
                       key=lambda v: v.version)
    spans = [(v.lineage["online"]["from_offset"], v.lineage["online"]["offset"]) for v in snapshots]
    assert spans[0][0] == 0 and spans[-1][1] == 3000
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(spans))  # each event in one snapshot
    assert [v.parent_version for v in snapshots] == [1, *[v.version for v in snapshots[:-1]]]
    assert killed_at in {span[0] for span in spans}  # the survivor resumed from the killed one's last snapshot
