"""The dashboard's sign-in: a login form at ``/ui``, and ``POST /ui/login`` / ``POST /ui/logout``.

A browser cannot send the ``Authorization`` header that the API takes, so with auth on, ``GET /ui`` without a
valid key answers (to a browser: ``Accept: text/html``) this module's login form instead of a JSON 401.
``POST /ui/login`` checks the key it is given (a form field, never a URL parameter) exactly as the auth layer
checks a header, for the ``admin`` scope, and keeps it in a cookie:

* the cookie holds the API key itself, so every worker and replica accepts it and revoking the key ends the
  session within the auth cache's few seconds;
* ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it), ``Path=/ui`` (no other
  route receives it) and ``Secure`` when the request came over https; it lasts until the browser closes;
* the auth layer takes it only on ``GET``/``HEAD`` of dashboard routes (:func:`cookie_route`), never on the API.

Login and logout refuse a cross-site form post: a request whose ``Origin`` is not this server's, or whose
``Sec-Fetch-Site`` is neither ``same-origin`` nor ``none``, gets 403.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shipyard.serving.scopes import ADMIN

if TYPE_CHECKING:
    from shipyard.serving.auth import AuthMiddleware

COOKIE = "shipyard_ui_key"
"""The name of the dashboard's session cookie; its value is the API key."""
UI_PATH = "/ui"
MAX_FORM_BYTES = 4096

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>shipyard: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; background: #f5f6f8; margin: 0; }}
main {{ max-width: 26rem; margin: 12vh auto; background: #fff; padding: 2rem; border-radius: 8px;
  box-shadow: 0 1px 4px rgba(0,0,0,.12); }}
h1 {{ font-size: 1.3rem; margin-top: 0; }}
label {{ display: block; margin-bottom: .4rem; }}
input[type=password] {{ width: 100%; box-sizing: border-box; padding: .5rem; font-family: monospace; }}
button {{ margin-top: 1rem; padding: .5rem 1.2rem; }}
#login-error {{ color: #a40000; background: #fdecec; padding: .6rem; border-radius: 4px; }}
p.hint {{ color: #555; font-size: .9rem; }}
</style></head>
<body><main>
<h1>shipyard dashboard</h1>
{error}
<form id="login" method="post" action="{action}">
<label for="key">API key with the admin scope</label>
<input type="password" id="key" name="key" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
<p class="hint">Create one with <code>shipyard keys create --name NAME --scope admin</code>. The key is kept in
a cookie for this page only until the browser closes.</p>
</main></body></html>
"""


def login_page(root_path: str, error: str | None = None) -> bytes:
    """The login form's HTML, posting to ``{root_path}/ui/login``, with ``error`` shown above it if given.

    >>> b'action="/api/ui/login"' in login_page("/api"), b"&lt;b&gt;" in login_page("", "<b>")
    (True, True)
    """
    shown = f'<p id="login-error" role="alert">{html.escape(error)}</p>' if error else ""
    action = html.escape(f"{root_path.rstrip('/')}{UI_PATH}/login")
    return _PAGE.format(error=shown, action=action).encode()


def wants_html(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request's ``Accept`` header names ``text/html`` (a browser navigating to the page).

    >>> wants_html([(b"accept", b"text/html,application/xhtml+xml")]), wants_html([(b"accept", b"*/*")])
    (True, False)
    """
    return any(name == b"accept" and b"text/html" in value.lower() for name, value in headers)


def cookie_route(method: str, template: str | None) -> bool:
    """Whether a request to the route ``template`` may authenticate with the dashboard cookie: ``GET``/``HEAD``
    of the dashboard's own routes (``/ui`` and the route templates under ``/ui/``; templates are this app's,
    never the request's path).

    >>> cookie_route("GET", "/ui/api/models"), cookie_route("POST", "/ui/api/models"), cookie_route("GET", "/uix")
    (True, False, False)
    """
    if method not in ("GET", "HEAD") or template is None:
        return False
    return template == UI_PATH or template.startswith(UI_PATH + "/")


def cross_site(request: Request) -> str | None:
    """Why a login or logout post looks cross-site (another site's page submitting the form), or ``None``."""
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin.lower() != own.lower():
            return f"this form must be sent from {own} itself, not from {origin}"
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"this form must be sent from the dashboard's own page (Sec-Fetch-Site: {fetch_site})"
    return None


def _page(request: Request, error: str, status: int) -> Response:
    body = login_page(request.scope.get("root_path", ""), error)
    return Response(body, status, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


def _cookie_path(request: Request) -> str:
    return f"{request.scope.get('root_path', '').rstrip('/')}{UI_PATH}"


def router() -> APIRouter:
    """``POST /ui/login`` and ``POST /ui/logout``; the auth layer is found at ``request.app.state.auth``."""
    api = APIRouter(tags=["dashboard"])

    @api.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        refused = cross_site(request)
        if refused is not None:
            return _page(request, refused, 403)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            return _page(request, "send the key as the form field 'key' (application/x-www-form-urlencoded)", 400)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return _page(request, f"the form is larger than {MAX_FORM_BYTES} bytes; send only the field 'key'", 413)
        key = parse_qs(body.decode("utf-8", "replace")).get("key", [""])[0].strip()
        if not key:
            return _page(request, "enter an API key", 400)
        auth: AuthMiddleware | None = getattr(request.app.state, "auth", None)
        if auth is not None and auth.required:
            denial = await auth.check(key, ADMIN, "GET", UI_PATH)
            if denial is not None:
                return _page(request, denial.message, denial.status)
        answer = RedirectResponse(_cookie_path(request), status_code=303)
        if auth is not None and auth.required:
            answer.set_cookie(
                COOKIE,
                key,
                path=_cookie_path(request),
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        answer.headers["Cache-Control"] = "no-store"
        return answer

    @api.post("/ui/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        refused = cross_site(request)
        if refused is not None:
            return _page(request, refused, 403)
        answer = RedirectResponse(_cookie_path(request), status_code=303)
        answer.delete_cookie(
            COOKIE, path=_cookie_path(request), httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return answer

    return api
