"""API keys in the registry: create, list, verify, revoke, on SQLite and PostgreSQL, and the ``shipyard keys`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select

import shipyard
from shipyard.errors import Conflict, InvalidInput, InvalidName, NotFound
from shipyard.registry.keys import ApiKey, hash_secret, parse_key
from shipyard.registry.tables import api_keys

SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def test_create_list_verify_revoke(service: shipyard.ModelService) -> None:
    record, key = service.create_key("app1", ["predict"])
    assert isinstance(record, ApiKey)
    assert (record.name, record.scopes, record.created_by, record.revoked_at) == ("app1", ("predict",), "tester", None)
    assert key.startswith(f"sy_{record.key_id}_") and len(record.key_id) == 8
    assert parse_key(key) is not None

    ops, ops_key = service.create_key("ops", ["feedback", "admin", "feedback"])
    assert ops.scopes == ("admin", "feedback")
    assert ops.allows("predict") and not record.allows("feedback")
    assert key != ops_key and record.key_id != ops.key_id

    assert [(k.name, k.key_id, k.scopes) for k in service.list_keys()] == [
        ("app1", record.key_id, ("predict",)),
        ("ops", ops.key_id, ("admin", "feedback")),
    ]

    verified = service.verify_key(key)
    assert verified is not None and (verified.name, verified.scopes) == ("app1", ("predict",))
    assert service.verify_key(f"  {key}\n") is not None  # copied with blanks around it

    revoked = service.revoke_key("app1")
    assert revoked.name == "app1" and revoked.revoked_at is not None
    assert service.verify_key(key) is None
    assert service.verify_key(ops_key) is not None
    listed = {k.name: k for k in service.list_keys()}
    assert listed["app1"].revoked_at is not None and not listed["app1"].active
    assert [k.name for k in service.list_keys(include_revoked=False)] == ["ops"]


def test_only_a_salted_hash_of_the_secret_is_stored(service: shipyard.ModelService) -> None:
    first, first_key = service.create_key("one", ["predict"])
    second, second_key = service.create_key("two", ["predict"])
    with service.store._engine.connect() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.id)).mappings().all()
    assert [r["key_id"] for r in rows] == [first.key_id, second.key_id]
    for row, key in zip(rows, [first_key, second_key], strict=True):
        secret = key.split("_", 2)[2]
        stored = " ".join(str(v) for v in row.values())
        assert key not in stored and secret not in stored
        assert row["secret_hash"] == hash_secret(row["salt"], secret)
        assert len(row["secret_hash"]) == 64
    assert rows[0]["salt"] != rows[1]["salt"]


def test_wrong_malformed_unknown_and_revoked_keys_are_refused(service: shipyard.ModelService) -> None:
    record, key = service.create_key("app1", ["predict"])
    secret = key.split("_", 2)[2]
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert service.verify_key(f"sy_{record.key_id}_{wrong}") is None
    assert service.verify_key(f"sy_{'0' * 8 if record.key_id != '0' * 8 else '1' * 8}_{secret}") is None
    for bad in ["", "nonsense", key[:-10], f"xx_{record.key_id}_{secret}", f"sy_{record.key_id}", key + "!"]:
        assert service.verify_key(bad) is None, bad
    assert service.verify_key(key) is not None
    service.revoke_key("app1")
    assert service.verify_key(key) is None


def test_verify_records_the_last_use(service: shipyard.ModelService) -> None:
    record, key = service.create_key("app1", ["predict"])
    assert record.last_used_at is None
    before = datetime.now(UTC)
    assert service.verify_key(key) is not None
    (listed,) = service.list_keys()
    assert listed.last_used_at is not None and listed.last_used_at >= before.replace(microsecond=0)


def test_names_scopes_and_duplicates(service: shipyard.ModelService) -> None:
    first, _ = service.create_key("app1", ["predict"])
    with pytest.raises(Conflict, match=r"an active API key named 'app1' already exists.*shipyard keys revoke app1"):
        service.create_key("app1", ["feedback"])
    with pytest.raises(InvalidInput, match=r"unknown scope 'read'; the valid scopes are admin, feedback, predict"):
        service.create_key("app2", ["predict", "read"])
    with pytest.raises(InvalidInput, match="at least one scope"):
        service.create_key("app2", [])
    with pytest.raises(InvalidName, match="invalid key name"):
        service.create_key("App 2", ["predict"])
    with pytest.raises(NotFound, match="API key 'app2' does not exist"):
        service.revoke_key("app2")
    assert [k.name for k in service.list_keys()] == ["app1"]

    # once revoked, the name is free again; the revoked row stays for the audit trail
    service.revoke_key("app1")
    with pytest.raises(NotFound, match="API key 'app1' is already revoked"):
        service.revoke_key("app1")
    second, key = service.create_key("app1", ["feedback"])
    assert second.key_id != first.key_id
    assert [(k.name, k.active) for k in service.list_keys()] == [("app1", False), ("app1", True)]
    assert service.verify_key(key) is not None


def test_the_database_refuses_two_active_keys_with_one_name(service: shipyard.ModelService) -> None:
    """The partial unique index exists on every backend (compare_metadata does not compare index conditions)."""
    service.create_key("app1", ["predict"])
    now = datetime.now(UTC)
    row = {
        "name": "app1",
        "salt": "00",
        "secret_hash": "0" * 64,
        "scopes": ["predict"],
        "created_at": now,
        "created_by": "sql",
    }
    with pytest.raises(sa_exc.IntegrityError), service.store._engine.begin() as conn:
        conn.execute(insert(api_keys).values(key_id="aaaaaaaa", **row))
    with service.store._engine.begin() as conn:
        conn.execute(insert(api_keys).values(key_id="bbbbbbbb", revoked_at=now, **row))
        conn.execute(insert(api_keys).values(key_id="cccccccc", revoked_at=now, **row))
    assert [k.key_id for k in service.list_keys()][1:] == ["bbbbbbbb", "cccccccc"]


def test_concurrent_creates_of_one_name_give_one_key(service: shipyard.ModelService) -> None:
    def create(_: int) -> str:
        try:
            service.create_key("racer", ["predict"])
            return "created"
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(create, range(6)))
    assert sorted(outcomes) == ["conflict"] * 5 + ["created"]
    assert [k.name for k in service.list_keys()] == ["racer"]


# ---------------------------------------------------------------------- the CLI, as a real subprocess
def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SHIPYARD_DEBUG", "FORCE_COLOR")}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_USER="tester", COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [SHIPYARD, "keys", *args], env=env, capture_output=True, text=True, timeout=120, cwd=home.parent, check=False
    )


def _runs(home: Path, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda args: _run(home, *args), commands))


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_keys_cli(service: shipyard.ModelService, home: Path) -> None:
    created = _run(home, "create", "--name", "app1", "--scope", "predict", "--scope", "feedback")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout.count("\n") == 1 and key.startswith("sy_")  # only the key on stdout, for $(...)
    assert "shown only this once" in created.stderr and key not in created.stderr
    assert "scopes: feedback, predict" in created.stderr
    key_id = key.split("_")[1]

    duplicate, bad_scope, no_scope, bad_name, listing = _runs(
        home,
        ("create", "--name", "app1", "--scope", "predict"),
        ("create", "--name", "app2", "--scope", "predict,write"),
        ("create", "--name", "app2"),
        ("create", "--name", "../x", "--scope", "predict"),
        ("list",),
    )
    assert "an active API key named 'app1' already exists" in _error_line(duplicate)
    assert _error_line(bad_scope) == "error: unknown scope 'write'; the valid scopes are admin, feedback, predict"
    assert "at least one --scope" in _error_line(no_scope)
    assert "invalid key name '../x'" in _error_line(bad_name)
    assert listing.returncode == 0, listing.stderr
    for text in ("Name", "Key ID", "Scopes", "Created by", "Revoked", "app1", key_id, "feedback, predict", "tester"):
        assert text in listing.stdout, listing.stdout
    assert key.split("_", 2)[2] not in listing.stdout

    assert service.verify_key(key) is not None
    revoked = _run(home, "revoke", "app1")
    assert revoked.returncode == 0 and f"revoked API key 'app1' (key id {key_id})" in revoked.stdout
    assert service.verify_key(key) is None

    again, missing, active = _runs(home, ("revoke", "app1"), ("revoke", "nobody"), ("list", "--active"))
    assert "API key 'app1' is already revoked" in _error_line(again)
    assert "API key 'nobody' does not exist" in _error_line(missing)
    assert "no active API keys" in active.stdout
