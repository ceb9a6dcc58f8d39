"""Serving benchmark: shipyard against a bare uvicorn ceiling and the peers, in one run, on one machine.

Run by hand (not in CI), after the peers are set up (``bash ../shared/bench/peers/setup_envs.sh``, which
makes the venvs and models under ``$PEERS_DIR``, default /tmp/peers)::

    python bench/serving.py [--duration 10] [--peers 'mlserver-lr-pw0|mlflow-lr-w2|bentoml-lr-w2-batch']

It adds a 100-tree random forest (``rf``) to the peers' models, registers ``lr`` and ``rf`` in a scratch
shipyard home, then drives every server with ``../shared/bench/peers/run_bench.py`` (wrk: single row at
concurrency 1, 8, 64; 100 rows at concurrency 8) and prints requests/s, rows/s, p50 and p99 per system,
and the ratios shipyard/ceiling and shipyard/best peer. Results go to ``bench/results/serving.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS_BENCH = (HERE.parent.parent / "shared" / "bench" / "peers").resolve()
PEERS = Path(os.environ.get("PEERS_DIR", "/tmp/peers"))
MODELS = PEERS / "models"
SHIPYARD = str(Path(sys.executable).parent / "shipyard")
DEFAULT_PEERS = "mlserver-lr-pw0|mlflow-lr-w2|bentoml-lr-w2-batch"


def prepare_rf() -> None:
    """Train the 100-tree forest on the peers' data and record its expected answers."""
    import joblib
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    expected_path = MODELS / "expected.json"
    expected = json.loads(expected_path.read_text())
    if (MODELS / "rf.joblib").exists() and "rf" in expected:
        return
    X, y = make_classification(
        n_samples=200_000, n_features=30, n_informative=12, n_redundant=6, n_clusters_per_class=3,
        weights=[0.985], flip_y=0.002, class_sep=0.8, random_state=42,
    )
    Xtr, _, ytr, _ = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    forest = RandomForestClassifier(n_estimators=100, max_depth=12, random_state=0, n_jobs=2).fit(Xtr, ytr)
    forest.set_params(n_jobs=1)
    joblib.dump(forest, MODELS / "rf.joblib")
    rows1 = np.asarray(json.loads((MODELS / "row1.json").read_text()))
    rows100 = np.asarray(json.loads((MODELS / "rows100.json").read_text()))
    expected["rf"] = {
        "row1": forest.predict_proba(rows1)[:, 1].tolist(),
        "rows100": forest.predict_proba(rows100)[:, 1].tolist(),
    }
    expected_path.write_text(json.dumps(expected))


def register(home: Path) -> None:
    """Register lr and rf (from the peers' joblib files, which we made ourselves) in a scratch home."""
    import numpy as np

    os.environ["SHIPYARD_HOME"] = str(home)
    import shipyard

    for name in ("lr", "rf"):
        try:
            shipyard.resolve(f"{name}@production")
            continue
        except shipyard.ShipyardError:
            pass
        mv = shipyard.register_file(MODELS / f"{name}.joblib", name, trust=True, example=np.zeros((2, 30)))
        shipyard.set_alias(name, "production", mv.version)


