"""The tierwise HTTP service: account lookups, on-demand scoring and model info, on BentoML.

Other systems (CRM, billing, the support desk) ask for one account's risk and tier in real time.
Lookups answer from the latest-scores store written by `tierwise score`; posted feature rows
are scored by `serving.scoring.score_columns`, the scoring the batch job runs, so both paths
give the same numbers. Models and scores are reloaded while serving (`serving.live`).

Routes (all POST, JSON; every route but `/healthz`, `/livez`, `/readyz` needs
`Authorization: Bearer KEY`): `/lookup`, `/score`, `/model_info`, `/reload`, plus BentoML's
`/metrics` (Prometheus) and OpenAPI document (`/docs.json`, `serving.openapi`: true to every
answer). Every error is `{"error": "<one line naming the problem>", "field": ...}`
(`serving.errors`), with no password, folder or stack in it (`serving.redact`).
docs/service.md has curl examples.

Start it with `tierwise serve`; in a bento or container, `bentoml serve serving.service:TierwiseService`.
"""

import functools
import itertools
import logging
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import anyio
import bentoml
import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from features.tables import DataError
from serving.auth import ApiKeyMiddleware
from serving.batching import Batcher
from serving.body_limit import MAX_BODY_BYTES, BodyLimitMiddleware
from serving.console.routing import ConsoleRouting
from serving.errors import ErrorShapeMiddleware
from serving.openapi import OpenApiMiddleware
from serving.redact import RedactingFilter, public_text
from tierwise import settings

logger = logging.getLogger("tierwise.service")

MAX_IDS = 1000  # account ids per lookup
MAX_ROWS = 1000  # feature rows per score call
MAX_BATCH_REQUESTS = 32  # score requests merged into one model call

AccountId = Annotated[str, Field(min_length=1, max_length=200)]


class FeatureRow(BaseModel):
    """One account's feature row, as `tierwise features` writes it: `account_id`, optional
    `as_of` (default today), `insufficient_history` and `renewal_date` (derived when absent),
    and every model feature by name (see `/model_info`; null for an unknown value).
    """

    model_config = ConfigDict(extra="allow")

    account_id: AccountId
    as_of: date | None = None
    insufficient_history: bool | None = None
    renewal_date: date | None = None


class Strict(BaseModel):
    """A request body whose unknown top-level keys are refused (400), so a misspelt option is never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class LookupRequest(Strict):
    """`/lookup`: the account ids to look up."""

    account_ids: Annotated[list[AccountId], Field(min_length=1, max_length=MAX_IDS)]


class ScoreRequest(Strict):
    """`/score`: the feature rows to score."""

    rows: Annotated[list[FeatureRow], Field(min_length=1, max_length=MAX_ROWS)]


class NoOptions(Strict):
    """`/model_info` and `/reload` take no options (an empty object or no body)."""


@dataclass(frozen=True)
class ScoreJob:
    """One `/score` request waiting for the adaptive batch: its checked rows and the state they were checked against."""

    rows: list[dict]
    models: Any  # serving.registry.Models
    book: Any  # serving.live.Book


def answer(status: int, body: dict) -> Response:
    """A JSON answer with a status; errors carry `error` (and `field` where one is at fault)."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


# No tracing exporter is configured by default, yet OpenTelemetry's per-request spans cost about a
# third of a lookup; a log line per request costs ~1 ms of a scoring call at concurrency 8.
# docs/deploy.md says how to turn either on.
UNTRACED = ["/lookup", "/score", "/model_info", "/reload"]


