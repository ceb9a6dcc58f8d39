"""Online-learning benchmark: feedback ingest through HTTP and the learner, each against a bare ceiling.

Run by hand (not in CI), with a PostgreSQL server whose URL names a database we may create others from::

    SHIPYARD_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python bench/online.py [--events 100000] [--clients 8] [--batch 100] [--workers 2]

or, on a SQLite registry in a scratch home, ``python bench/online.py --sqlite``.

1. Ingest: ``shipyard serve --workers 2`` (learner off), ``--clients`` threads each POST batches of ``--batch``
   events (``{"instances": [...], "labels": [...]}``) to ``/v1/models/clicks/feedback``; events/s = events
   answered 202 (stored durably) / wall time. The ceiling is the same events written by
   ``OnlineStore.append`` in-process, one batch per call, on one thread (no HTTP).
2. Learner: ``Learner.run`` in-process over the stored events until they are all applied; events/s against a
   bare loop of ``partial_fit`` on the same events, in blocks of the learner's batch, a DataFrame per block
   (the ceiling). The learner's last snapshot must equal the ceiling's model. For reference, the same loop on
   float arrays (no pandas) is also timed. ``--learner-only`` skips part 1 (the events are stored in-process).

Goals: ingest >= 20,000 events/s; learner >= 0.7x its ceiling.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHIPYARD = str(Path(sys.executable).parent / "shipyard")
FEATURES = 10


def scratch_database(admin: str) -> tuple[str, Any]:
    """A fresh PostgreSQL database and a function that drops it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"shipyard_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return make_url(admin).set(database=name).render_as_string(hide_password=False), drop


def events(n: int, seed: int) -> tuple[list[dict[str, float]], list[int]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, FEATURES)).round(6)
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] > 0).astype(int)
    columns = [f"x{i}" for i in range(FEATURES)]
    return [dict(zip(columns, map(float, row), strict=True)) for row in X], y.tolist()


def register() -> None:
    import pandas as pd
    from sklearn.linear_model import SGDClassifier

    import shipyard

    rows, labels = events(2_000, seed=1)
    X = pd.DataFrame(rows)
    clf = SGDClassifier(shuffle=False, random_state=0).fit(X, labels)
    shipyard.register(clf, "clicks", X=X, y=labels, online=True)
    shipyard.set_alias("clicks", "production", 1)


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server was not ready after 60 s")


