"""Monitoring benchmark: what the prediction log costs the server, and drift over a million logged rows.

Run by hand (not in CI), on a quiet machine, with ``wrk`` installed (``apt-get install -y wrk``)::

    python bench/monitoring.py [--duration 10] [--rounds 2] [--rows 1000000]

1. Throughput: the same ``shipyard serve lr`` (1 worker, a logistic regression on 10 named features) with the
   prediction log off and on (default settings: Parquet under the scratch home, 1 s flushes), driven by wrk at
   concurrency 64 with 1-row and 100-row requests. The rounds alternate off/on so drift of the machine hits
   both; the best round of each is kept. Printed: requests/s, rows/s, p50 and p99 per mode, and the ratio
   on/off (goal >= 0.9); also the server's CPU time per request (the least of the rounds) and its ratio off/on,
   which a noisy machine moves much less than requests/s. After each "on" run the log is read back: every
   answered row must be in it.
2. Drift: ``--rows`` rows written by :class:`PredictionLogger` (10 numeric features, predictions and
   probabilities of the model), read back with ``PredictionLog.predictions`` and checked with
   ``drift_report`` against the version's reference profile. Printed: the read time and the
   ``drift_report`` time (goal < 2 s).

Results are appended to ``bench/results/monitoring.jsonl`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _wrk import FEATURES, WRK_SCRIPT, cpu_seconds, training_data, wrk  # noqa: E402
from _wrk import start_server as serve_lr  # noqa: E402


def register() -> Any:
    """``lr``: a logistic regression on 10 named float features, production on version 1 (with its profile)."""
    from sklearn.linear_model import LogisticRegression

    import shipyard

    X, y = training_data(20_000)
    model = LogisticRegression().fit(X, y)
    shipyard.register(model, "lr", X=X, y=y)
    shipyard.set_alias("lr", "production", 1)
    return model


def start_server(home: Path, logging_on: bool, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``shipyard serve lr`` (one worker, monitor off) with its prediction log on or off."""
    config = workdir / f"serve-{'on' if logging_on else 'off'}.yaml"
    config.write_text(f"logging:\n  enabled: {'true' if logging_on else 'false'}\nmonitoring:\n  enabled: false\n")
    return serve_lr(home, workdir, config, timeout=60)


def throughput(home: Path, workdir: Path, duration: int, rounds: int, concurrency: int) -> dict[str, Any]:
    """Best requests/s per (mode, rows), the log checked after each run with logging on."""
    from shipyard.monitoring.logs import PredictionLog

    X, _ = training_data(100, seed=1)
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    bodies = {}
    for rows in (1, 100):
        bodies[rows] = workdir / f"rows{rows}.json"
        bodies[rows].write_text(json.dumps({"instances": X.head(rows).to_dict("records")}))
    best: dict[tuple[str, int], dict[str, Any]] = {}
    cpu_min: dict[tuple[str, int], float] = {}  # least server CPU per request of each (mode, rows) over the rounds
    for round_ in range(rounds):
        for mode in ("off", "on"):
            logs = home / "logs"
            shutil.rmtree(logs, ignore_errors=True)
            process, port = start_server(home, mode == "on", workdir)
            try:
                wrk(port, bodies[1], script, 8, 2)  # warm-up, not counted
                results = {}
                for rows in (1, 100):
                    before = cpu_seconds(process.pid)
                    results[rows] = wrk(port, bodies[rows], script, concurrency, duration)
                    used = cpu_seconds(process.pid) - before
                    results[rows]["cpu_ms_per_request"] = used * 1000 / max(1, results[rows]["requests"])
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
            for rows, result in results.items():
                if result["non2xx"] or result["errors"]:
                    print(f"warning: {mode} {rows} rows: {result['non2xx']} non-2xx, {result['errors']} errors")
                print(f"round {round_ + 1} logging {mode:3} {rows:3} rows/request: {result['rps']:8.0f} req/s "
                      f"p50 {result['p50_us'] / 1000:6.2f} ms p99 {result['p99_us'] / 1000:6.2f} ms, "
                      f"{result['cpu_ms_per_request']:.3f} CPU ms/request")  # fmt: skip
                key = (mode, rows)
                if key not in best or result["rps"] > best[key]["rps"]:
                    best[key] = result
                cpu_min[key] = min(result["cpu_ms_per_request"], cpu_min.get(key, float("inf")))
            if mode == "on":
                answered = sum(r["requests"] * rows for rows, r in results.items())  # wrk's count, warm-up aside
                logged = len(PredictionLog(logs).predictions("lr"))
                status = "ok" if logged >= answered else "MISSING ROWS"
                print(f"  log check: {logged} rows logged (warm-up included), {answered} answered to wrk: {status}")
    summary: dict[str, Any] = {}
    for rows in (1, 100):
        off, on = best[("off", rows)], best[("on", rows)]
        ratio = on["rps"] / off["rps"]
        cpu_off, cpu_on = cpu_min[("off", rows)], cpu_min[("on", rows)]
        summary[f"rows{rows}"] = {"off_rps": off["rps"], "on_rps": on["rps"], "ratio": ratio,
                                  "off_p99_ms": off["p99_us"] / 1000, "on_p99_ms": on["p99_us"] / 1000,
                                  "off_cpu_ms": cpu_off, "on_cpu_ms": cpu_on,
                                  "cpu_ratio": cpu_off / cpu_on}  # fmt: skip
        verdict = "meets" if ratio >= 0.9 else "MISSES"
        print(f"{rows:3} rows/request, concurrency {concurrency}: logging on/off = {on['rps']:.0f}/{off['rps']:.0f} "
              f"req/s = {ratio:.3f} ({verdict} the 0.9 goal; {on['rps'] * rows:.0f} rows/s logged); CPU per request "
              f"{cpu_off:.3f}/{cpu_on:.3f} ms = {cpu_off / cpu_on:.3f} (the ratio a CPU-bound server would see on a "
              "quiet machine)")  # fmt: skip
    return summary


