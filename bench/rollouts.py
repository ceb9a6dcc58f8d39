"""Rollouts benchmark: what a 50/50 A/B split and a shadow version cost the server, against one pinned version.

Run by hand (not in CI), on a quiet machine, with ``wrk`` installed (``apt-get install -y wrk``)::

    python bench/rollouts.py [--duration 10] [--rounds 2] [--concurrency 64] [--workers 1]

The same ``shipyard serve lr`` (a logistic regression on 10 named features; the same settings in every mode:
``--workers``, prediction log on with its defaults, live monitor off) is started with one of three deployments
of ``lr``, written to the registry (SQLite in a scratch home) before the server starts:

- ``pin``: every request to version 1 (the reference);
- ``ab``: versions 1 and 2 at 50/50 (goal: throughput >= 0.95 of the pinned one);
- ``shadow``: version 1 answers, every request copied to version 2 after the answer, its prediction logged
  (goal: throughput >= 0.85 of the pinned one).

wrk drives each at concurrency 64 with 1-row requests. Rounds alternate pin/ab/shadow so drift of the machine
hits every mode; the best round of each is kept. Printed: requests/s, p50 and p99 per mode, and the ratios; also
the server's CPU time per request (process and workers, best round), whose ratio is much less disturbed by other
load on the machine than the throughput's (on a shared machine, trust it more). Each
run is checked: the A/B split seen by 400 requests (X-Shipyard-Version header), and for the shadow the rows
logged with route ``shadow`` against the answered ones, and ``shipyard_shadow_dropped_total``.

Results are appended to ``bench/results/rollouts.jsonl`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _wrk import WRK_SCRIPT, cpu_seconds, training_data, wrk  # noqa: E402
from _wrk import start_server as serve_lr  # noqa: E402

MODES = ("pin", "ab", "shadow")
GOALS = {"ab": 0.95, "shadow": 0.85}
def register() -> None:
    """``lr`` versions 1 and 2 (logistic regressions on the same data, different regularisation), production 1."""
    from sklearn.linear_model import LogisticRegression

    import shipyard

    X, y = training_data(20_000)
    shipyard.register(LogisticRegression().fit(X, y), "lr", X=X, y=y)
    shipyard.register(LogisticRegression(C=0.01).fit(X, y), "lr", X=X, y=y)
    shipyard.set_alias("lr", "production", 1)


def deploy(mode: str) -> str:
    """Write the deployment of ``lr`` for ``mode``; returns its one-line description."""
    import shipyard
    from shipyard.rollouts.spec import DeploymentSpec, Variant

    specs = {
        "pin": DeploymentSpec(kind="pin", variants=(Variant(1, 100.0),)),
        "ab": DeploymentSpec(kind="ab", variants=(Variant(1, 50.0), Variant(2, 50.0))),
        "shadow": DeploymentSpec(kind="shadow", variants=(Variant(1, 100.0),), shadow=2, sample=1.0),
    }
    shipyard.connect().deploy("lr", specs[mode])
    return specs[mode].describe()


def start_server(home: Path, workdir: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    """``shipyard serve lr`` with ``workers`` workers and the monitor off (the shadow writes to the log)."""
    config = workdir / "serve.yaml"
    config.write_text("monitoring:\n  enabled: false\n")
    return serve_lr(home, workdir, config, ["--workers", str(workers)])


def split(port: int, body: dict[str, Any], requests: int = 400) -> dict[int, int]:
    """Versions that answered ``requests`` requests, by the X-Shipyard-Version header (body ``version`` else)."""
    import httpx

    seen: Counter[int] = Counter()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for _ in range(requests):
            answer = client.post("/v1/models/lr/predict", json=body)
            answer.raise_for_status()
            seen[int(answer.headers.get("X-Shipyard-Version") or answer.json()["version"])] += 1
    return dict(sorted(seen.items()))


def shadow_dropped(port: int) -> float:
    """``shipyard_shadow_dropped_total`` for ``lr`` from the server's /metrics (0 when absent)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = re.findall(r'^shipyard_shadow_dropped_total\{[^}]*model="lr"[^}]*\}\s+(\S+)', text, re.MULTILINE)
    return sum(float(value) for value in found)


def routes(logs: Path) -> dict[str, int]:
    """Logged rows of ``lr`` per route (``native`` for answers, ``shadow`` for the shadow's copies)."""
    from shipyard.monitoring.logs import PredictionLog

    table = PredictionLog(logs).query("lr", "SELECT route, count(*) AS n FROM predictions GROUP BY route")
    return {str(route): int(n) for route, n in zip(table.column("route").to_pylist(), table.column("n").to_pylist(),
                                                    strict=True)}  # fmt: skip


