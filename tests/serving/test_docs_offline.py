"""/docs and /redoc work without internet: every script, style and icon they load comes from this server
(Swagger UI's and ReDoc's files from the installed fastapi-offline package), checked over HTTP and in Chromium."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.serving.app import create_app
from shipyard.serving.settings import ServeSettings

REFERENCE = re.compile(r"""(?:src|href|url|Url)\s*[=:]\s*["']([^"']+)["']""")


def _get(app: Any, paths: list[str]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shipyard") as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(go())


def test_docs_pages_reference_only_assets_this_server_answers(home: Path) -> None:
    import shipyard

    app = create_app(ServeSettings(), shipyard.connect())  # no lifespan run: the docs need no model
    docs, redoc = _get(app, ["/docs", "/redoc"])
    assert docs.status_code == 200 and redoc.status_code == 200
    references = {page: REFERENCE.findall(answer.text) for page, answer in (("docs", docs), ("redoc", redoc))}
    for page, urls in references.items():
        outside = [u for u in urls if re.match(r"(?i)^(https?:)?//", u)]
        assert not outside, (page, outside)
    assets = sorted({u for urls in references.values() for u in urls if u.startswith("/docs/assets/")})
    assert assets == [
        "/docs/assets/favicon.png",
        "/docs/assets/redoc.standalone.js",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
    ]
    kinds = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for path, answer in zip(assets, _get(app, assets), strict=True):
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith(kinds[Path(path).suffix]), path
        assert len(answer.content) > 1000, path
    unknown, outside_package = _get(app, ["/docs/assets/core.py", "/docs/assets/..%2F__init__.py"])
    assert unknown.status_code == 404 and "the assets are favicon.png" in unknown.json()["error"]
    assert outside_package.status_code == 404


@pytest.mark.slow
def test_docs_render_the_operations_in_a_browser_without_internet(
    start_server: Callable[..., Any], fraud_model: Any, chromium: Any, artifacts: Path
) -> None:
    server = start_server("fraud")
    context = chromium.new_context()
    outside: list[str] = []

    def offline(route: Any) -> None:  # anything not from this server fails, as without internet
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        assert page.goto(f"{server.url}/docs").status == 200
        page.wait_for_selector(".opblock", timeout=30_000)
        paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.innerText)")
        assert "/v1/models/{name}/predict" in [p.replace("\u200b", "") for p in paths]
        page.screenshot(path=str(artifacts / "docs-offline.png"))
    finally:
        context.close()
    assert outside == [] and errors == []
