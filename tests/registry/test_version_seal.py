"""A version's flavor is bound to its artifact: an edited registry entry is refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.linear_model import LinearRegression
from sqlalchemy import select, update

import shipyard
from shipyard.errors import IntegrityError
from shipyard.registry.tables import model_versions


def _fitted() -> LinearRegression:
    return LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])


@pytest.mark.parametrize("edited", ["river", "onnx", "xgboost", "lightgbm"])
def test_a_version_whose_flavor_was_edited_fails_the_integrity_check(
    service: shipyard.ModelService, edited: str
) -> None:
    mv = service.register(_fitted(), "line")
    with service.store._engine.begin() as conn:
        conn.execute(update(model_versions).values(flavor=edited))
    with pytest.raises(IntegrityError, match=rf"flavor '{edited}'.*wrong loader") as caught:
        service.load(mv.ref)
    assert "line:1" in str(caught.value)
    with service.store._engine.begin() as conn:  # put back as registered: it loads again
        conn.execute(update(model_versions).values(flavor="sklearn"))
    assert service.load(mv.ref).predict([[2.0]]).round(3).tolist() == [4.0]


def test_batch_scoring_checks_the_seal_too(service: shipyard.ModelService, tmp_path: Path) -> None:
    from shipyard.batch.run import load_model

    mv = service.register(_fitted(), "line")
    with service.store._engine.begin() as conn:
        conn.execute(update(model_versions).values(flavor="river"))
    with pytest.raises(IntegrityError, match="wrong loader"):
        load_model(service, service.resolve(mv.ref), ())


def test_existing_versions_are_sealed_by_the_migration_and_keep_loading(backend: str, home: Path) -> None:
    """A registry from before the seal (0006) upgrades with every version sealed as it is; edits still fail."""
    from alembic import command
    from alembic.config import Config

    from shipyard.config import Settings
    from shipyard.registry.store import _make_engine

    service = shipyard.connect()
    mv = service.register(_fitted(), "line")
    service.store.close()
    engine = _make_engine(Settings().resolved_registry_url())
    config = Config()
    config.set_main_option("script_location", "shipyard.registry:migrations")
    with engine.connect().execution_options(shipyard_write=True) as conn, conn.begin():
        config.attributes["connection"] = conn
        command.downgrade(config, "0006")  # the registry as it was before the seal
    engine.dispose()

    from shipyard.app import build_service

    service = build_service(Settings())  # a new process's first use upgrades to the head, sealing the version
    assert service.load(mv.ref).predict([[2.0]]).round(3).tolist() == [4.0]
    with service.store._engine.begin() as conn:
        assert conn.execute(select(model_versions.c.seal)).scalar_one() == mv.seal
        conn.execute(update(model_versions).values(flavor="river"))
    with pytest.raises(IntegrityError, match="wrong loader"):
        service.load(mv.ref)
    service.store.close()
