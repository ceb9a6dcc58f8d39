"""Slow and greedy clients against a real ``shipyard serve`` on 127.0.0.1 (issue 14): read deadlines, per-client cap.

The server runs with 1 s deadlines and at most 3 connections per client address; every socket read
here has a bound, so a server that failed to close a connection fails the test instead of hanging it.
127.0.0.0/8 is all loopback on Linux: connections from 127.0.0.2 count as a second client.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tests.serving.conftest import SHIPYARD, Server, free_port

import shipyard

pytestmark = pytest.mark.slow  # real server processes

DEADLINE_S = 1.0
CAP = 3
READ_BOUND_S = 10.0  # far above the deadlines: reached only if the server never closes the connection
CONFIG = f"header_timeout_s: {DEADLINE_S}\nbody_timeout_s: {DEADLINE_S}\nmax_connections_per_client: {CAP}\n"
ROW = b'{"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}'


def register_iris(home: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHIPYARD_HOME", str(home))
        patch.delenv("SHIPYARD_REGISTRY_URL", raising=False)
        patch.delenv("SHIPYARD_ARTIFACTS_URL", raising=False)
        data = load_iris(as_frame=True)
        X = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
        shipyard.register(LogisticRegression(max_iter=500).fit(X, data.target), "iris", X=X, y=data.target)
        shipyard.set_alias("iris", "production", 1)


def launch(home: Path, folder: Path, *args: str) -> Server:
    """``shipyard serve -c serve.yaml ARGS`` on a free port, once /readyz answers 200."""
    config = folder / "serve.yaml"
    config.write_text(CONFIG + "logging:\n  enabled: false\n")
    port = free_port()
    log_path = folder / f"server-{port}.log"
    with log_path.open("w") as handle:
        process = subprocess.Popen(
            [SHIPYARD, "serve", "-c", str(config), *args, "--host", "127.0.0.1", "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "SHIPYARD_HOME": str(home), "SHIPYARD_USER": "tester"},
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        server.wait_ready()
    except AssertionError:
        server.stop(signal.SIGKILL)
        raise
    return server


@pytest.fixture(scope="module")
def iris_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("slow-clients") / "shipyard-home"
    register_iris(home)
    return home


@pytest.fixture(scope="module")
def server(iris_home: Path) -> Iterator[Server]:
    """One worker: the per-client cap is per worker process, so one worker makes it exact."""
    running = launch(iris_home, iris_home.parent)
    yield running
    running.stop()


def connect(server: Server, source: str = "127.0.0.1") -> socket.socket:
    """A raw TCP connection to the server from ``source`` (any 127.x.y.z address), reads bounded."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(READ_BOUND_S)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a bounded wait: else socket.timeout)."""
    data = b""
    while True:
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not part:
            return data
        data += part


def exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one keep-alive request and read its whole answer (one JSON body with a content-length)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, f"closed after {data!r}"
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def metric(server: Server, name: str) -> float:
    """The value of one sample of the server's /metrics (0 if it was never counted)."""
    text = server.client.get("/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: shipyard\r\n\r\n"
TIMEOUTS = 'shipyard_client_timeouts_total{{kind="{}"}}'


def test_a_client_that_stops_mid_header_gets_408_and_is_closed(server: Server) -> None:
    before = metric(server, TIMEOUTS.format("header"))
    with connect(server) as partial, connect(server) as silent:
        partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: shipyard\r\nX-Slow: ")
        for sock in (partial, silent):
            answer = read_until_closed(sock)  # a server without a header deadline would hold these open
            assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
            assert b"header_timeout_s" in answer
            assert b"connection: close" in answer
    assert metric(server, TIMEOUTS.format("header")) >= before + 2


def test_a_keep_alive_connection_idle_after_its_answer_is_closed_too(server: Server) -> None:
    with connect(server) as sock:
        assert exchange(sock, HEALTHZ).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"\r\n")  # bytes that start no request do not reset the deadline
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize(
    ("path", "head"),
    [
        (b"/v1/models/iris/predict", b"Content-Length: %d\r\n" % len(ROW)),
        (b"/v1/models/iris/predict", b"Transfer-Encoding: chunked\r\n"),
        (b"/invocations", b"Content-Length: %d\r\n" % len(ROW)),
    ],
    ids=["native-content-length", "native-chunked", "mlflow-content-length"],
)
def test_a_client_that_stops_mid_body_gets_408_and_is_closed(server: Server, path: bytes, head: bytes) -> None:
    before = metric(server, TIMEOUTS.format("body"))
    with connect(server) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: shipyard\r\nContent-Type: application/json\r\n%s" % (path, head))
        sock.sendall(b"\r\n" + (b"10\r\n" + ROW[:16] + b"\r\n" if b"chunked" in head else ROW[:16]))
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b"body_timeout_s" in answer
    assert metric(server, TIMEOUTS.format("body")) >= before + 1
    predict = server.client.post("/v1/models/iris/predict", content=ROW)  # the server is none the worse
    assert predict.status_code == 200, predict.text
    assert "Traceback" not in server.log()  # a client cut off is not an error of the server


def test_one_connection_over_the_per_client_cap_is_refused_while_others_are_served(server: Server) -> None:
    before = metric(server, "shipyard_connections_refused_total")
    held = [connect(server, "127.0.0.2") for _ in range(CAP)]
    try:
        for sock in held:  # answered: the server has counted each of them
            assert exchange(sock, HEALTHZ).startswith(b"HTTP/1.1 200 ")
        with connect(server, "127.0.0.2") as extra:
            refused = read_until_closed(extra)
        assert refused.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), refused
        assert b"max_connections_per_client" in refused
        assert exchange(held[0], HEALTHZ).startswith(b"HTTP/1.1 200 ")  # the held ones still work
        assert server.client.get("/healthz").status_code == 200  # and other clients are not affected
        assert metric(server, "shipyard_connections_refused_total") == before + 1
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + READ_BOUND_S  # the server sees the closes asynchronously
    while True:
        with connect(server, "127.0.0.2") as again:
            answer = exchange(again, HEALTHZ)
        if answer.startswith(b"HTTP/1.1 200 ") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert answer.startswith(b"HTTP/1.1 200 "), answer  # closed connections were given back


def test_prefork_workers_use_the_same_deadlines(iris_home: Path, tmp_path: Path) -> None:
    server = launch(iris_home, tmp_path, "--workers", "2")
    try:
        with connect(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
        assert metric(server, TIMEOUTS.format("header")) >= 1
    finally:
        server.stop()


def test_serve_flags_set_the_limits_and_bad_values_are_one_line_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [SHIPYARD, "serve", "--header-timeout", "0", "--body-timeout", "5", "--max-connections-per-client", "8"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SHIPYARD_HOME": str(tmp_path / "home")},
    )
    assert result.returncode != 0
    assert result.stderr.strip() == "error: invalid serve settings: header_timeout_s: Input should be greater than 0"
