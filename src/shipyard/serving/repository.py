"""The models a server holds: loaded, warmed up, and swapped when their alias or deployment changes in the registry.

A model name with a registry deployment (pin, A/B, canary, shadow) gets a :class:`Route`: every version the
deployment needs, loaded and warmed up *before* the route replaces the previous one, so no request ever
meets a version that is still loading. Servers notice changes by polling the registry's deployment
revisions (one cheap query) every ``reload_interval_s``.

A registry deployment decides what ``NAME`` and ``NAME@production`` serve; an explicit version or another
alias (``fraud:3``, ``fraud@staging``) is served as given. A server started without references serves every
model with a production alias, including those given one after it started (checked at every refresh).
"""

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
from shipyard.rollouts.spec import DeploymentSpec
from shipyard.scoring import Model
from shipyard.scoring.batcher import BatchStats, MicroBatcher, Scores
from shipyard.service import ModelService
from shipyard.serving.routing import RoutingTable
from shipyard.serving.settings import ServeSettings
from shipyard.types import DEFAULT_ALIAS, ModelRef

log = logging.getLogger("shipyard.serving")
PINNED_CACHE = 4  # versions loaded on demand for pinned routes, per server
ADOPT_RETRY_SECONDS = 60.0  # a model newly given a production alias that failed to load is tried again after this


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
            features = self.model.features(example[:1])
            for _ in range(3):
                started = time.perf_counter()
                self._score(features)
                self.batcher.record_call(time.perf_counter() - started)

    def score(self, data: Any, *, allow_extra: bool = False, timeout: float | None = None) -> asyncio.Future[Scores]:
        """Validate ``data`` against the signature and queue it on the batcher; the future gets the scores."""
        features = self.model.features(data, allow_extra=allow_extra)
        return self.batcher.submit(features, timeout)

    def close(self) -> None:
        self.batcher.close()


@dataclass(frozen=True)
class Route:
    """A registry deployment compiled for the hot path: the table to draw from and the loaded versions."""

    revision: int
    spec: DeploymentSpec
    table: RoutingTable
    served: dict[int, ServedModel]
    """Every version the route may use (primary variants, shadow, canary incumbent), loaded and warm."""
    strip: frozenset[int] = frozenset()
    """Versions whose signature lacks the sticky field: it is dropped from the rows before they score."""
    shadow: ServedModel | None = None
    sample: float = 1.0
    incumbent: ServedModel | None = None
    """A running canary's incumbent: it scores the candidate's rows again, for the agreement guard."""
    shares_inputs: frozenset[int] = frozenset()
    """Versions with the same input signature as the shadow (or incumbent): their validated rows are reused."""

    @property
    def primary(self) -> ServedModel:
        """The version with the largest share (what ``/v1/models`` reports as served)."""
        version = self.spec.primary
        if version is None or version not in self.served or version not in self.table.versions:
            version = self.table.versions[0]
        return self.served[version]


@dataclass
class Deployment:
    """A model name served from a reference: a pinned version, an alias it follows, or plain (production/latest).

    A followed name may also have a registry deployment: ``route`` then decides, per request, which version answers.
    """

    name: str
    ref: ModelRef
    current: ServedModel | None = None
    route: Route | None = None
    revision: int = 0
    """The registry deployment revision applied (0: none seen)."""
    follow: ModelRef | None = None
    """The alias followed when the deployment says so (kind ``alias``); else ``ref``."""
    sticky_fields: frozenset[str] = frozenset()
    """Every sticky field the model's deployments have named: callers keep sending it after an A/B ends, so it
    is dropped from rows whose version's signature lacks it, whatever the deployment is now."""

    @property
    def follows(self) -> bool:
        """Whether the served version changes when the alias moves (no version given)."""
        return self.ref.version is None

    @property
    def routed_by_registry(self) -> bool:
        """Whether the model's registry deployment decides what is served: for ``NAME`` and ``NAME@production``.

        A version or another alias given explicitly (``fraud:3``, ``fraud@staging``) is served as given.
        """
        return self.ref.version is None and self.ref.alias in (None, DEFAULT_ALIAS)

    @property
    def followed(self) -> ModelRef:
        return self.follow or self.ref


