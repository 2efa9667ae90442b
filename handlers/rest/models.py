"""The learned models over REST (admins): their versions and metrics, retrain now, roll back, reload a file, and
canaries (start, promote now, abort). docs/learning.md."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import msgspec
from aiohttp import web

from app.config import CanaryConfig
from app.errors import NotFound
from app.learning.bidmodel import BidModelLearner
from app.learning.canary import comparison
from app.learning.versions import Run, VersionedModel
from handlers.rest.common import PageQuery, decode_cursor, encode_cursor, endpoint, json_response, optional_body
from state.models import CanaryRecord, ModelVersion

ADMIN = ("admin",)
VersionLabel = msgspec.Meta(min_length=1, max_length=128)


class VersionView(msgspec.Struct):
    version: str
    sequence: int
    status: str            # live, retired, rejected, rolled_back, canary
    source: str            # config, file, trained
    created_at: float
    activated_at: float    # when it last went live (0: never)
    file_kept: bool        # false once the disk budget deleted its weights: it can no longer go live
    metrics: dict[str, Any]
    note: str


class ArmView(msgspec.Struct):
    calls: int
    errors: int
    error_rate: float
    p95_ms: float          # over the newest canary.window scoring times
    timed: int             # how many scoring times the p95 is over


class ComparisonView(msgspec.Struct):
    canary: ArmView
    live: ArmView


class LimitsView(msgspec.Struct):
    max_p95_ms: float      # canary.max_p95_ms: a canary slower than this at p95 is rolled back
    max_error_rate: float  # canary.max_error_rate
    min_calls: int         # canary.min_calls: neither limit decides before the canary has served this many


class CanaryView(msgspec.Struct):
    version: str
    share: float
    started_at: float
    ends_at: float         # when it is judged, unless a limit rolls it back first
    started_by: str
    decision: str          # "" while it runs; promoted, rolled_back, aborted
    decided_at: float
    reason: str
    comparison: ComparisonView | None  # the canary's and the live version's calls, errors and p95 so far
    limits: LimitsView     # what decides it (this server's [canary] configuration)


class RunView(msgspec.Struct):
    status: str            # promoted, canary, rejected, recorded, skipped
    reason: str
    started_at: float
    seconds: float
    rows: int
    clicks: int
    version: str | None
    candidate: dict[str, float]
    live: dict[str, float]


class ModelView(msgspec.Struct):
    name: str
    live: str | None       # the live version's label
    serving: str           # the version the scorer really has loaded now
    versions: list[VersionView]
    last_run: RunView | None
    canary: CanaryView | None = None       # the canary running now
    last_canary: CanaryView | None = None  # the newest canary that ended, with its decision
    next_cursor: str | None = None


class ModelList(msgspec.Struct):
    models: list[ModelView]


class RollbackBody(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[str, VersionLabel] | None = None  # default: the version live before the current one


class CanaryBody(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[str, VersionLabel]  # a recorded version whose file is kept (not the live one)


class ReloadBody(msgspec.Struct, forbid_unknown_fields=True):
    path: str | None = None


class ReloadResult(msgspec.Struct):
    version: str


def _version(v: ModelVersion) -> VersionView:
    return VersionView(v.version, v.sequence, v.status, v.source, v.created_at, v.activated_at, bool(v.path),
                       v.metrics, v.note)


def _canary(v: ModelVersion | None, limits: CanaryConfig, measured: dict[str, Any] | None = None
            ) -> CanaryView | None:
    if v is None or v.canary is None:
        return None
    c: CanaryRecord = v.canary
    arms = measured or c.comparison
    compared = ComparisonView(ArmView(**arms["canary"]), ArmView(**arms["live"])) if arms else None
    return CanaryView(v.version, c.share, c.started_at, c.ends_at, c.started_by, c.decision, c.decided_at, c.reason,
                      compared, LimitsView(limits.max_p95_ms, limits.max_error_rate, limits.min_calls))


def _run(run: Run | None) -> RunView | None:
    if run is None:
        return None
    d = asdict(run)
    del d["model"]
    return RunView(**d)


class ModelsApi:
    def __init__(self, learners: dict[str, VersionedModel], reloadable: BidModelLearner) -> None:
        self._learners = learners
        self._reloadable = reloadable

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/admin/models", self.list_models)
        router.add_get("/v1/admin/models/{name}", self.get_model)
        router.add_post("/v1/admin/models/{name}/train", self.train)
        router.add_post("/v1/admin/models/{name}/rollback", self.rollback)
        router.add_post("/v1/admin/models/{name}/canary", self.start_canary)
        router.add_post("/v1/admin/models/{name}/canary/promote", self.promote_canary)
        router.add_post("/v1/admin/models/{name}/canary/abort", self.abort_canary)
        router.add_post("/v1/admin/model/reload", self.reload_model)

    def _learner(self, request: web.Request) -> VersionedModel:
        name = request.match_info["name"]
        learner = self._learners.get(name)
        if learner is None:
            raise NotFound(f"no model named {name!r}; the models are {', '.join(sorted(self._learners))}")
        return learner

    async def _view(self, learner: VersionedModel, limit: int, before: int | None) -> ModelView:
        # The registry is read across awaits while a canary may end or a version go live: read again when the
        # learner changed meanwhile, so a view never shows a canary decided but the old version still live.
        for _ in range(3):
            running, last, serving = learner.canary, learner.last_canary, learner.serving
            versions = await learner.versions(limit, before)
            live = await learner.live()
            if learner.canary is running and learner.last_canary is last and learner.serving == serving:
                break
        nxt = encode_cursor({"before": versions[-1].sequence}) if len(versions) == limit else None
        limits = learner.canary_limits
        now = _canary(running.version, limits, comparison(running.split)) if running is not None else None
        return ModelView(learner.name, live.version if live else None, serving,
                         [_version(v) for v in versions], _run(learner.last_run), now,
                         _canary(last, limits), nxt)

    @endpoint("Every learned model: its newest 20 versions with their held-out metrics, which one is live, the "
              "last retrain, the running canary with its comparison against the live version, and the last canary's "
              "decision", tags=("learning",), roles=ADMIN, response=ModelList)
    async def list_models(self, request: web.Request, principal) -> web.Response:
        return json_response(ModelList([await self._view(learner, 20, None) for learner in self._learners.values()]))

    @endpoint("One model's versions, newest first (paginated with limit and after)", tags=("learning",),
              roles=ADMIN, query=PageQuery, response=ModelView, errors=(404,))
    async def get_model(self, request: web.Request, principal, query: PageQuery) -> web.Response:
        learner = self._learner(request)
        cursor = decode_cursor(query.after)
        before = cursor.get("before") if cursor else None
        return json_response(await self._view(learner, query.limit, before if isinstance(before, int) else None))

    @endpoint("Retrain a model now from the logged outcomes: the candidate goes live only if it beats the live "
              "version on held-out rows (status promoted, rejected, recorded or skipped, with the reason); 409 "
              "while a retrain or swap is under way", tags=("learning",), roles=ADMIN, response=RunView,
              errors=(404, 409))
    async def train(self, request: web.Request, principal) -> web.Response:
        run = await self._learner(request).retrain(principal)
        return json_response(_run(run))

    @endpoint("Put an earlier version back live: by default the one live before the current one; 404 for an "
              "unknown version, 409 when there is none or its file is no longer kept", tags=("learning",),
              roles=ADMIN, raw_body=RollbackBody, response=VersionView, errors=(404, 409))
    async def rollback(self, request: web.Request, principal) -> web.Response:
        body: RollbackBody = optional_body(await request.read(), RollbackBody)
        version = await self._learner(request).rollback(principal, body.version)
        return json_response(_version(version))

    @endpoint("Reload the scoring model from a file (or the configured one again): an atomic swap that in-flight "
              "scoring does not see, recorded as a version of bidnet", tags=("bidding", "learning"), roles=ADMIN,
              body=ReloadBody, response=ReloadResult)
    async def reload_model(self, request: web.Request, principal, body: ReloadBody) -> web.Response:
        version = await self._reloadable.reload(principal, body.path)
        return json_response(ReloadResult(version.version))

    @endpoint("Serve a recorded version as a canary: canary.share of traffic beside the live version for "
              "canary.duration_s, compared with it and promoted or rolled back automatically; 404 for an unknown "
              "model or version, 409 when a canary already runs, the version is live or its file is gone",
              tags=("learning",), roles=ADMIN, body=CanaryBody, response=CanaryView, status=201, errors=(404, 409))
    async def start_canary(self, request: web.Request, principal, body: CanaryBody) -> web.Response:
        learner = self._learner(request)
        started = await learner.start_canary(principal, body.version)
        return json_response(_canary(started, learner.canary_limits), status=201)

    @endpoint("Promote the running canary live now, whatever its measurements; 409 when none runs",
              tags=("learning",), roles=ADMIN, response=VersionView, errors=(404, 409))
    async def promote_canary(self, request: web.Request, principal) -> web.Response:
        return json_response(_version(await self._learner(request).end_canary(principal, promote=True)))

    @endpoint("Abort the running canary: the live version serves all traffic again; 409 when none runs",
              tags=("learning",), roles=ADMIN, response=VersionView, errors=(404, 409))
    async def abort_canary(self, request: web.Request, principal) -> web.Response:
        return json_response(_version(await self._learner(request).end_canary(principal, promote=False)))
