"""The HTTP edge every service has: request bodies capped before they are read in full (413 problem), and
text Postgres cannot store refused with a 422 problem naming the field."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from pydantic import BaseModel, Field, model_validator

from services.runtime.edge import InputGuard
from services.runtime.errors import Problem, install_problem_handlers
from tests.services.runtime.conftest import Probe

LIMIT = 1_048_576


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


async def _chunks(total: int, size: int = 65_536) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def _streaming_app(reads: list[int], limits: dict[str, int]) -> FastAPI:
    """An app with one route that reads a raw (non-JSON) body as a stream, behind the guard with a 64 KiB cap
    (``limits``: the routes with a cap of their own)."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        async for chunk in request.stream():
            reads.append(len(chunk))
        return {"read": sum(reads)}

    app.add_middleware(InputGuard, max_body_bytes=65_536, limits=limits)
    return app


def _assert_too_large(resp: httpx.Response, limit: int) -> None:
    assert resp.status_code == 413, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["code"] == "payload_too_large" and body["status"] == 413
    assert f"{limit:,} bytes" in body["detail"]


async def test_a_body_above_the_cap_is_a_413_before_it_is_read(probe: Probe) -> None:
    big = b'{"lead_id": "%s", "full_name": "' % str(uuid.uuid4()).encode() + b"x" * LIMIT + b'"}'
    async with _client(probe.service.app) as http:
        declared = await http.post("/v1/probe/effects", content=big, headers={"content-type": "application/json"})
        chunked = await http.post(
            "/v1/probe/effects", content=_chunks(LIMIT + 1), headers={"content-type": "application/json"}
        )
        fits = await http.post("/v1/probe/effects", json={"lead_id": str(uuid.uuid4()), "full_name": "x" * 101})
    _assert_too_large(declared, LIMIT)
    _assert_too_large(chunked, LIMIT)  # no Content-Length: counted while it arrives
    assert fits.status_code == 422  # under the cap: the route's own validation answers


async def test_a_streamed_body_is_cut_off_at_the_cap_and_a_route_can_have_its_own() -> None:
    reads: list[int] = []
    async with _client(_streaming_app(reads, {})) as http:
        over = await http.post("/upload", content=_chunks(200_000), headers={"content-type": "text/csv"})
    _assert_too_large(over, 65_536)
    assert sum(reads) <= 65_536  # the route never got the chunk that passed the cap

    reads.clear()
    async with _client(_streaming_app(reads, {"/upload": 300_000})) as http:
        allowed = await http.post("/upload", content=_chunks(200_000), headers={"content-type": "text/csv"})
        over = await http.post("/upload", content=_chunks(400_000), headers={"content-type": "text/csv"})
    assert allowed.status_code == 200 and allowed.json() == {"read": 200_000}
    _assert_too_large(over, 300_000)


def test_services_register_their_own_caps(probe: Probe) -> None:
    from services.discovery.app import build
    from services.discovery.settings import DiscoverySettings

    discovery = build(DiscoverySettings(csv_max_bytes=5_000_000))
    assert discovery.body_limits == {"/v1/imports/csv": 5_000_000}
    assert probe.service.body_limits == {}  # every other route: http_max_body_bytes


async def test_nul_and_lone_surrogates_are_422s_naming_the_field(probe: Probe) -> None:
    lead = str(uuid.uuid4())
    async with _client(probe.service.app) as http:
        nul = await http.post(
            "/v1/probe/effects",
            content=b'{"lead_id": "%s", "full_name": "Ada\\u0000Lovelace"}' % lead.encode(),
            headers={"content-type": "application/json"},
        )
        lone = await http.post(
            "/v1/probe/effects",
            content=b'{"lead_id": "%s", "full_name": "Ada \\ud83d"}' % lead.encode(),
            headers={"content-type": "application/json"},
        )
        nested = await http.post(
            "/v1/probe/effects",
            content=b'{"lead_id": "%s", "full_name": "Ada", "extra": [{"note": "\\u0000"}]}' % lead.encode(),
            headers={"content-type": "application/json"},
        )
        query = await http.get("/healthz?name=a%00b")
        escaped = await http.post(  # an escaped backslash: the text "\u0000", which Postgres stores fine
            "/v1/probe/effects",
            content=b'{"lead_id": "%s", "full_name": "Ada \\\\u0000"}' % lead.encode(),
            headers={"content-type": "application/json"},
        )
    for resp, field, what in (
        (nul, "full_name", "NUL"),
        (lone, "full_name", "lone surrogate"),
        (nested, "extra.0.note", "NUL"),
        (query, "name", "NUL"),
    ):
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        body = resp.json()
        assert body["code"] == "invalid_request"
        [error] = body["errors"]
        assert error["field"] == field and what in error["message"], body
        assert body["detail"].startswith(f"{field}: ")
    assert escaped.status_code == 202, escaped.text


class _Hours(BaseModel):
    start_hour: int
    end_hour: int

    @model_validator(mode="after")
    def _ordered(self) -> _Hours:
        if self.end_hour <= self.start_hour:
            raise ValueError(f"end_hour ({self.end_hour}) must be after start_hour ({self.start_hour})")
        return self


class _HoursBody(BaseModel):
    delivery: _Hours
    account_ids: list[int] = Field(default=[1], min_length=1)
    note: str = Field(default="x", min_length=1)


async def test_a_validator_s_message_reaches_the_caller_in_its_own_words() -> None:
    """A model validator's ValueError is a 422 naming the field with the validator's message, without pydantic's
    "Value error, " before it (the console shows these messages to users as they come); pydantic's own messages
    (a missing field) are kept as they are."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/hours")
    async def hours(body: _HoursBody) -> dict[str, int]:
        return {"end_hour": body.delivery.end_hour}

    async with _client(app) as http:
        bad = await http.post("/hours", json={"delivery": {"start_hour": 18, "end_hour": 9}})
        missing = await http.post("/hours", json={"delivery": {"start_hour": 18}})
        good = await http.post("/hours", json={"delivery": {"start_hour": 9, "end_hour": 18}})
    assert bad.status_code == 422, bad.text
    assert bad.json()["errors"] == [{"field": "delivery", "message": "end_hour (9) must be after start_hour (18)"}]
    assert bad.json()["detail"] == "delivery: end_hour (9) must be after start_hour (18)"
    assert missing.json()["errors"] == [{"field": "delivery.end_hour", "message": "Field required"}]
    assert good.status_code == 200 and good.json() == {"end_hour": 18}
    async with _client(app) as http:
        empty = await http.post(
            "/hours", json={"delivery": {"start_hour": 9, "end_hour": 18}, "account_ids": [], "note": ""}
        )
    assert empty.json()["errors"] == [
        {"field": "account_ids", "message": "at least one is needed"},
        {"field": "note", "message": "must not be empty"},
    ]


def test_a_problem_naming_a_field_lists_it_in_errors() -> None:
    """Clients read the fields at fault from ``errors``; a problem raised with only ``field=`` lists it there too
    (its message without the detail's "field: " prefix), and one with its own list keeps it."""
    named = Problem(422, "invalid_file", "file: is not UTF-8 text", field="file")
    assert named.extra["errors"] == [{"field": "file", "message": "is not UTF-8 text"}]
    own = Problem(422, "unknown_template", "template: none", field="template", errors=[{"field": "t", "message": "m"}])
    assert own.extra["errors"] == [{"field": "t", "message": "m"}]
    assert "errors" not in Problem(409, "search_finished", "search already finished").extra