def shipyard_config(model: str, port: int, workers: int, home: Path) -> dict[str, Any]:
    return {
        "id": f"shipyard-{model}-w{workers}",
        "peer": "shipyard",
        "model": model,
        "workers": f"{workers} worker(s)",
        "cmd": [SHIPYARD, "serve", model, "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
        "port": port,
        "path": f"/v1/models/{model}/predict",
        "body": "std",
        "env": {"SHIPYARD_HOME": str(home)},
    }


def bare_config(model: str, port: int, workers: int) -> dict[str, Any]:
    uvicorn = str(PEERS / "base" / "bin" / "uvicorn")
    return {
        "id": f"bare-{model}-w{workers}",
        "peer": "bare-uvicorn",
        "model": model,
        "workers": f"{workers} uvicorn worker(s)",
        "cmd": [uvicorn, "bare_app:app", "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
                "--http", "httptools", "--no-access-log", "--log-level", "warning", "--workers", str(workers)],
        "cwd": str(PEERS_BENCH / "servers"),
        "port": port,
        "path": "/predict",
        "body": "std",
        "env": {"BARE_MODE": "predict", "MODEL_PATH": str(MODELS / f"{model}.joblib")},
    }


def pick(rec: dict[str, Any], kind: str, conc: int) -> dict[str, Any] | None:
    for run in rec.get("runs", []):
        if run["kind"] == kind and run["conc"] == conc and not run.get("repeat"):
            return dict(run)
    return None


def report(path: Path, started: int) -> None:
    """Print the table and the ratios for the records this run wrote."""
    records: dict[str, dict[str, Any]] = {}
    with path.open() as handle:
        for index, line in enumerate(handle):
            if index >= started:
                rec = json.loads(line)
                records[rec["id"]] = rec
    cells = [("row1", 1), ("row1", 8), ("row1", 64), ("rows100", 8)]
    print(
        "\n| system | cold start s | idle MB | 1 row c1 req/s (p50/p99 ms) | 1 row c8 | 1 row c64 "
        "| 100 rows c8 rows/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for cid, rec in records.items():
        if "runs" not in rec:
            print(f"| {cid} | failed: {rec.get('error', '?')} |")
            continue
        out = []
        for kind, conc in cells:
            run = pick(rec, kind, conc)
            if run is None:
                out.append("-")
                continue
            value = run["rows_per_s"] if kind == "rows100" else run["rps"]
            out.append(f"{value:,.0f} ({run['lat_p50_us'] / 1e3:.2f}/{run['lat_p99_us'] / 1e3:.2f})")
        idle = rec.get("idle_mem") or {}
        idle_mb = float(idle.get("pss_mb") or idle.get("rss_mb") or 0.0)
        print(f"| {cid} | {rec.get('cold_start_s', 0):.2f} | {idle_mb:.0f} | " + " | ".join(out) + " |")

    def metric(cid: str, kind: str, conc: int, field: str) -> float | None:
        rec = records.get(cid)
        run = pick(rec, kind, conc) if rec else None
        return None if run is None else float(run[field])

    def ratio(a: float | None, b: float | None) -> str:
        return "n/a" if not a or not b else f"{a / b:.2f}x"

    peers = [cid for cid in records if not cid.startswith(("shipyard", "bare"))]
    print("\nRatios (goal in brackets):")
    for model in ("lr", "rf"):
        me, bare = f"shipyard-{model}-w2", f"bare-{model}-w2"
        if me not in records:
            continue
        for kind, conc, field, goal in (
            ("row1", 64, "rps", ">= 1.0x" if model == "lr" else ">= 2x"),
            ("rows100", 8, "rows_per_s", ">= 0.8x"),
            ("row1", 1, "rps", ""),
            ("row1", 8, "rps", ""),
        ):
            print(f"  {model} {kind} c{conc} {field}: shipyard/ceiling "
                  f"{ratio(metric(me, kind, conc, field), metric(bare, kind, conc, field))} [{goal}]")
        if model == "lr" and peers:
            best = max(peers, key=lambda c: metric(c, "row1", 64, "rps") or 0.0)
            print(f"  lr row1 c64 rps: shipyard/best peer ({best}) "
                  f"{ratio(metric(me, 'row1', 64, 'rps'), metric(best, 'row1', 64, 'rps'))} [>= 3x]")
            p99 = metric(me, "row1", 64, "lat_p99_us")
            best_p50 = min((metric(c, "row1", 64, "lat_p50_us") or 1e12) for c in peers)
            shown = p99 / 1e3 if p99 else 0.0
            print(f"  lr row1 c64: shipyard p99 {shown:.2f} ms vs best peer p50 {best_p50 / 1e3:.2f} ms [p99 below]")
        cold_me, cold_bare = records[me].get("cold_start_s"), records.get(bare, {}).get("cold_start_s")
        print(f"  {model} cold start: shipyard/ceiling {ratio(cold_me, cold_bare)} [<= 1.5x]")
        mem_me = (records[me].get("idle_mem") or {}).get("pss_mb")
        mem_bare = (records.get(bare, {}).get("idle_mem") or {}).get("pss_mb")
        print(f"  {model} idle memory (PSS): shipyard/ceiling {ratio(mem_me, mem_bare)} [<= 1.3x]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--peers", default=DEFAULT_PEERS, help="regex of peer config ids from run_bench.py")
    parser.add_argument("--models", default="lr,rf", help="which of lr,rf to measure")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serving.jsonl")
    args = parser.parse_args()
    if not (MODELS / "lr.joblib").exists():
        sys.exit(f"no peer models in {MODELS}: run 'bash {PEERS_BENCH}/setup_envs.sh' first")
    prepare_rf()
    home = PEERS / "work" / "shipyard-home"
    register(home)
    models = [m for m in args.models.split(",") if m]
    custom = []
    for i, model in enumerate(models):
        custom.append(shipyard_config(model, 18600 + 10 * i, 2, home))
        custom.append(bare_config(model, 18700 + 10 * i, 2))
    only = "|".join([c["id"] for c in custom] + ([args.peers] if args.peers else []))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = sum(1 for _ in args.out.open()) if args.out.exists() else 0
    command = [str(PEERS / "base" / "bin" / "python"), str(PEERS_BENCH / "run_bench.py"), "--out", str(args.out),
               "--duration", str(args.duration), "--only", f"^({only})$"]
    for config in custom:
        command += ["--custom", json.dumps(config)]
    subprocess.run(command, check=True)
    report(args.out, started)


if __name__ == "__main__":
    main()