def run_mode(mode: str, home: Path, workdir: Path, args: argparse.Namespace, body: Path, script: Path,
             row: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """One server with ``mode``'s deployment: warm-up, a check of the routing, the timed wrk run, the log check."""
    logs = home / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    describe = deploy(mode)
    process, port = start_server(home, workdir, args.workers)
    try:
        wrk(port, body, script, 8, 2)  # warm-up, not counted
        seen = split(port, row)
        cpu_before = cpu_seconds(process.pid)
        result = wrk(port, body, script, args.concurrency, args.duration)
        result["cpu_ms_per_request"] = (cpu_seconds(process.pid) - cpu_before) * 1000 / max(1, result["requests"])
        result["dropped"] = shadow_dropped(port) if mode == "shadow" else 0.0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    result["deployment"] = describe
    result["split"] = seen
    if mode == "shadow":
        result["routes"] = routes(logs)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating pin/ab/shadow rounds (best of each kept)")
    parser.add_argument("--concurrency", type=int, default=64, help="wrk connections")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (the same in every mode)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "rollouts.jsonl")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    workdir = Path(tempfile.mkdtemp(prefix="shipyard-bench-rollouts-"))
    home = workdir / "home"
    os.environ["SHIPYARD_HOME"] = str(home)
    os.environ.pop("SHIPYARD_REGISTRY_URL", None)
    os.environ.pop("SHIPYARD_ARTIFACTS_URL", None)
    try:
        register()
        X, _ = training_data(1, seed=1)
        row = {"instances": X.head(1).to_dict("records")}
        body = workdir / "row.json"
        body.write_text(json.dumps(row))
        script = workdir / "post.lua"
        script.write_text(WRK_SCRIPT)
        best: dict[str, dict[str, Any]] = {}
        cpu_min: dict[str, float] = {}  # least server CPU per request of each mode over the rounds
        for round_ in range(args.rounds):
            for mode in MODES:
                result = run_mode(mode, home, workdir, args, body, script, row)
                if result["non2xx"] or result["errors"]:
                    print(f"warning: {mode}: {result['non2xx']} non-2xx, {result['errors']} errors")
                extra = f"split of 400 requests {result['split']}"
                if mode == "shadow":
                    answered = result["routes"].get("native", 0)
                    extra += (f"; log: {answered} answered rows, {result['routes'].get('shadow', 0)} shadow rows, "
                              f"{result['dropped']:.0f} copies dropped")  # fmt: skip
                print(f"round {round_ + 1} {mode:6} ({result['deployment']}): {result['rps']:8.0f} req/s "
                      f"p50 {result['p50_us'] / 1000:6.2f} ms p99 {result['p99_us'] / 1000:6.2f} ms, "
                      f"{result['cpu_ms_per_request']:.3f} CPU ms/request; {extra}")  # fmt: skip
                if mode not in best or result["rps"] > best[mode]["rps"]:
                    best[mode] = result
                cpu_min[mode] = min(result["cpu_ms_per_request"], cpu_min.get(mode, float("inf")))
        pin = best["pin"]
        summary: dict[str, Any] = {"pin": {"rps": pin["rps"], "p99_ms": pin["p99_us"] / 1000,
                                           "cpu_ms_per_request": cpu_min["pin"]}}  # fmt: skip
        for mode in ("ab", "shadow"):
            other = best[mode]
            ratio = other["rps"] / pin["rps"]
            p99_ratio = other["p99_us"] / pin["p99_us"]
            cpu_ratio = cpu_min["pin"] / cpu_min[mode]
            summary[mode] = {"rps": other["rps"], "p99_ms": other["p99_us"] / 1000, "ratio": ratio,
                             "p99_ratio": p99_ratio, "cpu_ms_per_request": cpu_min[mode],
                             "cpu_ratio": cpu_ratio, "goal": GOALS[mode]}  # fmt: skip
            verdict = "meets" if ratio >= GOALS[mode] else "MISSES"
            print(f"{mode:6}/pin: {other['rps']:.0f}/{pin['rps']:.0f} req/s = {ratio:.3f} ({verdict} the "
                  f"{GOALS[mode]} goal); p99 {other['p99_us'] / 1000:.2f} vs {pin['p99_us'] / 1000:.2f} ms "
                  f"(x{p99_ratio:.2f}); CPU per request {cpu_min['pin']:.3f}/{cpu_min[mode]:.3f} ms = "
                  f"{cpu_ratio:.3f} (the throughput ratio a CPU-bound server would see on a quiet machine)")
        record = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
                  "duration_s": args.duration, "concurrency": args.concurrency, "workers": args.workers,
                  "rounds": args.rounds, **summary}  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"results appended to {args.out}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