def drift(home: Path, model: Any, rows: int) -> dict[str, Any]:
    """Write ``rows`` logged predictions, read them back and time ``drift_report`` over them."""

    import shipyard
    from shipyard.evaluation.drift import drift_report
    from shipyard.monitoring.logs import PredictionLog
    from shipyard.monitoring.predlog import PredictionLogger
    from shipyard.serving.settings import LogSettings

    root = home / "drift-logs"
    shutil.rmtree(root, ignore_errors=True)
    X, _ = training_data(rows, seed=2)
    X["x0"] += 0.3  # some drift, so the report has something to find
    predictions = model.predict(X)
    probabilities = model.predict_proba(X)
    settings = LogSettings(path=root, flush_interval_s=3600, flush_rows=100_000, buffer_rows=rows)
    logger = PredictionLogger(settings, home=home)
    logger.start()
    started = time.perf_counter()
    step = 1_000
    for first in range(0, rows, step):
        records = X.iloc[first : first + step].to_dict("records")  # as a server gets them: JSON records
        logger.record("lr", 1, "native", f"r{first}", records, FEATURES,
                      predictions[first : first + step], probabilities[first : first + step], 0.001)  # fmt: skip
    logger.close()
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    live = PredictionLog(root).predictions("lr")
    read_s = time.perf_counter() - started
    assert len(live) == rows, (len(live), rows)
    profile = shipyard.connect().resolve("lr:1").profile
    if profile is None:
        sys.exit("version 1 of lr has no reference profile; the drift benchmark needs one")
    drift_report(profile, live.head(1_000))  # imports scipy.stats (about 2 s, once per process): not timed
    started = time.perf_counter()
    report = drift_report(profile, live)
    drift_s = time.perf_counter() - started
    verdicts = {d.feature: d.verdict for d in report}
    verdict = "meets" if drift_s < 2.0 else "MISSES"
    print(f"drift over {rows:,} logged rows: written in {write_s:.2f} s, read back in {read_s:.2f} s, drift_report "
          f"{drift_s:.2f} s ({verdict} the 2 s goal); x0 {verdicts.get('x0')}, x5 {verdicts.get('x5')}")  # fmt: skip
    return {"rows": rows, "write_s": write_s, "read_s": read_s, "drift_s": drift_s, "features": len(report)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating off/on rounds (the best of each is kept)")
    parser.add_argument("--concurrency", type=int, default=64, help="wrk connections")
    parser.add_argument("--rows", type=int, default=1_000_000, help="logged rows for the drift timing")
    parser.add_argument("--skip-throughput", action="store_true", help="only the drift timing")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "monitoring.jsonl")
    args = parser.parse_args()
    if not args.skip_throughput and shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    workdir = Path(tempfile.mkdtemp(prefix="shipyard-bench-monitoring-"))
    home = workdir / "home"
    os.environ["SHIPYARD_HOME"] = str(home)
    try:
        model = register()
        record: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count()}
        if not args.skip_throughput:
            record["throughput"] = throughput(home, workdir, args.duration, args.rounds, args.concurrency)
            record["throughput"]["duration_s"] = args.duration
        record["drift"] = drift(home, model, args.rows)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"results appended to {args.out}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
