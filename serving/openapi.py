"""The OpenAPI document the service publishes at `/docs.json`, true to every answer it gives.

BentoML generates a document from the API signatures, but documents every route's answers as
an untyped 200 plus its own 400/404/500 schemas, whose `detail` is a string while the answers
send a list, and says nothing of 401/403/413/415/503; a generated client then fails on the
answers the service really sends. This module keeps BentoML's request schemas and replaces the
rest: each route's answers with their real status codes and bodies (`serving.errors` gives every
error the one `ERROR` shape), the bearer-key security scheme, and the feature rows `/score`
takes, listed from the models in service (each feature by name, number or category, all
required), so the document changes with the champion as the validation does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import orjson

NULLABLE_TEXT = {"type": ["string", "null"]}
NULLABLE_NUMBER = {"type": ["number", "null"]}
DATE = {"type": "string", "format": "date"}
VERSIONS = {
    "type": "object",
    "required": ["churn", "growth"],
    "properties": {"churn": NULLABLE_TEXT, "growth": NULLABLE_TEXT},
    "description": "The model registry versions (null when none is loaded or stored).",
}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "string",
            "description": "One line naming the problem (and the field, where one is at fault).",
        },
        "field": {**NULLABLE_TEXT, "description": "The field at fault, as posted: `rows[2].arr`, `account_ids`."},
        "detail": {
            "type": "array",
            "description": "Every validation problem found, when the body did not match the request schema.",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
UNKNOWN_ACCOUNTS = {
    "allOf": [{"$ref": "#/components/schemas/Error"}],
    "type": "object",
    "required": ["error", "unknown", "as_of", "model_versions"],
    "properties": {
        "unknown": {"type": "array", "items": {"type": "string"}},
        "as_of": {**NULLABLE_TEXT, "format": "date"},
        "model_versions": {"$ref": "#/components/schemas/Versions"},
    },
}
SCORED_ACCOUNT = {
    "type": "object",
    "description": "An account's scores, reasons and tier (every column of the batch output; reasons as lists).",
    "required": ["account_id", "as_of", "churn_risk", "growth_potential", "tier", "reasons"],
    "properties": {
        "account_id": {"type": "string"},
        "as_of": DATE,
        "churn_risk": NULLABLE_NUMBER,
        "growth_potential": NULLABLE_NUMBER,
        "arr": NULLABLE_NUMBER,
        "arr_at_risk": NULLABLE_NUMBER,
        "expected_expansion": NULLABLE_NUMBER,
        "tier": NULLABLE_TEXT,
        "previous_tier": NULLABLE_TEXT,
        "segment": NULLABLE_TEXT,
        "persona": {**NULLABLE_TEXT, "description": "adoption persona learned from the usage mix, or not_adopted"},
        "play": {**NULLABLE_TEXT, "description": "the tier policy's play for the persona and segment, if it names one"},
        "adoption_gaps": {**NULLABLE_TEXT, "description": "where renewing accounts of the same persona use more"},
        "reasons": {
            "type": "object",
            "required": ["churn", "growth"],
            "properties": {
                "churn": {"type": "array", "items": {"type": "object"}},
                "growth": {"type": "array", "items": {"type": "object"}},
            },
        },
        "churn_model_version": NULLABLE_TEXT,
        "growth_model_version": NULLABLE_TEXT,
    },
}
LOOKUP = {
    "type": "object",
    "required": ["results", "unknown", "as_of", "model_versions"],
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "allOf": [{"$ref": "#/components/schemas/ScoredAccount"}],
                "type": "object",
                "required": ["stale"],
                "properties": {"stale": {"type": "boolean"}},
            },
        },
        "unknown": {"type": "array", "items": {"type": "string"}},
        "as_of": {**NULLABLE_TEXT, "format": "date"},
        "model_versions": {"$ref": "#/components/schemas/Versions"},
    },
}
SCORE = {
    "type": "object",
    "required": ["scores", "model_versions", "tier_basis"],
    "properties": {
        "scores": {"type": "array", "items": {"$ref": "#/components/schemas/ScoredAccount"}},
        "model_versions": {"$ref": "#/components/schemas/Versions"},
        "tier_basis": {
            "type": "object",
            "required": ["as_of", "accounts"],
            "properties": {"as_of": {**NULLABLE_TEXT, "format": "date"}, "accounts": {"type": "integer"}},
        },
    },
}
STATUS = {
    "type": "object",
    "required": ["ok", "at", "error"],
    "properties": {"ok": {"type": "boolean"}, "at": {"type": "string"}, "error": NULLABLE_TEXT},
}
MODEL_INFO = {
    "type": "object",
    "required": ["model_versions", "models", "features", "scores", "as_of", "reload"],
    "properties": {
        "model_versions": {"$ref": "#/components/schemas/Versions"},
        "models": {"type": "object", "description": "Per model: version, training facts, backtest metrics."},
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "kind", "description"],
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"enum": ["number", "category"]},
                    "description": {"type": "string"},
                },
            },
        },
        "scores": {
            "type": "object",
            "required": ["store", "as_of", "accounts", "model_versions", "stale", "max_age_days"],
            "properties": {
                "store": {"type": "string", "description": "The score store's file name (never its folder)."},
                "as_of": {**NULLABLE_TEXT, "format": "date"},
                "accounts": {"type": "integer"},
                "model_versions": {"$ref": "#/components/schemas/Versions"},
                "stale": {"type": "boolean"},
                "max_age_days": {"type": "integer"},
            },
        },
        "as_of": {**NULLABLE_TEXT, "format": "date"},
        "reload": {
            "type": "object",
            "required": ["every_seconds", "models", "scores"],
            "properties": {
                "every_seconds": {"type": "number"},
                "models": {"$ref": "#/components/schemas/ReloadStatus"},
                "scores": {"$ref": "#/components/schemas/ReloadStatus"},
            },
        },
    },
}
SCHEMAS = {
    "Error": ERROR,
    "UnknownAccounts": UNKNOWN_ACCOUNTS,
    "Versions": VERSIONS,
    "ScoredAccount": SCORED_ACCOUNT,
    "Lookup": LOOKUP,
    "Score": SCORE,
    "ReloadStatus": STATUS,
    "ModelInfo": MODEL_INFO,
}
ERRORS = {  # status: when, for every API route
    400: "The body is not valid JSON or does not match the request schema; `field` names the culprit.",
    401: "No `Authorization: Bearer <key>` header.",
    403: "The key is not accepted (or auth is off and the caller is not on this machine).",
    413: "The body is over the size limit.",
    415: "The body is not sent as `Content-Type: application/json`.",
    429: "Too many requests in flight.",
    500: "A bug: a generic message, never a traceback (the server log has it).",
}
ROUTES = {  # route: (200 schema, extra statuses)
    "/lookup": ("Lookup", {404: ("UnknownAccounts", "None of the ids is known."), 503: ("Error", "No scores yet.")}),
    "/score": ("Score", {503: ("Error", "No models loaded yet (the tracking store could not be reached).")}),
    "/model_info": ("ModelInfo", {}),
    "/reload": ("ModelInfo", {}),
}


def json_answer(schema: str, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def text_answer(description: str) -> dict:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def feature_row(base: dict, features: list[str], categorical: frozenset[str]) -> dict:
    """The `/score` row schema: BentoML's (account id, as-of, flags) plus every model feature, all required."""
    row = copy.deepcopy(base)
    for name in features:
        row["properties"][name] = NULLABLE_TEXT if name in categorical else NULLABLE_NUMBER
    if "arr" in features:
        row["properties"]["arr"] = {"type": "number", "minimum": 0, "description": "ARR: the value at stake needs it."}
    row["required"] = ["account_id", *features]
    return row


