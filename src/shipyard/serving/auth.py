"""API-key authentication and scopes, as one pure-ASGI layer that runs before routing.

With auth on, every route except the health, metrics and docs routes needs a key, sent as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. A missing, malformed, unknown or revoked key is
answered with 401 (and ``WWW-Authenticate: Bearer``); a valid key without the route's scope with 403, both in
the error shape of the route's protocol. An ``admin`` key may call every route.

The scope a request needs is that of the route it matches (:class:`shipyard.serving.scopes.RouteScopes`), never
a guess from the text of the path.

The server does not ask the database on every request: the row of each key id (its scopes, salt, hash and
revocation) is cached for :data:`CACHE_SECONDS`, so a revoked key stops working within that time. Lookups run in
a worker thread, one at a time per key id, so the event loop never waits on the database. The secret is checked
against the cached hash on every request, in constant time. The key itself is never logged; the key's name is
put into ``scope["state"]["api_key"]`` for the request logs.

The dashboard (``GET``/``HEAD`` of the routes under ``/ui``) also takes the key from its session cookie, set by
``POST /ui/login`` (:mod:`shipyard.serving.ui_login`); a browser opening ``/ui`` without a valid key gets the
login form (HTML) instead of a JSON 401.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import orjson
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.errors import ShipyardError
from shipyard.registry.keys import ApiKey, KeyStore, StoredKey, parse_key
from shipyard.service import ModelService
from shipyard.serving.errors import client_message, error_payload
from shipyard.serving.scopes import RouteScopes
from shipyard.serving.ui_login import COOKIE, UI_PATH, cookie_route, login_page, wants_html

log = logging.getLogger("shipyard.serving.auth")

CACHE_SECONDS = 2.0
MAX_CACHED = 10_000
TOUCH_SECONDS = 60.0


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key sent with ``Authorization: Bearer`` or else ``X-API-Key``, or ``None``.

    >>> presented_key([(b"authorization", b"Bearer sy_x_y")]), presented_key([(b"x-api-key", b" k ")])
    ('sy_x_y', 'k')
    """
    bearer = api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
        elif name == b"x-api-key" and value.strip():
            api_key = value.decode("latin-1").strip()
    return bearer or api_key


@dataclass(frozen=True)
class Denial:
    """Why a key is refused: the HTTP status (401 or 403), a message for the caller, and the error type."""

    status: int
    message: str
    kind: str = "Unauthorized"


