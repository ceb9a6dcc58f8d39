"""The dashboard's login: a form for browsers at /ui, a session cookie (HttpOnly, SameSite=Strict, Path=/ui) set by
POST /ui/login, taken only by the dashboard's routes; and the startup curl line that works when pasted.

In process (httpx over ASGI, real SQLite registry and keys) for the cookie's attributes and the refusals; a real
``shipyard serve --auth`` driven by headless Chromium for the form, and by ``bash`` for the printed curl line.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipyard
from shipyard.serving.app import create_app
from shipyard.serving.settings import ServeSettings
from shipyard.serving.ui_login import COOKIE

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def app_and_keys(home: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """An app with auth on serving a small model, an admin key and a predict-only key."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    shipyard.register(LogisticRegression().fit(X, (X["a"] > 0).astype(int)), "toy", X=X)
    shipyard.set_alias("toy", "production", 1)
    service = shipyard.connect()
    keys = {"admin": service.create_key("ops", ["admin"])[1], "predict": service.create_key("app", ["predict"])[1]}
    yield create_app(ServeSettings(auth=True), service, preload=True), keys
    service.store.close()


def run(app: Any, scenario: Callable[[httpx.AsyncClient], Any], base_url: str = "http://shipyard") -> Any:
    async def go() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            return await scenario(client)

    return asyncio.run(go())


def set_cookie_attributes(answer: httpx.Response) -> set[str]:
    header = answer.headers["set-cookie"]
    return {part.strip().lower() for part in header.split(";")[1:]}


def test_a_browser_without_a_key_gets_the_login_form_and_api_clients_get_json(
    app_and_keys: tuple[Any, dict[str, str]],
) -> None:
    app, keys = app_and_keys

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.get("/ui", headers=HTML),
            await client.get("/ui"),
            await client.get("/ui/api/models", headers=HTML),
            await client.get("/ui", headers={**HTML, "Authorization": f"Bearer {keys['predict']}"}),
        ]

    page, api, data, predict_only = run(app, scenario)
    assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
    assert '<form id="login" method="post" action="/ui/login">' in page.text
    assert 'type="password"' in page.text and 'id="login-error"' not in page.text
    assert api.status_code == 401 and api.json()["detail"]["type"] == "Unauthorized"
    assert data.status_code == 401 and data.headers["content-type"] == "application/json"
    assert predict_only.status_code == 403 and "needs the scope &#x27;admin&#x27;" in predict_only.text


def test_login_sets_an_httponly_strict_cookie_for_ui_only_that_the_dashboard_takes(
    app_and_keys: tuple[Any, dict[str, str]],
) -> None:
    app, keys = app_and_keys
    admin = keys["admin"]

    async def scenario(client: httpx.AsyncClient) -> dict[str, httpx.Response]:
        login = await client.post("/ui/login", data={"key": admin}, headers={"Origin": "http://shipyard"})
        answers = {"login": login}
        answers["page"] = await client.get("/ui", headers=HTML)
        answers["models"] = await client.get("/ui/api/models")
        # the cookie is no key for the API, even sent by hand to an API route
        answers["api"] = await client.get("/v1/models", headers={"Cookie": f"{COOKIE}={admin}"})
        answers["logout"] = await client.post("/ui/logout")
        answers["after"] = await client.get("/ui/api/models")
        return answers

    answers = run(app, scenario)
    login = answers["login"]
    assert login.status_code == 303 and login.headers["location"] == "/ui"
    assert admin not in login.headers["location"]
    assert login.headers["set-cookie"].startswith(f"{COOKIE}={admin};")
    assert set_cookie_attributes(login) == {"httponly", "path=/ui", "samesite=strict"}  # no Max-Age: a session
    assert answers["page"].status_code == 200 and 'id="login"' not in answers["page"].text
    assert answers["models"].status_code == 200 and answers["models"].json()["models"][0]["name"] == "toy"
    assert answers["api"].status_code == 401
    logout = answers["logout"]
    assert logout.status_code == 303 and "max-age=0" in set_cookie_attributes(logout)
    assert "path=/ui" in set_cookie_attributes(logout)
    assert answers["after"].status_code == 401


