"""Several real ``shipyard serve`` replicas on one PostgreSQL registry, behind a real nginx, and a bounded load.

Everything is started by the test as subprocesses on 127.0.0.1 (each in its own session, so a replica or nginx
is stopped, or killed with SIGKILL, as a whole process group by the PID we started) and stopped at the end.
nginx is Debian's ``/usr/sbin/nginx`` with a configuration written into the test's folder (``daemon off``,
pid, logs and temp paths there); it retries a request on the next replica when one refuses the connection,
times out, resets it or answers 502/503 (``non_idempotent`` too: predictions are safe to repeat).

In a test module::

    @pytest.fixture
    def fleet(tmp_path):
        with fleets(tmp_path) as start:
            yield start

    def test_x(fleet):
        replicas = fleet(3)           # -> Fleet: .replicas, .nginx, .url
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

NGINX = Path("/usr/sbin/nginx")
SHIPYARD = str(Path(sys.executable).parent / "shipyard")
START_TIMEOUT = 90.0
QUIET_SERVE_YAML = "logging:\n  enabled: false\nmonitoring:\n  enabled: false\n"
"""Replica settings: no prediction log or live monitor, so three replicas leave the two cores to the load."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the process group led by ``process`` (started with ``start_new_session``)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)


def _stop(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """``sig`` to the group, then SIGKILL if it has not exited within ``timeout`` seconds."""
    _signal_group(process, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Replica:
    """One ``shipyard serve`` process on a fixed port, restartable on the same port."""

    name: str
    port: int
    args: list[str]
    env: dict[str, str]
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        """Start the process (does not wait; see :meth:`wait_ready`)."""
        self.starts += 1
        with self.log_path.open("ab") as handle:
            handle.write(f"--- start {self.starts} ---\n".encode())
            handle.flush()
            command = [SHIPYARD, "serve", *self.args, "--host", "127.0.0.1", "--port", str(self.port)]
            self.process = subprocess.Popen(
                [*command, "--log-level", "warning"],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Block until ``/readyz`` answers 200 (fails with the replica's log if it exits or never gets ready)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} not ready after {timeout} s:\n{self.log()}")
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the replica's whole process group, at once, and reap it."""
        assert self.process is not None
        _signal_group(self.process, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (in-flight requests finish), SIGKILL after 20 s."""
        if self.process is not None:
            _stop(self.process, signal.SIGTERM, 20.0)

    def predict(self, model: str, rows: list[dict[str, Any]]) -> httpx.Response:
        """One prediction sent to this replica directly, not through nginx."""
        return httpx.post(f"{self.url}/v1/models/{model}/predict", json={"instances": rows}, timeout=10.0)


def nginx_config(folder: Path, listen: int, upstreams: list[int]) -> str:
    """An nginx configuration proxying ``127.0.0.1:listen`` to the replicas, with every path inside ``folder``."""
    servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;" for port in upstreams)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers would run as nobody, locked out of tmp_path
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    log_format upstream '$msec "$request" $status upstream=$upstream_addr upstream_status=$upstream_status '
                        'time=$request_time';
    access_log {folder}/access.log upstream;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;

    upstream shipyard {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://shipyard;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 500ms;
            proxy_send_timeout 30s;
            proxy_read_timeout 30s;
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 3;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    """Debian's nginx in the foreground, configured by :func:`nginx_config`."""

    folder: Path
    port: int
    upstreams: list[int]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> list[str]:
        path = self.folder / "access.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def retried(self) -> list[str]:
        """Access-log lines of requests nginx sent to more than one replica (the first failed, it retried)."""
        return [line for line in self.access_log() if "upstream=" in line and "," in line.split("upstream=")[1]]

    def cut_off(self) -> int:
        """Requests a replica dropped while nginx waited for its answer (in flight on it when it died)."""
        return sum(1 for line in self.error_log().splitlines()
                   if "[error]" in line and "while reading response header from upstream" in line)  # fmt: skip

    def start(self, timeout: float = 15.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "nginx.conf"
        conf.write_text(nginx_config(self.folder, self.port, self.upstreams))
        with (self.folder / "stdout.log").open("wb") as handle:
            self.process = subprocess.Popen(
                [str(NGINX), "-p", str(self.folder), "-e", str(self.folder / "error.log"), "-c", str(conf)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited with {self.process.returncode}:\n{self.error_log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"nginx not answering after {timeout} s:\n{self.error_log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGQUIT (graceful: workers finish their requests), SIGKILL of the group after 10 s."""
        if self.process is not None:
            _stop(self.process, signal.SIGQUIT, 10.0)


@dataclass
class Fleet:
    """The replicas and the nginx in front of them."""

    replicas: list[Replica]
    nginx: Nginx

    @property
    def url(self) -> str:
        return self.nginx.url

    def stop(self) -> None:
        self.nginx.stop()
        for replica in self.replicas:
            replica.stop()


def start_fleet(
    folder: Path,
    count: int = 3,
    *,
    refs: tuple[str, ...] = ("fraud",),
    workers: int = 1,
    serve_yaml: str = QUIET_SERVE_YAML,
    env: dict[str, str] | None = None,
) -> Fleet:
    """Start ``count`` replicas (in parallel) and nginx; return once every one of them answers."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "serve.yaml"
    config.write_text(serve_yaml)
    environment = {**os.environ, **(env or {})}
    args = [*refs, "--workers", str(workers), "--config", str(config)]
    replicas = [
        Replica(f"replica-{i}", free_port(), args, environment, folder) for i in range(1, count + 1)
    ]
    fleet = Fleet(replicas, Nginx(folder / "nginx", free_port(), [r.port for r in replicas]))
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_ready()
        fleet.nginx.start()
    except BaseException:
        fleet.stop()
        raise
    return fleet


@contextlib.contextmanager
def fleets(folder: Path) -> Iterator[Callable[..., Fleet]]:
    """``start(count=3, refs=("fraud",), workers=1, serve_yaml=...)``: replicas behind nginx, all stopped on exit.

    The replicas get this process's environment (``SHIPYARD_HOME``, ``SHIPYARD_REGISTRY_URL``...), so set the
    registry first (e.g. ``monkeypatch.setenv("SHIPYARD_REGISTRY_URL", postgres_url)``).
    """
    if not NGINX.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{NGINX} is missing: install Debian's nginx package")
        pytest.skip(f"{NGINX} is missing: apt-get install nginx to run the multi-replica tests")
    started: list[Fleet] = []

    def start(count: int = 3, **options: Any) -> Fleet:
        started.append(start_fleet(folder / f"fleet-{len(started) + 1}", count, **options))
        return started[-1]

    try:
        yield start
    finally:
        for one in started:
            one.stop()


@dataclass
class Outcome:
    """One client request: when it was sent and answered, and what came back."""

    sent: float
    done: float
    status: int | None  # None: no HTTP answer (connection refused/reset, timeout)
    version: int | None
    upstream: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Load:
    """``threads`` clients posting ``body`` to ``url`` in a loop until stopped (or ``max_seconds`` elapsed).

    Each client waits ``pause_s`` between its requests, so the load is bounded (a few hundred requests/s at
    most) and leaves the replicas CPU to follow deployment changes on a small machine.
    """

    url: str
    body: dict[str, Any]
    threads: int = 4
    max_seconds: float = 20.0
    pause_s: float = 0.01
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=15.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    answer = client.post(self.url, json=self.body)
                except httpx.TransportError as exc:
                    outcome = Outcome(sent, time.monotonic(), None, None, "", f"{type(exc).__name__}: {exc}")
                else:
                    version = answer.json().get("version") if answer.status_code == 200 else None
                    outcome = Outcome(sent, time.monotonic(), answer.status_code, version,
                                      answer.headers.get("X-Upstream", ""),
                                      "" if answer.status_code == 200 else answer.text[:300])  # fmt: skip
                with self._lock:
                    self.outcomes.append(outcome)
                self._stop.wait(self.pause_s)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def failures(self) -> list[Outcome]:
        return [o for o in self.snapshot() if not o.ok]
