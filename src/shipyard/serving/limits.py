"""Slow and greedy clients: deadlines on reading a request, and a cap on connections per client address.

uvicorn closes idle keep-alive connections but sets no deadline on reading a request: a client that
sends half a header line, or a body a byte a minute, holds its connection for as long as it likes, and
one address may open as many connections as the process has file descriptors. The protocol here is
uvicorn's httptools protocol with three additions:

* **header deadline**: from the moment a connection opens (or its previous response ends) the client
  has ``header_timeout_s`` to send a complete request head; else it gets 408 and the connection closes.
* **body deadline**: from the end of the head the client has ``body_timeout_s`` to send the whole body;
  else it gets 408 (if nothing was answered yet) and the connection closes.
* **connections per client**: each worker process keeps at most ``max_connections_per_client`` open
  connections per peer address; one more is answered 429 and closed at once.

The server learns of each refusal and timeout through the :class:`ConnectionObserver` the app puts in
its lifespan state under :data:`OBSERVER_KEY` (the server's Prometheus metrics).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

OBSERVER_KEY = "shipyard.connection_observer"
"""Key of the :class:`ConnectionObserver` in the app's lifespan state (shared with the protocol)."""


class ConnectionObserver(Protocol):
    """Told of every connection refused by the per-client cap and every read deadline that expired."""

    def connection_refused(self) -> None:
        """A connection was refused because its client already had the most connections allowed."""

    def client_timed_out(self, kind: str) -> None:
        """A client was too slow to send its request's ``kind`` (``"header"`` or ``"body"``)."""


@dataclass(frozen=True)
class ClientLimits:
    """How long a client may take to send a request, and how many connections one address may hold."""

    header_timeout_s: float
    body_timeout_s: float
    max_connections_per_client: int


def _answer(status: int, reason: str, message: str, extra: bytes = b"") -> bytes:
    """A complete HTTP/1.1 answer with a JSON ``{"error": message}`` body that closes the connection.

    >>> _answer(408, "Request Timeout", "too slow").split(b"\\r\\n")[0]
    b'HTTP/1.1 408 Request Timeout'
    """
    body = orjson.dumps({"error": message})
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n%s\r\n%s"
        % (status, reason.encode("ascii"), len(body), extra, body)
    )


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read deadlines and a per-client connection cap.

    Use :func:`guarded_protocol` to get a subclass bound to a :class:`ClientLimits` (uvicorn's ``http=``).
    """

    limits: ClassVar[ClientLimits]
    open_by_client: ClassVar[dict[str, int]]
    """Open connections per peer address in this process (one dict per :func:`guarded_protocol` class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client_key: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ connection life
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection against its client's cap (refuse it when over), then start the header deadline."""
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else None
        if client is not None:
            held = self.open_by_client.get(client, 0)
            cap = self.limits.max_connections_per_client
            if held >= cap:
                self.transport = transport  # connection_lost closes it again; nothing else was set up
                message = (
                    f"this client already has {cap} open connections, the most allowed "
                    "(max_connections_per_client); reuse them or close some"
                )
                transport.write(_answer(429, "Too Many Requests", message, b"retry-after: 1\r\n"))
                transport.close()
                observer = self._observer()
                if observer is not None:
                    observer.connection_refused()
                return
            self.open_by_client[client] = held + 1
            self._client_key = client
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the deadlines and give the connection back to its client's count."""
        self._cancel_header_timer()
        self._cancel_body_timer()
        self._release()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        """The connection leaves this protocol: stop the deadlines and give it back first."""
        self._cancel_header_timer()
        self._cancel_body_timer()
        self._release()
        super().handle_websocket_upgrade()

    def _release(self) -> None:
        client, self._client_key = self._client_key, None
        if client is not None:
            left = self.open_by_client.get(client, 1) - 1
            if left > 0:
                self.open_by_client[client] = left
            else:
                self.open_by_client.pop(client, None)

    # ------------------------------------------------------------------ parser events
    def on_headers_complete(self) -> None:
        """The head arrived in time: stop its deadline and start the body's."""
        self._cancel_header_timer()
        super().on_headers_complete()
        if not self.pipeline:  # a pipelined request waits unread: its deadline starts with its first body bytes
            self._arm_body_timer()

    def on_body(self, body: bytes) -> None:
        """Body bytes arrived (the deadline is for the whole body, counted from the end of the head)."""
        if self._body_timer is None:
            self._arm_body_timer()
        super().on_body(body)

    def on_message_complete(self) -> None:
        """The whole request arrived in time."""
        self._cancel_body_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """An answer was sent: unless a pipelined request is already read, the next head's deadline starts."""
        waiting = not self.pipeline
        super().on_response_complete()
        if waiting and not self.transport.is_closing() and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_expired)

    # ------------------------------------------------------------------ deadlines
    def _arm_body_timer(self) -> None:
        self._cancel_body_timer()
        self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_expired)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _header_expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        self._timed_out("header")
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False  # an answer is under way: close once it is sent
            return
        message = f"the request head did not arrive within {self.limits.header_timeout_s:g} s (header_timeout_s)"
        self.transport.write(_answer(408, "Request Timeout", message))
        self.transport.close()

    def _body_expired(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        self._timed_out("body")
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            cycle.keep_alive = False  # the app answered early and is still sending: close once it is sent
            return
        if cycle is not None and not cycle.response_started:
            message = f"the request body did not arrive within {self.limits.body_timeout_s:g} s (body_timeout_s)"
            self.transport.write(_answer(408, "Request Timeout", message))
            cycle.disconnected = True  # the app, waiting for the body, is told the client is gone
            cycle.message_event.set()
        self.transport.close()

    def _observer(self) -> ConnectionObserver | None:
        observer: ConnectionObserver | None = self.app_state.get(OBSERVER_KEY)
        return observer

    def _timed_out(self, kind: str) -> None:
        observer = self._observer()
        if observer is not None:
            observer.client_timed_out(kind)


def guarded_protocol(limits: ClientLimits) -> type[GuardedHttpProtocol]:
    """A :class:`GuardedHttpProtocol` class bound to ``limits``, with its own per-client counts (uvicorn's ``http=``).

    >>> cls = guarded_protocol(ClientLimits(10.0, 30.0, 64))
    >>> cls.limits.max_connections_per_client, cls.open_by_client
    (64, {})
    """
    namespace = {"limits": limits, "open_by_client": {}, "__module__": __name__, "__doc__": GuardedHttpProtocol.__doc__}
    return type("ShipyardHttpProtocol", (GuardedHttpProtocol,), namespace)