def ingest_http(url: str, bodies: list[bytes], clients: int) -> float:
    """POST every body from ``clients`` threads; the seconds it took. Every answer must be 202."""
    import httpx

    position = iter(range(len(bodies)))
    lock = threading.Lock()
    failures: list[str] = []

    def run() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while True:
                with lock:
                    i = next(position, None)
                if i is None:
                    return
                answer = http.post(
                    "/v1/models/clicks/feedback", content=bodies[i], headers={"content-type": "application/json"}
                )
                if answer.status_code != 202:
                    failures.append(f"{answer.status_code}: {answer.text[:200]}")

    threads = [threading.Thread(target=run) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} feedback requests failed, e.g. {failures[0]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="feedback events to send")
    parser.add_argument("--batch", type=int, default=100, help="events per feedback request")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--learner-batch", type=int, default=100, help="the learner's block of offsets")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite registry in a scratch home, not PostgreSQL")
    parser.add_argument("--learner-only", action="store_true",
                        help="skip the HTTP ingest: store the events in-process, then measure only the learner")
    args = parser.parse_args()

    import orjson

    home = tempfile.mkdtemp(prefix="shipyard-bench-online-")
    if args.sqlite:
        os.environ.pop("SHIPYARD_REGISTRY_URL", None)
        os.environ.update(SHIPYARD_HOME=home)  # the registry is SHIPYARD_HOME's SQLite file

        def drop() -> None:
            pass
    else:
        admin = os.environ.get("SHIPYARD_TEST_POSTGRES_URL")
        if not admin:
            raise SystemExit("set SHIPYARD_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) "
                             "or pass --sqlite")
        url_db, drop = scratch_database(admin)
        os.environ.update(SHIPYARD_HOME=home, SHIPYARD_REGISTRY_URL=url_db)
    try:
        register()
        rows, labels = events(args.events, seed=2)
        bodies = [
            orjson.dumps({"instances": rows[i : i + args.batch], "labels": labels[i : i + args.batch]})
            for i in range(0, len(rows), args.batch)
        ]
        n = len(rows)
        if not args.learner_only:
            # 1. ingest through HTTP, learner off
            config = Path(home) / "serve.yaml"
            config.write_text(f"max_rows: {max(args.batch, 10_000)}\nonline:\n  learn: false\n")
            port = 18_000 + os.getpid() % 1000
            url = f"http://127.0.0.1:{port}"
            process = subprocess.Popen(
                [SHIPYARD, "serve", "clicks", "--workers", str(args.workers), "--port", str(port),
                 "--config", str(config), "--log-level", "warning"],
            )
            try:
                wait_ready(url, process)
                ingest_s = ingest_http(url, bodies, args.clients)
            finally:
                process.terminate()
                process.wait(timeout=60)
            ingest_rate = n / ingest_s
            print(f"events: {n}, {args.batch} per request, {args.clients} clients, {args.workers} workers", flush=True)
            print(f"ingest through HTTP : {ingest_rate:10,.0f} events/s  (goal >= 20,000)", flush=True)

        # the ingest ceiling: the store's own append, in-process, one batch per call
        import pandas as pd

        import shipyard
        from shipyard.online import FeedbackEvent, OnlineSettings, OnlineStore

        service = shipyard.connect()
        store = OnlineStore(service)
        batches = [
            [FeedbackEvent(r, lab) for r, lab in zip(rows[i : i + args.batch], labels[i : i + args.batch], strict=True)]
            for i in range(0, n, args.batch)
        ]
        if args.learner_only:  # the learner's events, stored in-process
            for batch in batches:
                store.append("clicks", batch)
            print(f"events: {n} stored in-process (no HTTP ingest)", flush=True)
        else:
            base = shipyard.load("clicks:1").loaded.model
            shipyard.register(base, "ceiling", X=pd.DataFrame(rows[:10]), y=labels[:10], online=True)
            started = time.perf_counter()
            for batch in batches:
                store.append("ceiling", batch)
            append_rate = n / (time.perf_counter() - started)
            print(f"store.append ceiling: {append_rate:10,.0f} events/s "
                  f"(HTTP / ceiling: {ingest_rate / append_rate:.2f}x)")

        # 2. the learner over the n stored events, against bare partial_fit in the same blocks
        from shipyard.online import Learner

        settings = OnlineSettings(
            batch=args.learner_batch, snapshot_every=10 * n, snapshot_seconds=3600.0, poll_seconds=0.05
        )
        stop = threading.Event()
        learner = Learner(service, "clicks", settings)
        thread = threading.Thread(target=learner.run, args=(stop,), daemon=True)
        started = time.perf_counter()
        thread.start()
        while store.status("clicks").applied_offset < n:
            time.sleep(0.02)
            if not thread.is_alive():
                raise SystemExit("the learner stopped")
        learner_rate = n / (time.perf_counter() - started)
        stop.set()
        thread.join(timeout=30)
        print(f"learner             : {learner_rate:10,.0f} events/s", flush=True)

        from shipyard.training.incremental import partial_fit

        # the events in the log's order (concurrent HTTP clients store the batches in any order)
        _, rows, labels = store.event_columns("clicks", 0, n)
        model = shipyard.load("clicks:1").loaded.model
        started = time.perf_counter()
        for i in range(0, n, args.learner_batch):
            partial_fit(model, pd.DataFrame(rows[i : i + args.learner_batch]), labels[i : i + args.learner_batch])
        ceiling_rate = n / (time.perf_counter() - started)
        ratio = learner_rate / ceiling_rate
        print(f"partial_fit ceiling : {ceiling_rate:10,.0f} events/s  (learner / ceiling = {ratio:.2f}x, goal >= 0.7)")
        import numpy as np

        learnt = shipyard.load(f"clicks:{store.status('clicks').last_snapshot_version}").loaded.model
        same = np.allclose(np.r_[learnt.coef_.ravel(), learnt.intercept_],
                           np.r_[model.coef_.ravel(), model.intercept_], rtol=0, atol=1e-9)
        print(f"the learner's last snapshot equals the ceiling's model: {'yes' if same else 'NO'}", flush=True)

        # for reference, not the goal: the same loop on one float array per block (no pandas), the learner's
        # own path when the model's column names match its signature (see shipyard.online.adapt.FeatureNames)
        from shipyard.online.adapt import take_feature_names

        model = shipyard.load("clicks:1").loaded.model
        columns = list(rows[0])
        take_feature_names(model, columns)
        started = time.perf_counter()
        for i in range(0, n, args.learner_batch):
            block = np.array([[r[c] for c in columns] for r in rows[i : i + args.learner_batch]], dtype=np.float64)
            partial_fit(model, block, labels[i : i + args.learner_batch])
        array_rate = n / (time.perf_counter() - started)
        print(f"float-array loop    : {array_rate:10,.0f} events/s  "
              f"(learner / this = {learner_rate / array_rate:.2f}x, for reference)")
        service.store.close()
    finally:
        drop()


if __name__ == "__main__":
    main()
