"""Fixtures shared by the whole suite: a registry per backend, each test on its own home and database."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shipyard
from shipyard.config import Settings

POSTGRES_ENV = "SHIPYARD_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _postgres_admin_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{POSTGRES_ENV} must be set when CI=true: the PostgreSQL contract tests cannot be skipped")
        pytest.skip(f"set {POSTGRES_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run on PostgreSQL")
    return url


@contextlib.contextmanager
def _fresh_postgres_database(prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it (skips or fails as ``_postgres_admin_url``)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = _postgres_admin_url()
    assert admin is not None
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with _fresh_postgres_database("shipyard_test") as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """One fresh PostgreSQL database for a whole test module, dropped afterwards (same skip rules)."""
    with _fresh_postgres_database("shipyard_module") as url:
        yield url


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SHIPYARD_HOME for one test; nothing leaks into ~/.shipyard."""
    path = tmp_path / "shipyard-home"
    monkeypatch.setenv("SHIPYARD_HOME", str(path))
    monkeypatch.delenv("SHIPYARD_REGISTRY_URL", raising=False)
    monkeypatch.delenv("SHIPYARD_ARTIFACTS_URL", raising=False)
    monkeypatch.delenv("SHIPYARD_TRUSTED_TYPES", raising=False)
    monkeypatch.setenv("SHIPYARD_USER", "tester")
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once on a SQLite file and once on its own PostgreSQL database."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("SHIPYARD_REGISTRY_URL", url)
    return str(request.param)


@pytest.fixture
def service(backend: str) -> Iterator[shipyard.ModelService]:
    """The SDK's service on this test's backend."""
    svc = shipyard.connect()
    yield svc
    svc.store.close()


@pytest.fixture
def settings(backend: str) -> Settings:
    """The settings this test's processes should use."""
    return Settings()


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (fails under CI=true when it is missing, else skips)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture
def artifacts() -> Path:
    """``test-artifacts/`` at the repository root (git-ignored), for screenshots."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
