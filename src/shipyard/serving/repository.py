"""The models a server holds: loaded, warmed up, and swapped when their alias moves in the registry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.errors import AliasNotFound, ModelNotReady, NotServed, ShipyardError
from shipyard.flavors.base import Features
from shipyard.registry import ModelVersion
from shipyard.scoring import Model
from shipyard.scoring.batcher import BatchStats, MicroBatcher, Scores
from shipyard.service import ModelService
from shipyard.serving.settings import ServeSettings
from shipyard.types import DEFAULT_ALIAS, ModelRef

log = logging.getLogger("shipyard.serving")
PINNED_CACHE = 4  # versions loaded on demand for pinned routes, per server


class ServedModel:
    """One loaded model version with its micro-batcher."""

    def __init__(
        self,
        model: Model,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        load_seconds: float,
        observer: Callable[[ServedModel, BatchStats], None] | None = None,
    ) -> None:
        self.model = model
        self.load_seconds = load_seconds
        self.memory_bytes: int | None = None
        """Growth of the process's resident memory across the load and warm-up (other threads may add noise)."""
        self.loaded_at = time.time()
        self.batcher = MicroBatcher(
            self._score,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            observer=(lambda stats: observer(self, stats)) if observer else None,
        )

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> int:
        return self.model.version

    @property
    def info(self) -> ModelVersion:
        return self.model.info

    def _score(self, features: Features) -> Scores:
        predictions, probabilities = self.model.loaded.predict_with_proba(features)
        return Scores(np.asarray(predictions), None if probabilities is None else np.asarray(probabilities))

    def warm_up(self) -> None:
        """Predictions on the stored input example, so the first request pays no first-call costs.

        The timings seed the batcher's choice between calling the model inline or on its thread.
        """
        example = self.info.input_example
        if example:
            features = self.model.prepare(example[:1])
            for _ in range(3):
                started = time.perf_counter()
                self._score(features)
                self.batcher.record_call(time.perf_counter() - started)

    def score(self, data: Any, *, allow_extra: bool = False, timeout: float | None = None) -> asyncio.Future[Scores]:
        """Validate ``data`` against the signature and queue it on the batcher; the future gets the scores."""
        features = self.model.prepare(data, allow_extra=allow_extra)
        return self.batcher.submit(features, timeout)

    def close(self) -> None:
        self.batcher.close()


@dataclass
class Deployment:
    """A model name served from a reference: a pinned version, an alias it follows, or plain (production/latest)."""

    name: str
    ref: ModelRef
    current: ServedModel | None = None

    @property
    def follows(self) -> bool:
        return self.ref.version is None


