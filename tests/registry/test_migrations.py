"""The Alembic migrations build exactly the schema the code uses, on every backend."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import shipyard
from shipyard.registry.tables import metadata


def test_migrated_schema_matches_the_tables_the_code_uses(backend: str, home: Path) -> None:
    service = shipyard.connect()
    assert service.list_models() == []  # first use runs the migrations
    with service.store._engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_revision() == "0007"
        differences = compare_metadata(context, metadata)
    assert differences == []
    service.store.close()


def test_schema_head_constant_names_the_newest_migration() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from shipyard.registry.store import SCHEMA_HEAD

    config = Config()
    config.set_main_option("script_location", "shipyard.registry:migrations")
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD


def test_a_database_at_0002_upgrades_to_0003_keeping_its_rows(backend: str, home: Path) -> None:
    """Lineage (0003) is added to an existing registry: old versions keep every field, with no parent and ``{}``."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from shipyard.config import Settings
    from shipyard.registry.store import SCHEMA_HEAD, _make_engine

    engine = _make_engine(Settings().resolved_registry_url())
    config = Config()
    config.set_main_option("script_location", "shipyard.registry:migrations")
    with engine.connect().execution_options(shipyard_write=True) as conn, conn.begin():
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (name, description, tags, latest_version, created_at, updated_at) "
                "VALUES ('old', 'before lineage', '{}', 1, :now, :now)"
            ),
            {"now": "2026-11-30 12:00:00+00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO model_versions (model_id, version, flavor, artifact_uri, sha256, size_bytes, metrics, "
                "params, tags, flavor_meta, environment, description, creator, created_at) VALUES "
                "((SELECT id FROM models WHERE name = 'old'), 1, 'sklearn', 'file:///nowhere/model.skops', :sha, 10, "
                "'{\"auc\": 0.9}', '{}', '{\"team\": \"risk\"}', '{}', '{}', 'v1', 'someone', :now)"
            ),
            {"sha": "0" * 64, "now": "2026-11-30 12:00:00+00:00"},
        )
    engine.dispose()

    service = shipyard.connect()  # first use migrates to the head
    (old,) = service.list_versions("old")
    assert (old.version, old.metrics, old.tags, old.description, old.creator) == (1, {"auc": 0.9}, {"team": "risk"},
                                                                                   "v1", "someone")
    assert (old.parent_version, old.lineage) == (None, {})
    with service.store._engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == SCHEMA_HEAD
    from sklearn.linear_model import LinearRegression

    child = service.register(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), "old", parent=1,
                             lineage={"source": "data/", "files": ["data/a.csv"]})
    assert (child.version, child.parent_version, child.lineage["files"]) == (2, 1, ["data/a.csv"])
    service.store.close()


def test_a_database_at_0003_upgrades_to_0004_and_back(backend: str, home: Path) -> None:
    """Online learning (0004) adds its four tables to an existing registry, and its downgrade removes them."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect

    from shipyard.config import Settings
    from shipyard.registry.store import _make_engine

    engine = _make_engine(Settings().resolved_registry_url())
    config = Config()
    config.set_main_option("script_location", "shipyard.registry:migrations")
    online = {"online_models", "online_events", "online_predictions", "online_alerts"}
    for move, target in ((command.upgrade, "0003"), (command.upgrade, "0004"), (command.downgrade, "0003")):
        with engine.connect().execution_options(shipyard_write=True) as conn, conn.begin():
            config.attributes["connection"] = conn
            move(config, target)
        with engine.connect() as conn:
            assert (online <= set(inspect(conn).get_table_names())) == (target == "0004")
    engine.dispose()


def test_a_database_at_0005_upgrades_to_0006_and_back(backend: str, home: Path) -> None:
    """Rollouts (0006) add their three tables to an existing registry, and the downgrade removes them."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect

    from shipyard.config import Settings
    from shipyard.registry.store import _make_engine

    engine = _make_engine(Settings().resolved_registry_url())
    config = Config()
    config.set_main_option("script_location", "shipyard.registry:migrations")
    rollouts = {"deployments", "deployment_history", "rollout_stats"}
    for move, target in ((command.upgrade, "0005"), (command.upgrade, "0006"), (command.downgrade, "0005")):
        with engine.connect().execution_options(shipyard_write=True) as conn, conn.begin():
            config.attributes["connection"] = conn
            move(config, target)
        with engine.connect() as conn:
            assert (rollouts <= set(inspect(conn).get_table_names())) == (target == "0006")
    engine.dispose()