def _inputs(served: ServedModel) -> Any:
    """The input columns of a version's signature (``None`` without one)."""
    signature = served.info.signature
    return signature.get("inputs") if signature else None


def check_models_section(settings: ServeSettings, service: ModelService) -> None:
    """Refuse ``models:`` entries (serve.yaml) that name no model this server can serve, with a "did you mean":
    with refs, the models they name; without, every registered model (one may get a production alias later)."""
    if not settings.models:
        return
    if settings.refs:
        settings.check_model_names((ModelRef.parse(r).name for r in settings.refs), "served")
    else:
        settings.check_model_names((m.name for m in service.list_models()), "registered")


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
        self._failed: dict[str, float] = {}
        """Names given a production alias that failed to load: when to try again (monotonic seconds)."""
        self.ready = False
        self.on_route: Callable[[Deployment], None] | None = None
        """Called on the event loop after a deployment's route (or revision) changed."""

    # ------------------------------------------------------------------ start-up
    def plan(self) -> None:
        """Decide what to serve: the given refs, or every model with a production alias."""
        check_models_section(self.settings, self.service)
        refs = [ModelRef.parse(r) for r in self.settings.refs]
        if not refs:
            models = self.service.list_models()
            refs = [ModelRef(m.name, alias=DEFAULT_ALIAS) for m in models if DEFAULT_ALIAS in m.aliases]
        for ref in refs:
            if ref.name in self.deployments:
                raise ShipyardError(f"model {ref.name!r} is given twice; serve each model name from one reference")
            self.deployments[ref.name] = Deployment(ref.name, ref)

    def load_all(self) -> None:
        """Load and warm up every deployment (blocking), as its registry deployment says; ready afterwards."""
        revisions = self.service.deployment_revisions() if self.deployments else {}
        for deployment in self.deployments.values():
            self._start(deployment, revisions)
        self.ready = True

    def _start(self, deployment: Deployment, revisions: dict[str, int]) -> None:
        """Load and warm up one deployment (blocking), as its registry deployment (if it takes one) says."""
        revision = revisions.get(deployment.name, 0) if deployment.routed_by_registry else 0
        if revisions.get(deployment.name) and not deployment.routed_by_registry:
            log.warning(
                "%s: serving %s as asked; the registry deployment of %s (revision %d) applies when it is "
                "served as %s or %s@%s",
                deployment.name, deployment.ref, deployment.name, revisions[deployment.name],
                deployment.name, deployment.name, DEFAULT_ALIAS,
            )  # fmt: skip
        if revision:
            try:
                self._install(deployment, *self._prepare(deployment, revision))
                return
            except Exception:
                log.exception(
                    "%s: could not apply deployment revision %d; following its alias", deployment.name, revision
                )
        deployment.current = self._load(self.service.resolve(deployment.ref))

    def _revisions(self) -> dict[str, int]:
        """Deployment revision per model name, from the registry (empty when no name is routed by it)."""
        if not any(d.routed_by_registry for d in self.deployments.values()):
            return {}
        return self.service.deployment_revisions()

    # ------------------------------------------------------------------ deployments
    @staticmethod
    def _routed(deployment: Deployment) -> list[ServedModel]:
        """The versions ``deployment`` uses now: its current one and every version of its route."""
        used = [] if deployment.current is None else [deployment.current]
        route = deployment.route
        if route is not None:
            used.extend(route.served.values())
            used.extend(m for m in (route.shadow, route.incumbent) if m is not None)
        return used

    def _known(self, deployment: Deployment) -> dict[int, ServedModel]:
        """The versions of ``deployment`` already in memory (reused by a new route instead of loaded again)."""
        known: dict[int, ServedModel] = {}
        for (name, version), served in self._pinned.items():
            if name == deployment.name:
                known[version] = served
        route = deployment.route
        if route is not None:
            known.update(route.served)
            for model in (route.shadow, route.incumbent):
                if model is not None:
                    known[model.version] = model
        if deployment.current is not None:
            known[deployment.current.version] = deployment.current
        return known

    def _prepare(self, deployment: Deployment, revision: int) -> tuple[int, Route | None, ServedModel, ModelRef | None]:
        """Read deployment ``revision`` and load what it needs (blocking; runs off the event loop).

        Returns what :meth:`_install` switches to: ``(revision, route, current, followed alias)``.
        """
        name = deployment.name
        state = self.service.deployment(name)
        if state is not None:
            revision = state.revision
        spec = DeploymentSpec.from_json(state.spec) if state is not None and state.spec is not None else None
        if state is not None:
            deployment.sticky_fields = frozenset(
                str(past.spec["sticky"])
                for past in self.service.deployment_history(name)
                if past.spec is not None and past.spec.get("sticky")
            )
        known = self._known(deployment)
        fresh: list[ServedModel] = []

        def obtain(version: int) -> ServedModel:
            if version not in known:
                known[version] = self._load(self.service.resolve(ModelRef(name, version=version)))
                fresh.append(known[version])
            return known[version]

        try:
            return self._compile(deployment, revision, spec, obtain)
        except BaseException:
            for served in fresh:  # loaded for a route that will not be installed
                served.close()
            raise

    def _compile(
        self,
        deployment: Deployment,
        revision: int,
        spec: DeploymentSpec | None,
        obtain: Callable[[int], ServedModel],
    ) -> tuple[int, Route | None, ServedModel, ModelRef | None]:
        """The route of ``spec``, with every version it needs obtained (loaded unless already in memory)."""
        name = deployment.name
        if spec is None or spec.kind == "alias":
            follow = ModelRef(name, alias=spec.alias) if spec is not None and spec.alias else None
            info = self.service.resolve(follow or deployment.ref)
            return revision, None, obtain(info.version), follow
        if not spec.is_resolved:  # written before the served version was known: serve what we serve now
            current = deployment.current or obtain(self.service.resolve(deployment.ref).version)
            spec = spec.resolved(current.version)
        weights = {v: w for v, w in spec.weights().items() if w > 0}
        table = RoutingTable.build(weights, sticky=spec.sticky)
        served = {version: obtain(version) for version in table.versions}
        shadow = obtain(spec.shadow) if spec.kind == "shadow" and spec.shadow is not None else None
        incumbent = None
        plan = spec.canary
        if plan is not None and spec.status == "running" and plan.incumbent and plan.candidate in weights:
            incumbent = obtain(plan.incumbent)
        strip: set[int] = set()
        if spec.sticky is not None:
            for version, model in served.items():
                signature = model.model.signature
                inputs = signature.inputs if signature is not None else ()
                if all(column.name != spec.sticky for column in inputs):
                    strip.add(version)
        again = shadow or incumbent
        shares = frozenset(
            version
            for version, model in served.items()
            if again is not None
            and _inputs(model) is not None
            and _inputs(model) == _inputs(again)
            and model.model.takes_arrays == again.model.takes_arrays  # the same form of validated rows
        )
        route = Route(revision, spec, table, served, frozenset(strip), shadow, spec.sample, incumbent, shares)
        return revision, route, route.primary, None

    def _install(
        self, deployment: Deployment, revision: int, route: Route | None, current: ServedModel, follow: ModelRef | None
    ) -> None:
        """Switch ``deployment`` to a prepared route at once; versions no longer used close after a grace period."""
        before = self._known(deployment)
        deployment.route = route
        deployment.current = current
        deployment.follow = follow
        deployment.revision = revision
        after = self._known(deployment)
        pinned = {id(s) for s in self._pinned.values()}
        unused = [s for v, s in before.items() if after.get(v) is not s and id(s) not in pinned]
        if unused:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            for served in unused:
                if loop is not None:  # requests that hold it finish on it; its thread stops later
                    loop.call_later(self.settings.timeout_s + 5.0, served.close)
                else:
                    served.close()
        described = route.spec.describe() if route is not None else f"follows {deployment.followed}"
        log.info("%s: deployment revision %d applied: %s", deployment.name, revision, described)
        if self.on_route is not None:
            self.on_route(deployment)

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
        """Every model version held in memory: the deployments' current and routed ones, and the pinned cache."""
        held: dict[int, ServedModel] = {}
        for deployment in self.deployments.values():
            for served in self._known(deployment).values():
                held[id(served)] = served
        for served in self._pinned.values():
            held[id(served)] = served
        return list(held.values())

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
        route = deployment.route
        if route is not None:
            routed = route.served.get(version)
            if routed is None and route.shadow is not None and route.shadow.version == version:
                routed = route.shadow
            if routed is not None:
                return routed
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
                (evicted_name, _), evicted = self._pinned.popitem(last=False)
                owner = self.deployments.get(evicted_name)
                if owner is None or all(evicted is not s for s in self._routed(owner)):
                    evicted.close()  # else a route or the current version still uses it
            pending.set_result(served)
            return served
        return await asyncio.shield(pending)

    # ------------------------------------------------------------------ hot reload
    async def refresh(self) -> list[tuple[str, int, int]]:
        """Check deployments and followed aliases once; load, warm and swap in what changed. Returns the swaps.

        A changed deployment revision is read and everything it needs is loaded before its route replaces the
        old one; names without a deployment (or with kind ``alias``) follow their alias as before.
        """
        swaps = []
        revisions = await asyncio.to_thread(self._revisions)
        for deployment in self.deployments.values():
            if not deployment.follows or deployment.current is None:
                continue
            revision = revisions.get(deployment.name, 0) if deployment.routed_by_registry else 0
            if revision != deployment.revision:
                old = deployment.current
                try:
                    prepared = await asyncio.to_thread(self._prepare, deployment, revision)
                except Exception:
                    log.exception(
                        "%s: could not apply deployment revision %d; still serving the previous one; will retry",
                        deployment.name,
                        revision,
                    )
                    continue
                self._install(deployment, *prepared)
                if deployment.current is not None and deployment.current.version != old.version:
                    swaps.append((deployment.name, old.version, deployment.current.version))
                continue
            if deployment.route is not None:
                continue  # the deployment decides, not the alias
            try:
                info = await asyncio.to_thread(self.service.resolve, deployment.followed)
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
        if not self.settings.refs:
            await self._adopt()
        for key in list(self._aliases):
            try:
                info = await asyncio.to_thread(self.service.resolve, ModelRef(key[0], alias=key[1]))
                self._aliases[key] = info.version
            except AliasNotFound:
                del self._aliases[key]
        return swaps

    async def _adopt(self) -> None:
        """Serving every production alias: load and serve the models that got one since the server started.

        A name is added only once loaded and warmed up; one that cannot be loaded is logged and tried again
        :data:`ADOPT_RETRY_SECONDS` later.
        """
        models = await asyncio.to_thread(self.service.list_models)
        now = time.monotonic()
        new = [
            m.name
            for m in models
            if DEFAULT_ALIAS in m.aliases and m.name not in self.deployments and self._failed.get(m.name, 0.0) <= now
        ]
        if not new:
            return
        revisions = await asyncio.to_thread(self.service.deployment_revisions)
        for name in new:
            deployment = Deployment(name, ModelRef(name, alias=DEFAULT_ALIAS))
            try:
                await asyncio.to_thread(self._start, deployment, revisions)
            except Exception:
                log.exception(
                    "%s: got a production alias but could not be loaded; retrying in %g s", name, ADOPT_RETRY_SECONDS
                )
                self._failed[name] = time.monotonic() + ADOPT_RETRY_SECONDS
                continue
            self._failed.pop(name, None)
            self.deployments[name] = deployment
            log.info("%s: serving version %d (it got a production alias)", name, self.current(name).version)
            if self.on_route is not None and deployment.revision == 0:  # else _install has called it
                self.on_route(deployment)

    async def watch(self) -> None:
        """Refresh forever, every ``reload_interval_s`` seconds; errors are logged, never fatal."""
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("checking the registry for alias moves failed; will retry")

    def close(self) -> None:
        for served in self.loaded():
            served.close()