class ModelRepository:
    """Loads the deployments, answers which ``ServedModel`` handles a request, and follows alias moves."""

    def __init__(
        self,
        service: ModelService,
        settings: ServeSettings,
        *,
        observer: Callable[[ServedModel, BatchStats], None] | None = None,
        on_load: Callable[[ServedModel], None] | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self._observer = observer
        self._on_load = on_load
        self.deployments: dict[str, Deployment] = {}
        self._pinned: OrderedDict[tuple[str, int], ServedModel] = OrderedDict()
        self._aliases: dict[tuple[str, str], int] = {}
        self._loading: dict[tuple[str, int], asyncio.Future[ServedModel]] = {}
        self.ready = False

    # ------------------------------------------------------------------ start-up
    def plan(self) -> None:
        """Decide what to serve: the given refs, or every model with a production alias."""
        refs = [ModelRef.parse(r) for r in self.settings.refs]
        if not refs:
            models = self.service.list_models()
            refs = [ModelRef(m.name, alias=DEFAULT_ALIAS) for m in models if DEFAULT_ALIAS in m.aliases]
        for ref in refs:
            if ref.name in self.deployments:
                raise ShipyardError(f"model {ref.name!r} is given twice; serve each model name from one reference")
            self.deployments[ref.name] = Deployment(ref.name, ref)

    def load_all(self) -> None:
        """Load and warm up every deployment (blocking); the server is ready afterwards."""
        for deployment in self.deployments.values():
            deployment.current = self._load(self.service.resolve(deployment.ref))
        self.ready = True

    def _load(self, info: ModelVersion) -> ServedModel:
        import psutil

        process = psutil.Process()
        rss_before = process.memory_info().rss
        started = time.perf_counter()
        model = self.service.load(info.ref)
        batching = self.settings.batching_for(info.name)
        served = ServedModel(
            model,
            max_batch_size=batching.max_batch_size,
            max_wait_ms=batching.max_wait_ms,
            load_seconds=0.0,
            observer=self._observer,
        )
        served.warm_up()
        served.load_seconds = time.perf_counter() - started
        served.memory_bytes = max(0, process.memory_info().rss - rss_before)
        if self._on_load is not None:
            self._on_load(served)
        log.info("loaded %s in %.2f s", info.ref, served.load_seconds)
        return served

    # ------------------------------------------------------------------ lookup
    def loaded(self) -> list[ServedModel]:
        """Every model version held in memory: the deployments' current ones and the pinned cache."""
        current = [d.current for d in self.deployments.values() if d.current is not None]
        return current + [s for s in self._pinned.values() if all(s is not c for c in current)]

    def served_names(self) -> list[str]:
        return sorted(self.deployments)

    def deployment(self, name: str) -> Deployment:
        try:
            return self.deployments[name]
        except KeyError:
            raise NotServed(name, self.served_names()) from None

    def current(self, name: str) -> ServedModel:
        """The version that the deployment of ``name`` serves now."""
        served = self.deployment(name).current
        if served is None:
            raise ModelNotReady(f"model {name!r} is still loading; retry in a moment")
        return served

    async def get(self, name: str, *, version: int | None = None, alias: str | None = None) -> ServedModel:
        """The served model for a request: the deployment's current one, a pinned version, or an alias."""
        deployment = self.deployment(name)
        if version is None and alias is None:
            return self.current(name)
        if alias is not None:
            version = await self._resolve_alias(name, alias)
        assert version is not None
        ModelRef(name, version=version)  # range check: a clear 400 instead of a database error
        current = deployment.current
        if current is not None and current.version == version:
            return current
        return await self._pinned_version(name, version)

    async def _resolve_alias(self, name: str, alias: str) -> int:
        key = (name, alias)
        if key not in self._aliases:
            info = await asyncio.to_thread(self.service.resolve, ModelRef(name, alias=alias))
            self._aliases[key] = info.version
        return self._aliases[key]

    async def _pinned_version(self, name: str, version: int) -> ServedModel:
        key = (name, version)
        if key in self._pinned:
            self._pinned.move_to_end(key)
            return self._pinned[key]
        pending = self._loading.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = self._loading[key] = loop.create_future()
            try:
                info = await asyncio.to_thread(self.service.resolve, ModelRef(name, version=version))
                served = await asyncio.to_thread(self._load, info)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # mark retrieved: waiters re-raise it themselves
                raise
            finally:
                self._loading.pop(key, None)
            self._pinned[key] = served
            while len(self._pinned) > PINNED_CACHE:
                _, evicted = self._pinned.popitem(last=False)
                evicted.close()
            pending.set_result(served)
            return served
        return await asyncio.shield(pending)

    # ------------------------------------------------------------------ hot reload
    async def refresh(self) -> list[tuple[str, int, int]]:
        """Check every followed alias once; load, warm and swap in versions that moved. Returns the swaps."""
        swaps = []
        for deployment in self.deployments.values():
            if not deployment.follows or deployment.current is None:
                continue
            try:
                info = await asyncio.to_thread(self.service.resolve, deployment.ref)
            except AliasNotFound:
                continue  # the alias was deleted: keep serving what we have
            old = deployment.current
            if info.version == old.version:
                continue
            new = await asyncio.to_thread(self._load, info)
            deployment.current = new  # requests that hold `old` finish on it; its thread stops later
            asyncio.get_running_loop().call_later(self.settings.timeout_s + 5.0, old.close)
            swaps.append((deployment.name, old.version, new.version))
            log.info("%s: switched from version %d to %d", deployment.name, old.version, new.version)
        for key in list(self._aliases):
            try:
                info = await asyncio.to_thread(self.service.resolve, ModelRef(key[0], alias=key[1]))
                self._aliases[key] = info.version
            except AliasNotFound:
                del self._aliases[key]
        return swaps

    async def watch(self) -> None:
        """Refresh forever, every ``reload_interval_s`` seconds; errors are logged, never fatal."""
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("checking the registry for alias moves failed; will retry")

    def close(self) -> None:
        for deployment in self.deployments.values():
            if deployment.current is not None:
                deployment.current.close()
        for served in self._pinned.values():
            served.close()
