"""The HTTP surface every service gets: health, readiness with problem details, and 422 bodies that
name the bad field.
"""

from __future__ import annotations

import httpx

from leadstream_cli.processes import free_port
from services.runtime.service import Service
from tests.conftest import SettingsFactory
from tests.services.runtime.conftest import Probe
from tests.support.probe.app import ProbeSettings, build


def _client(service: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://t")


async def test_healthz_and_readyz_when_everything_is_up(probe: Probe) -> None:
    async with _client(probe.service) as http:
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "service": "probe"}
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "service": "probe"}


async def test_readyz_is_a_503_problem_while_postgres_is_unreachable(
    make_settings: SettingsFactory, probe_prefix: str
) -> None:
    url = f"postgresql+asyncpg://leadstream:leadstream@127.0.0.1:{free_port()}/leadstream"
    service = build(make_settings("probe", ProbeSettings, database_url=url, topic_prefix=probe_prefix))
    try:
        async with _client(service) as http:
            health = await http.get("/healthz")
            ready = await http.get("/readyz")
    finally:
        await service.engine.dispose()
    assert health.status_code == 200  # alive, just not ready
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    body = ready.json()
    assert body["status"] == 503 and body["code"] == "not_ready"
    assert body["checks"]["postgres"].startswith("unreachable")
    assert "postgres: unreachable" in body["detail"]


async def test_invalid_body_is_a_422_problem_naming_each_bad_field(probe: Probe) -> None:
    async with _client(probe.service) as http:
        resp = await http.post("/v1/probe/effects", json={"lead_id": "not-a-uuid", "full_name": ""})
        missing = await http.post("/v1/probe/effects", json={"full_name": "Ada"})
        not_json = await http.post("/v1/probe/effects", content=b"{oops", headers={"content-type": "application/json"})
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["code"] == "invalid_request" and body["status"] == 422
    assert {e["field"] for e in body["errors"]} == {"lead_id", "full_name"}
    assert "lead_id:" in body["detail"] and "full_name:" in body["detail"]

    assert missing.status_code == 422
    assert [(e["field"], e["message"]) for e in missing.json()["errors"]] == [("lead_id", "Field required")]
    assert not_json.status_code == 422
    assert not_json.json()["code"] == "invalid_request"


async def test_unknown_route_is_a_404_problem(probe: Probe) -> None:
    async with _client(probe.service) as http:
        resp = await http.get("/v1/probe/nothing-here")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "not_found"


async def test_a_wrong_method_is_a_405_problem_that_says_which_methods_are_allowed(probe: Probe) -> None:
    # RFC 9110 15.5.6: a 405 must carry Allow; the problem handler used to drop the exception's headers.
    async with _client(probe.service) as http:
        resp = await http.delete("/v1/probe/effects")
    assert resp.status_code == 405
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "method_not_allowed"
    assert "POST" in {m.strip() for m in resp.headers["allow"].split(",")}