@bentoml.service(
    name="tierwise",
    workers=1,
    traffic={"timeout": 30, "max_concurrency": 256},  # BentoML holds a timer per request this long
    tracing={"excluded_urls": UNTRACED},
    logging={"access": {"enabled": settings.access_log()}},  # off by default; /metrics counts requests anyway
)
class TierwiseService:
    """Loads the champions and the latest scores once at start, then keeps them current."""

    def __init__(self) -> None:
        from serving.live import LiveState
        from serving.tiers import load_policy

        RedactingFilter.install()
        self.live = LiveState.start()
        self.policy = load_policy(settings.policy_path())
        self.max_age_days = settings.max_score_age_days()
        self.reload_seconds = settings.reload_seconds()
        self.live.poll_forever(self.reload_seconds)
        self.batched_score = Batcher(self.score_jobs, max_batch=MAX_BATCH_REQUESTS)
        versions = self.live.versions
        logger.info(
            "tierwise service started: churn v%s, growth v%s, %s accounts in the score store",
            versions["churn"],
            versions["growth"],
            len(self.live.book.answers),
        )
        SERVING.append(self)

    def __is_ready__(self) -> bool:
        """Ready once the champions are loaded (`/readyz` answers 503 until then)."""
        return self.live.models is not None

    @bentoml.api(route="/lookup", input_spec=LookupRequest)
    async def lookup(self, account_ids: list[str]) -> dict:
        """Latest scores of one or many accounts; unknown ids are listed (404 when none is known)."""
        from serving.live import stale_before

        book = self.live.book
        base = {"as_of": book.as_of, "model_versions": book.model_versions}
        if book.stamp is None:
            return answer(503, {"error": f"no scores yet in {book.path.name}: run `tierwise score`", **base})
        cutoff = stale_before(self.max_age_days)
        results, unknown = [], []
        for account in dict.fromkeys(account_ids):
            found = book.answers.get(account)
            if found is None:
                unknown.append(account)
            else:
                results.append({**found, "stale": found["as_of"] < cutoff})
        if not results:
            return answer(404, {"error": f"unknown account_id: {', '.join(unknown)}", "unknown": unknown, **base})
        return answer(200, {"results": results, "unknown": unknown, **base})

    @bentoml.api(route="/score", input_spec=ScoreRequest)
    async def score(self, rows: list[FeatureRow]) -> dict:
        """Score posted feature rows with reasons and a tier proposal against the current book."""
        from serving.online import RowError, checked_rows

        models, book = self.live.models, self.live.book
        if models is None:
            return answer(503, {"error": f"no models loaded yet: {self.live.status['models']['error']}"})
        try:
            checked = checked_rows([r.model_dump() for r in rows], models)
        except RowError as exc:
            return answer(400, {"error": str(exc), "field": exc.field})
        try:
            result = await self.batched_score(ScoreJob(checked, models, book))
        except DataError as exc:  # the rows passed the checks but cannot be scored or tiered: this caller's 400
            return answer(400, {"error": public_text(exc), "field": None})
        return answer(
            200,
            {
                "scores": result,
                "model_versions": {"churn": models.churn_version, "growth": models.growth_version},
                "tier_basis": {"as_of": book.as_of, "accounts": len(book.answers)},
            },
        )

    def score_jobs(self, jobs: list[ScoreJob]) -> list[list[dict] | Exception]:
        """The adaptive batch: requests checked against the same models are scored in one call.

        A request that fails fails alone: its result is its exception, the others get their answers.
        """
        from serving.online import score_requests

        out = []
        for _, group in itertools.groupby(jobs, key=lambda job: (id(job.models), id(job.book))):
            group = list(group)
            out += score_requests([job.rows for job in group], group[0].models, self.policy, group[0].book)
        return out

    @bentoml.api(route="/model_info", input_spec=NoOptions)
    async def model_info(self) -> dict:
        """Versions, training dates, metrics and features of the models in service, and the reload status."""
        return answer(200, self.info())

    @bentoml.api(route="/reload", input_spec=NoOptions)
    async def reload(self) -> dict:
        """Look for a new champion and a new score batch now (also retries a champion that failed to load)."""
        await anyio.to_thread.run_sync(functools.partial(self.live.refresh, force=True))
        return answer(200, self.info())

    def info(self) -> dict:
        """What `/model_info` answers."""
        from serving.live import stale_before

        models, book = self.live.models, self.live.book
        loaded = (
            () if models is None else ((models.churn, models.churn_version), (models.growth, models.growth_version))
        )
        return {
            "model_versions": self.live.versions,
            "models": {b.target: bundle_info(b, v) for b, v in loaded},
            "features": [
                {
                    "name": name,
                    "kind": "category" if name in models.categorical else "number",
                    "description": models.churn.descriptions.get(name, name),
                }
                for name in (models.features if models else ())
            ],
            "scores": {
                "store": book.path.name,
                "as_of": book.as_of,
                "accounts": len(book.answers),
                "model_versions": book.model_versions,
                "stale": book.as_of is not None and book.as_of < stale_before(self.max_age_days),
                "max_age_days": self.max_age_days,
            },
            "as_of": book.as_of,
            "reload": {"every_seconds": self.reload_seconds, **self.live.status},
        }


def bundle_info(bundle, version: str) -> dict:
    """One model's registry version, training facts and backtest metrics (from the bundle's `info`).

    Values are passed through `public_text` where they are text, so no path or password stored
    with a run (a data folder, a tracking URI) reaches a caller.
    """
    import json

    info = json.loads(json.dumps(bundle.info, default=str), object_hook=public_values)
    return {"version": version, "features": len(bundle.features), **info}


def public_values(record: dict) -> dict:
    """A JSON object with its text values made public (`serving.redact.public_text`)."""
    return {key: public_text(value) if isinstance(value, str) else value for key, value in record.items()}


SERVING: list[TierwiseService] = []  # the worker's service instance, once built (the OpenAPI document reads its models)


def openapi_document() -> dict:
    """The OpenAPI document of this worker's service: BentoML's request schemas, true answers, current features."""
    from serving.openapi import document

    models = SERVING[0].live.models if SERVING else None
    features, categorical = (list(models.features), models.categorical) if models else ([], frozenset())
    return document(TierwiseService.openapi_spec.asdict(), features, categorical)


# Order matters: the first added runs first. The key check comes before anything reads a body; errors
# from everything inside are put in the one error shape.
TierwiseService.add_asgi_middleware(ConsoleRouting)  # /console: the CSM pages, with their own sign-in (docs/console.md)
TierwiseService.add_asgi_middleware(ApiKeyMiddleware)
TierwiseService.add_asgi_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
TierwiseService.add_asgi_middleware(OpenApiMiddleware, spec=openapi_document)
TierwiseService.add_asgi_middleware(ErrorShapeMiddleware)