def test_the_cookie_is_secure_over_https(app_and_keys: tuple[Any, dict[str, str]]) -> None:
    app, keys = app_and_keys

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/ui/login", data={"key": keys["admin"]})

    answer = run(app, scenario, base_url="https://shipyard")
    assert answer.status_code == 303 and "secure" in set_cookie_attributes(answer)


def test_login_refuses_wrong_keys_missing_scopes_and_cross_site_posts(
    app_and_keys: tuple[Any, dict[str, str]],
) -> None:
    app, keys = app_and_keys
    wrong = keys["admin"][:-3] + "xyz"

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post("/ui/login", data={"key": wrong}),
            await client.post("/ui/login", data={"key": "not a key"}),
            await client.post("/ui/login", data={"key": keys["predict"]}),
            await client.post("/ui/login", data={"key": " "}),
            await client.post("/ui/login", json={"key": keys["admin"]}),
            await client.post("/ui/login", data={"key": keys["admin"]}, headers={"Origin": "http://evil.example"}),
            await client.post("/ui/login", data={"key": keys["admin"]}, headers={"Sec-Fetch-Site": "cross-site"}),
            await client.post("/ui/logout", headers={"Origin": "http://evil.example"}),
            await client.get("/ui", headers={**HTML, "Cookie": f"{COOKIE}=sy_nosuch_secret"}),
        ]

    answers = run(app, scenario)
    expected = [
        (401, "not valid (unknown key id or wrong secret)"),
        (401, "keys look like sy_&lt;key id&gt;_&lt;secret&gt;"),
        (403, "needs the scope &#x27;admin&#x27;"),
        (400, "enter an API key"),
        (400, "form field &#x27;key&#x27;"),
        (403, "must be sent from http://shipyard itself, not from http://evil.example"),
        (403, "Sec-Fetch-Site: cross-site"),
        (403, "not from http://evil.example"),
        (401, "the API key is not valid"),
    ]
    for answer, (status, text) in zip(answers, expected, strict=True):
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        assert 'id="login-error"' in answer.text and text in answer.text, answer.text
    assert all(COOKIE + "=sy" not in a.headers.get("set-cookie", "") for a in answers)
    assert "max-age=0" in set_cookie_attributes(answers[-1])  # a refused cookie is cleared


# ---------------------------------------------------------------------- a real server, a real browser, bash
@pytest.mark.slow
def test_login_form_in_a_browser_and_the_printed_curl_line_in_bash(
    start_server: Callable[..., Any], fraud_model: Any, chromium: Any, artifacts: Path
) -> None:
    service = shipyard.connect()
    _, admin = service.create_key("ops", ["admin"])
    server = start_server("fraud", "--auth")

    # the curl line printed at start-up works pasted into a shell, with the key in the environment
    line = next(li.strip() for li in server.log().splitlines() if li.strip().startswith("curl "))
    assert '"Authorization: Bearer $SHIPYARD_API_KEY"' in line
    pasted = subprocess.run(
        ["bash", "-c", line + " -o /dev/null -w '%{http_code}'"],
        env={**os.environ, "SHIPYARD_API_KEY": admin},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert pasted.stdout == "200", (line, pasted.stdout, pasted.stderr)

    context = chromium.new_context()
    seen: list[str] = []
    context.on("request", lambda request: seen.append(request.url))
    page = context.new_page()
    try:
        assert page.goto(f"{server.url}/ui").status == 401
        assert page.is_visible("form#login") and page.is_hidden("#login-error")
        page.fill("#key", admin[:-2] + "zz")
        page.click("button[type=submit]")
        page.wait_for_selector("#login-error")
        assert "not valid" in page.inner_text("#login-error")
        page.screenshot(path=str(artifacts / "dashboard-login-refused.png"))

        page.fill("#key", admin)
        page.click("button[type=submit]")
        page.wait_for_selector("#models tbody tr[data-model='fraud']", timeout=60_000)
        assert page.url == f"{server.url}/ui"
        cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
        assert page.evaluate("document.cookie") == ""  # no script can read it
        assert page.is_hidden("#error")
        page.screenshot(path=str(artifacts / "dashboard-after-login.png"))
    finally:
        context.close()
    assert seen and not [url for url in seen if admin in url or re.search(r"key=", url)]