def document(base: dict, features: list[str], categorical: frozenset[str]) -> dict:
    """The service's OpenAPI document from BentoML's (`base`) and the features of the models in service."""
    spec = copy.deepcopy(base)
    spec["openapi"] = "3.1.0"  # nullable values are written `type: [.., "null"]`, as BentoML's schemas already do
    spec["info"] |= {"title": "tierwise", "description": "Churn risk, growth potential and touch tiers by account."}
    schemas = dict(spec["components"]["schemas"])
    for name in ("TaskStatusResponse", "InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(name, None)
    schemas["FeatureRow"] = feature_row(schemas["FeatureRow"], features, categorical)
    spec["components"] = {
        "schemas": schemas | SCHEMAS,
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "An API key."}},
    }
    spec["security"] = [{"apiKey": []}]
    for route, (ok, extra) in ROUTES.items():
        post = spec["paths"][route]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]
        post["requestBody"]["required"] = bool(body.get("required"))  # /model_info and /reload take none
        answers = {200: json_answer(ok, "The answer.")} | {s: json_answer("Error", d) for s, d in ERRORS.items()}
        post["responses"] = {
            str(s): a for s, a in sorted((answers | {s: json_answer(*e) for s, e in extra.items()}).items())
        }
    for route in ("/healthz", "/livez", "/readyz"):
        get = spec["paths"][route]["get"]
        get["security"] = []
        get["responses"] = {"200": text_answer("Alive (ready, for /readyz).")}
    spec["paths"]["/readyz"]["get"]["responses"]["503"] = json_answer("Error", "Not ready: no models loaded yet.")
    spec["paths"]["/docs.json"] = {
        "get": {
            "tags": spec["paths"]["/metrics"]["get"].get("tags", []),
            "description": "This document.",
            "responses": {
                "200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {}}}},
                **{str(s): json_answer("Error", ERRORS[s]) for s in (401, 403)},
            },
        }
    }
    spec["paths"]["/metrics"]["get"]["responses"] = {
        "200": text_answer("Prometheus metrics."),
        **{str(s): json_answer("Error", ERRORS[s]) for s in (401, 403)},
    }
    return spec


class OpenApiMiddleware:
    """ASGI middleware answering `GET /docs.json` with `spec()` instead of BentoML's document."""

    def __init__(self, app, spec: Callable[[], dict], path: str = "/docs.json") -> None:
        self.app = app
        self.spec = spec
        self.path = path

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        body = orjson.dumps(self.spec())
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
