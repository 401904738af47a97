"""The API from a caller's side: a bad-input matrix over every route, and a fuzzer over the served spec.

Every answer must be what the served OpenAPI document says it is: each bad request a 4xx with one
line naming the problem, in the one documented error shape, never a traceback and never a 5xx.
The fuzzer (schemathesis) generates requests from that document, valid and invalid ones, with a
fixed seed and a bounded number of examples, and fails on any 5xx or any answer outside the
document. One real server (`tierwise serve`) for the module.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.test_service import KEYS, Served, assert_no_traceback, posted_rows, running_server

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {KEYS[0]}"}
FUZZ_EXAMPLES = 30  # per route and generation mode (valid, invalid): ~20 s on 2 busy cores


@pytest.fixture(scope="module")
def api(trained_store, tmp_path_factory) -> Served:
    with running_server(trained_store, tmp_path_factory.mktemp("api")) as server:
        yield server


@pytest.fixture(scope="module")
def spec(api) -> dict:
    resp = httpx.get(f"{api.url}/docs.json", headers=AUTH, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def schema(spec):
    import schemathesis

    return schemathesis.openapi.from_dict(spec)


# --- the document ----------------------------------------------------------------------------


def test_the_document_lists_every_answer_each_route_gives(spec):
    for route in ("/lookup", "/score", "/model_info", "/reload"):
        answers = spec["paths"][route]["post"]["responses"]
        assert {"200", "400", "401", "403", "413", "415", "500"} <= set(answers), route
        error = answers["400"]["content"]["application/json"]["schema"]["$ref"]
        assert error == "#/components/schemas/Error"
    assert {"404", "503"} <= set(spec["paths"]["/lookup"]["post"]["responses"])
    detail = spec["components"]["schemas"]["Error"]["properties"]["detail"]
    assert detail["type"] == "array"  # the answers send a list (BentoML's own document says a string)
    assert spec["paths"]["/readyz"]["get"]["security"] == [] and spec["security"] == [{"apiKey": []}]


def test_the_row_schema_requires_every_model_feature_by_kind(api, spec):
    row = spec["components"]["schemas"]["FeatureRow"]
    features = api.post("/model_info").json()["features"]
    assert set(row["required"]) == {"account_id", *(f["name"] for f in features)}
    for f in features:
        kind = row["properties"][f["name"]]
        if f["name"] == "arr":
            assert kind["type"] == "number" and kind["minimum"] == 0
        else:
            assert kind["type"] == (["string", "null"] if f["kind"] == "category" else ["number", "null"])


# --- the bad-input matrix ----------------------------------------------------------------------


def send(api: Served, route: str, body=None, raw: bytes | None = None, **headers: str) -> httpx.Response:
    """POST to the server with a body as JSON, or raw bytes with the headers given."""
    headers = {**AUTH, "Content-Type": "application/json", **headers}
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(f"{api.url}{route}", content=content, headers=headers, timeout=30)


MATRIX = [  # (case, route, body or raw bytes, extra headers, status, words the error must contain)
    ("garbage JSON", "/lookup", b"{not json", {}, 400, ["Invalid JSON"]),
    ("garbage JSON", "/score", b'{"rows": [', {}, 400, ["Invalid JSON"]),
    ("garbage JSON", "/model_info", b"nope", {}, 400, ["Invalid JSON"]),
    ("garbage JSON", "/reload", b"{,}", {}, 400, ["Invalid JSON"]),
    ("not an object", "/lookup", [1, 2], {}, 400, ["object"]),
    ("not an object", "/score", "rows", {}, 400, ["object"]),
    ("missing field", "/lookup", {}, {}, 400, ["account_ids"]),
    ("missing field", "/score", {}, {}, 400, ["rows"]),
    ("wrong type", "/lookup", {"account_ids": "A1"}, {}, 400, ["account_ids", "array"]),
    ("wrong item type", "/lookup", {"account_ids": [1]}, {}, 400, ["account_ids[0]", "string"]),
    ("wrong type", "/score", {"rows": "not a list"}, {}, 400, ["rows", "array"]),
    ("wrong item type", "/score", {"rows": [7]}, {}, 400, ["rows[0]"]),
    ("row without id", "/score", {"rows": [{"tenure_days": 3}]}, {}, 400, ["rows[0].account_id"]),
    ("empty list", "/lookup", {"account_ids": []}, {}, 400, ["account_ids", "at least 1"]),
    ("empty list", "/score", {"rows": []}, {}, 400, ["rows", "at least 1"]),
    ("empty id", "/lookup", {"account_ids": [""]}, {}, 400, ["account_ids[0]"]),
    ("too many ids", "/lookup", {"account_ids": [f"A{i}" for i in range(1001)]}, {}, 400, ["account_ids", "1000"]),
    ("extra field", "/lookup", {"account_ids": ["A1"], "max_age": 3}, {}, 400, ["max_age", "not permitted"]),
    ("extra field", "/score", {"rows": [{"account_id": "A"}], "policy": "x"}, {}, 400, ["policy"]),
    ("extra field", "/model_info", {"verbose": True}, {}, 400, ["verbose"]),
    ("extra field", "/reload", {"force": True}, {}, 400, ["force"]),
    ("unknown ids", "/lookup", {"account_ids": ["ghost-1", "ghost-2"]}, {}, 404, ["ghost-1", "ghost-2"]),
    ("oversized body", "/lookup", {"account_ids": ["x" * 100] * 50_000}, {}, 413, ["bytes"]),
    ("oversized body", "/score", {"rows": [{"account_id": "x" * 200}] * 30_000}, {}, 413, ["bytes"]),
    ("text body", "/lookup", b'{"account_ids": ["A1"]}', {"Content-Type": "text/plain"}, 415, ["application/json"]),
    ("form body", "/score", b"rows=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415, ["JSON"]),
    ("multipart body", "/model_info", b"--x--", {"Content-Type": "multipart/form-data; boundary=x"}, 415, ["JSON"]),
    ("pickle body", "/reload", b"\x80\x04N.", {"Content-Type": "application/vnd.bentoml+pickle"}, 415, ["JSON"]),
    ("no key", "/lookup", {"account_ids": ["A1"]}, {"Authorization": ""}, 401, ["API key"]),
    ("wrong key", "/score", {"rows": []}, {"Authorization": "Bearer nope"}, 403, ["not accepted"]),
]


@pytest.mark.parametrize(
    ("route", "body", "headers", "status", "words"),
    [case[1:] for case in MATRIX],
    ids=[f"{case[1]} {case[0]}" for case in MATRIX],
)
def test_bad_input_gets_a_4xx_naming_the_problem_in_the_shape_documented(
    api, schema, route, body, headers, status, words
):
    raw = body if isinstance(body, bytes) else None
    resp = send(api, route, body, raw, **headers)
    assert resp.status_code == status, resp.text[:500]
    error = resp.json()["error"]
    assert isinstance(error, str) and "\n" not in error
    for word in words:
        assert word in error, error
    assert_no_traceback(resp)
    schema[route]["POST"].validate_response(resp)  # the answer is one the document describes


def test_posted_values_that_are_not_values_name_the_field_and_the_row(api, schema):
    good = json.dumps(posted_rows(api.features, 1)[0])
    other = posted_rows(api.features, 2)[1]
    for value in ("1e400", "NaN", "Infinity", "-Infinity", '"nan"', '"inf"', "1" + "0" * 400, "true", "null", "-1"):
        row = json.dumps(other).replace(f'"arr": {json.dumps(other["arr"])}', f'"arr": {value}')
        resp = send(api, "/score", raw=f'{{"rows": [{good}, {row}]}}'.encode())
        assert resp.status_code == 400, (value, resp.text)
        assert resp.json()["field"] == "rows[1].arr" and resp.json()["error"].startswith("rows[1].arr: "), value
        assert len(resp.json()["error"]) < 200  # a 400-digit number is not echoed back whole
        schema["/score"]["POST"].validate_response(resp)
    del other["arr"]
    resp = send(api, "/score", {"rows": [json.loads(good), other]})
    assert resp.status_code == 400 and resp.json()["field"] == "rows[1].arr"


def test_unknown_routes_and_methods_answer_json_errors(api):
    for resp in (
        httpx.get(f"{api.url}/nope", headers=AUTH, timeout=10),
        httpx.get(f"{api.url}/lookup", headers=AUTH, timeout=10),
        httpx.put(f"{api.url}/score", headers=AUTH, timeout=10),
    ):
        assert resp.status_code in (404, 405) and resp.headers["content-type"] == "application/json"
        assert resp.json()["error"], resp.text


# --- the fuzzer ----------------------------------------------------------------------------------


def test_fuzzed_requests_get_no_5xx_and_only_documented_answers(api, schema):
    """Schemathesis over every route of the served document, valid and invalid requests, fixed seed."""
    from hypothesis import HealthCheck, given, seed, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    statuses: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.method.upper() == "POST":  # the probes and /metrics take no input to get wrong
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @seed(20261127)
            @settings(
                max_examples=FUZZ_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case) -> None:
                resp = case.call(base_url=api.url, headers=AUTH, timeout=30)
                statuses.setdefault(case.operation.label, set()).add(resp.status_code)
                case.validate_response(resp, checks=checks)

            fuzz()
    assert statuses["POST /score"] >= {200, 400} and statuses["POST /lookup"] >= {400}  # it reached past validation
    assert httpx.get(f"{api.url}/readyz", timeout=5).status_code == 200  # and the service is still up