def dashboard_cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The API key in the dashboard's session cookie (:data:`shipyard.serving.ui_login.COOKIE`), or ``None``.

    >>> dashboard_cookie([(b"cookie", b"a=1; shipyard_ui_key=sy_x_y")]), dashboard_cookie([(b"cookie", b"a=1")])
    ('sy_x_y', None)
    """
    for name, value in headers:
        if name == b"cookie":
            key = cookie_parser(value.decode("latin-1")).get(COOKIE, "").strip()
            if key:
                return key
    return None


@dataclass(frozen=True)
class _Cached:
    stored: StoredKey | None
    expires: float


class AuthMiddleware:
    """Checks the API key and scope of every request that needs one; passes everything when not ``required``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: ModelService,
        routes: RouteScopes,
        required: bool,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.app = app
        self.routes = routes
        self.service = service
        self.required = required
        self.cache_seconds = cache_seconds
        self._cache: dict[str, _Cached] = {}
        self._pending: dict[str, asyncio.Task[StoredKey | None]] = {}
        self._touched: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def keys(self) -> KeyStore:
        return self.service.keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.required or scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websocket routes; refuse rather than pass unchecked
            await send({"type": "websocket.close", "code": 1008})
            return
        method: str = scope["method"]
        path: str = scope["path"]
        needed = self.routes.required(scope)
        if needed is None:
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        plaintext = presented_key(headers)
        from_cookie = False
        if plaintext is None and cookie_route(method, self.routes.match(scope)[1]):
            plaintext = dashboard_cookie(headers)
            from_cookie = plaintext is not None
        if plaintext is None:
            await self._deny(
                scope,
                send,
                401,
                f"{method} {path} needs an API key: send the header 'Authorization: Bearer <key>' "
                f"(or 'X-API-Key: <key>'); create one with 'shipyard keys create --name NAME --scope {needed}'",
            )
            return
        try:
            checked = await self.verify(plaintext, needed, method, path)
        except ShipyardError as exc:
            request_id = scope.get("state", {}).get("request_id", "")
            message = f"cannot check the API key now: {client_message(exc, request_id)}"
            await self._deny(scope, send, int(exc.status), message, type(exc).__name__)
            return
        if isinstance(checked, Denial):
            await self._deny(scope, send, checked.status, checked.message, checked.kind, clear_cookie=from_cookie)
            return
        key, key_id = checked
        state: dict[str, Any] = scope.setdefault("state", {})
        state["api_key"] = key.name
        state["api_key_id"] = key_id
        self._touch_later(key_id)
        await self.app(scope, receive, send)

    async def check(self, plaintext: str, needed: str, method: str, path: str) -> Denial | None:
        """Why the key ``plaintext`` may not call ``method path`` (which needs the scope ``needed``), or ``None``.

        The same checks, cache and messages as for a key sent in a header; errors reaching the key store are
        answered as a :class:`Denial` too.
        """
        try:
            checked = await self.verify(plaintext, needed, method, path)
        except ShipyardError as exc:
            message = f"cannot check the API key now: {client_message(exc, '')}"
            return Denial(int(exc.status), message, type(exc).__name__)
        return checked if isinstance(checked, Denial) else None

    async def verify(self, plaintext: str, needed: str, method: str, path: str) -> Denial | tuple[ApiKey, str]:
        """The key ``plaintext`` and its id if it may call ``method path``, else why not (raises if the store fails)."""
        parsed = parse_key(plaintext)
        if parsed is None:
            return Denial(
                401,
                "the API key is not valid: shipyard keys look like sy_<key id>_<secret>; "
                "check that the whole key was sent",
            )
        key_id, secret = parsed
        stored = await self._lookup(key_id)
        if stored is None or not stored.matches(secret):
            log.debug("refused unknown key id or wrong secret for key id %s on %s %s", key_id, method, path)
            return Denial(
                401,
                "the API key is not valid (unknown key id or wrong secret); check it, or create a "
                "new one with 'shipyard keys create'",
            )
        key = stored.key
        if key.revoked_at is not None:
            return Denial(
                401,
                f"the API key {key.name!r} was revoked on {key.revoked_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC; "
                "ask for a new one ('shipyard keys create')",
            )
        if not key.allows(needed):
            return Denial(
                403,
                f"the API key {key.name!r} has the scopes {', '.join(key.scopes)}, but {method} "
                f"{path} needs the scope {needed!r}; use a key created with --scope {needed}",
                "Forbidden",
            )
        return key, key_id

    # ------------------------------------------------------------------ key rows, cached
    async def _lookup(self, key_id: str) -> StoredKey | None:
        cached = self._cache.get(key_id)
        if cached is not None and cached.expires > time.monotonic():
            return cached.stored
        task = self._pending.get(key_id)
        if task is None:
            task = asyncio.create_task(self._fetch(key_id))
            task.add_done_callback(_retrieve)
            self._pending[key_id] = task
        return await asyncio.shield(task)

    async def _fetch(self, key_id: str) -> StoredKey | None:
        try:
            stored = await asyncio.to_thread(self.keys.find, key_id)
        finally:
            self._pending.pop(key_id, None)
        now = time.monotonic()
        if len(self._cache) >= MAX_CACHED:
            self._cache = {k: v for k, v in self._cache.items() if v.expires > now}
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
        self._cache[key_id] = _Cached(stored, now + self.cache_seconds)
        return stored

    def _touch_later(self, key_id: str) -> None:
        """Record the key's use in the background, at most once a minute per key and process."""
        now = time.monotonic()
        if now - self._touched.get(key_id, -TOUCH_SECONDS) < TOUCH_SECONDS:
            return
        if len(self._touched) >= MAX_CACHED:
            self._touched.clear()
        self._touched[key_id] = now
        task = asyncio.create_task(asyncio.to_thread(self._touch, key_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _touch(self, key_id: str) -> None:
        try:
            self.keys.touch(key_id)
        except Exception as exc:  # a read-only registry must not break requests
            log.debug("could not record the use of key id %s: %s", key_id, type(exc).__name__)

    # ------------------------------------------------------------------ answers
    async def _deny(
        self,
        scope: Scope,
        send: Send,
        status: int,
        message: str,
        kind: str = "Unauthorized",
        *,
        clear_cookie: bool = False,
    ) -> None:
        path: str = scope["path"]
        headers = [(b"cache-control", b"no-store")]
        if status in (401, 403) and self._login_page(scope):
            # a browser opening the dashboard: the login form, with why the key it has (if any) is refused
            root: str = scope.get("root_path", "")
            error = message if clear_cookie or status == 403 else None
            body = login_page(root, error)
            headers.append((b"content-type", b"text/html; charset=utf-8"))
        else:
            body = orjson.dumps(error_payload(path, status, message, kind))
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        if clear_cookie:
            root_path = scope.get("root_path", "").rstrip("/")
            headers.append(
                (b"set-cookie", f"{COOKIE}=; Max-Age=0; Path={root_path}{UI_PATH}; HttpOnly; SameSite=Strict".encode())
            )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _login_page(self, scope: Scope) -> bool:
        """Whether a refused request is a browser opening the dashboard page itself (``GET /ui``)."""
        if scope["method"] not in ("GET", "HEAD") or not wants_html(scope["headers"]):
            return False
        return self.routes.match(scope)[1] == UI_PATH


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a lookup's failure as seen even if every request waiting on it went away."""
    if not task.cancelled():
        task.exception()
