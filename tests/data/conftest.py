"""Data for the data-layer tests: a small frame with the column kinds models use."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

POSTGRES_ENV = "SHIPYARD_TEST_POSTGRES_URL"


def make_frame(n: int = 10, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of floats, ints, strings (with a missing one) and booleans."""
    rng = np.random.default_rng(seed)
    merchant = [f"m{i % 4}" for i in range(n)]
    if n > 3:
        merchant[3] = None  # type: ignore[call-overload]
    return pd.DataFrame(
        {
            "amount": rng.normal(50, 10, n).round(3),
            "hour": np.arange(n, dtype="int64") % 24,
            "merchant": pd.Series(merchant, dtype="str"),
            "is_online": np.arange(n) % 2 == 0,
        }
    )


@pytest.fixture
def frame() -> pd.DataFrame:
    """Ten rows of mixed columns."""
    return make_frame()


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """One fresh PostgreSQL database for a whole test module, dropped afterwards.

    Same rules as the suite's ``postgres_url``: skipped without SHIPYARD_TEST_POSTGRES_URL, except
    with CI=true, where PostgreSQL tests must run.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{POSTGRES_ENV} must be set when CI=true: the PostgreSQL tests cannot be skipped")
        pytest.skip(f"set {POSTGRES_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run on PostgreSQL")
    name = f"shipyard_data_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
