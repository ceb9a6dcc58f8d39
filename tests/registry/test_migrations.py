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
        assert context.get_current_revision() == "0002"
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
