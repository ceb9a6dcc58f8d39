"""What the wrk-driven benchmarks share: the ``lr`` training data, a ``shipyard serve lr`` subprocess, and one
wrk run whose Lua script prints its figures as JSON.

Imported by ``bench/monitoring.py`` and ``bench/rollouts.py`` (run from the repository: ``python bench/<name>.py``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
FEATURES = [f"x{i}" for i in range(10)]
WRK_SCRIPT = """
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def training_data(n: int, seed: int = 0) -> tuple[Any, Any]:
    """``n`` rows of the 10 named float features and a binary target that depends on three of them."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(FEATURES))).round(6), columns=FEATURES)
    y = (X["x0"] + 0.5 * X["x1"] - X["x2"] + rng.normal(0, 0.5, n) > 0).astype(int)
    return X, y


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    home: Path, workdir: Path, config: Path, extra: Sequence[str] = (), timeout: float = 90.0
) -> tuple[subprocess.Popen[bytes], int]:
    """``shipyard serve lr`` with ``config`` on a free port, ready; exits the benchmark if it does not start."""
    import httpx

    port = free_port()
    log_path = workdir / f"server-{port}.log"
    command = [SHIPYARD, "serve", "lr", "--port", str(port), "--config", str(config), *extra, "--log-level", "warning"]
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            command, env={**os.environ, "SHIPYARD_HOME": str(home)}, stdout=handle, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited with {process.returncode}: {log_path.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process, port
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    sys.exit(f"the server did not become ready within {timeout:g} s")


def wrk(port: int, body: Path, script: Path, concurrency: int, duration: int) -> dict[str, Any]:
    """One wrk run POSTing ``body`` to ``lr``'s native route; its figures, with ``rps``."""
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "10s", "-s", str(script),
               f"http://127.0.0.1:{port}/v1/models/lr/predict"]  # fmt: skip
    done = subprocess.run(command, env={**os.environ, "BODY_FILE": str(body)}, capture_output=True, text=True,
                          timeout=duration + 60)  # fmt: skip
    match = re.search(r"WRKJSON (\{.*\})", done.stdout)
    if match is None:
        sys.exit(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    result: dict[str, Any] = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by the server process and its workers."""
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for one in [process, *process.children(recursive=True)]:
        try:
            times = one.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
