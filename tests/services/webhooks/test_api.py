"""The webhooks API: bounded input with errors naming the field, SSRF refusals (when subscribing and at every
attempt), workspace isolation, pagination, and what an attempt does with redirects, large answers and stalls."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.runtime.auth import create_token
from services.runtime.clock import FakeClock
from tests.services.webhooks.support import (
    PinnedResolver,
    api,
    delivery_rows,
    discovered,
    envelope,
    start,
    subscribe,
)
from tests.support.kafka import produce_events, wait_for
from tests.support.local_http import serve
from tests.support.webhook_receiver import Receiver

PUBLIC = "93.184.215.14"  # never connected to: the tests only let the guard see it


def _fields(r: Any) -> list[str]:
    assert r.status_code == 422, r.text
    return [e["field"] for e in r.json()["errors"]]


async def test_requests_are_bounded_and_errors_name_the_field(make_settings: Any, start_service: Any) -> None:
    service = await start(make_settings, start_service, FakeClock(), webhooks_max_subscriptions=3)
    async with api(service, "ws-hooks-input") as client:
        url = "http://127.0.0.1:9/hook"
        post = client.post
        path = "/v1/webhooks/subscriptions"
        assert _fields(await post(path, json={"url": url, "event_types": ["leadstream.lead.nothing.v1"]})) == [
            "event_types.0"
        ]
        assert _fields(await post(path, json={"url": url, "event_types": ["leadstream.*.x"]})) == ["event_types.0"]
        assert _fields(await post(path, json={"url": url, "event_types": []})) == ["event_types"]
        assert _fields(await post(path, json={"url": url, "event_types": ["*"] * 51})) == ["event_types"]
        assert _fields(await post(path, json={"url": url, "event_types": ["x" * 201]})) == ["event_types.0"]
        assert _fields(await post(path, json={"url": "h" * 2001, "event_types": ["*"]})) == ["url"]
        long_text = {"url": url, "event_types": ["*"], "description": "d" * 501}
        assert _fields(await post(path, json=long_text)) == ["description"]
        nul = {"url": url, "event_types": ["*"], "description": "a\x00b"}
        assert _fields(await post(path, json=nul)) == ["description"]
        assert _fields(await post(path, json={"url": url, "event_types": ["*"], "secret": "mine"})) == ["secret"]
        assert _fields(await post(path, json={"url": "ftp://x.example/", "event_types": ["*"]})) == ["url"]

        created = await subscribe(client, url, ["leadstream.lead.*", "leadstream.lead.*", "*"])
        assert created["event_types"] == ["leadstream.lead.*", "*"]  # duplicates dropped, order kept
        sid = created["subscription_id"]
        r = await client.post(f"{path}/{sid}/redeliver", json={"since": "2026-01-01T00:00:00"})
        assert _fields(r) == ["since"]  # a time without an offset is ambiguous
        r = await client.post(f"{path}/{sid}/disable", json={"reason": "r" * 501})
        assert _fields(r) == ["reason"]
        r = await client.get(f"{path}/{sid}/deliveries", params={"limit": 201})
        assert _fields(r) == ["limit"]
        r = await client.get(f"{path}/{sid}/deliveries", params={"after": "abc"})
        assert _fields(r) == ["after"]

        # Pagination, and the per-workspace limit.
        await subscribe(client, url)
        await subscribe(client, url)
        r = await post(path, json={"url": url, "event_types": ["*"]})
        assert r.status_code == 409 and r.json()["code"] == "too_many_subscriptions"
        page = (await client.get(path, params={"limit": 2})).json()
        assert len(page["items"]) == 2 and page["next"]
        rest = (await client.get(path, params={"limit": 2, "after": page["next"]})).json()
        assert len(rest["items"]) == 1 and rest["next"] is None
        listed = [s["subscription_id"] for s in page["items"] + rest["items"]]
        assert listed[0] == sid and len(set(listed)) == 3 and all("secret" not in s for s in page["items"])

        types = (await client.get("/v1/webhooks/event-types")).json()
        assert "leadstream.lead.replied.v1" in types and types == sorted(types)

        r = await client.patch(f"{path}/{sid}", json={"description": "CRM", "event_types": ["leadstream.lead.*"]})
        assert r.status_code == 200 and r.json()["description"] == "CRM" and r.json()["url"] == url
        disabled = (await client.post(f"{path}/{sid}/disable", json={"reason": "maintenance"})).json()
        assert disabled["state"] == "disabled" and disabled["disabled_reason"] == "operator"
        assert disabled["disabled_detail"] == "maintenance"
        assert (await client.delete(f"{path}/{sid}")).status_code == 204
        assert (await client.get(f"{path}/{sid}")).status_code == 404


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/hook", "127.0.0.1 is not a public address (loopback)"),
        ("https://[::1]/hook", "::1 is not a public address (loopback)"),
        ("https://[::ffff:127.0.0.1]/hook", "not a public address (loopback (as ::ffff:7f00:1))"),
        ("https://10.0.0.8/hook", "10.0.0.8 is not a public address (private)"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254 is not a public address (link-local)"),
        ("https://[fe80::1]/hook", "fe80::1 is not a public address (link-local)"),
        ("https://224.0.0.251/hook", "224.0.0.251 is not a public address (multicast)"),
        ("https://0.0.0.0/hook", "0.0.0.0 is not a public address (unspecified)"),
        ("https://internal.example.com/hook", "internal.example.com resolves to 10.1.2.3, which is not a public"),
        ("https://localhost/hook", "(loopback)"),
        ("https://nowhere.invalid/hook", "nowhere.invalid does not resolve"),
        (f"http://{PUBLIC}/hook", "must be an https:// URL"),
        ("https://user:pw@public.example.com/hook", "must not carry credentials"),
    ],
)
async def test_subscriber_urls_that_are_not_public_https_are_refused(
    make_settings: Any, start_service: Any, url: str, reason: str
) -> None:
    resolver = PinnedResolver({"internal.example.com": "10.1.2.3", "public.example.com": PUBLIC})
    service = await _strict(make_settings, start_service, resolver)
    async with api(service, "ws-hooks-ssrf") as client:
        r = await client.post("/v1/webhooks/subscriptions", json={"url": url, "event_types": ["*"]})
        assert _fields(r) == ["url"]
        assert reason in r.json()["errors"][0]["message"]
        ok = await client.post(
            "/v1/webhooks/subscriptions", json={"url": "https://public.example.com/hook", "event_types": ["*"]}
        )
        assert ok.status_code == 201
        sid = ok.json()["subscription_id"]
        r = await client.patch(f"/v1/webhooks/subscriptions/{sid}", json={"url": url})
        assert _fields(r) == ["url"]  # a changed URL is checked again
        await client.delete(f"/v1/webhooks/subscriptions/{sid}")


async def _strict(make_settings: Any, start_service: Any, resolver: PinnedResolver) -> Any:
    """A service with the production guard (no private targets, https only); built per test (own resolver)."""
    return await start(
        make_settings,
        start_service,
        FakeClock(),
        resolver=resolver,
        webhooks_allow_private_targets=False,
        webhooks_allow_http=False,
    )


async def test_the_address_is_checked_again_at_every_attempt(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    """DNS that points a subscribed name at an internal address later is refused, and nothing is sent there."""
    ws = "ws-hooks-rebind"
    resolver = PinnedResolver({"rebind.example.com": PUBLIC})
    async with Receiver().running() as receiver:
        service = await start(
            make_settings, start_service, FakeClock(), resolver=resolver, webhooks_allow_private_targets=False
        )
        async with api(service, ws) as client:
            sub = await subscribe(client, f"http://rebind.example.com:{receiver.port}/hook")
            sid = sub["subscription_id"]
            resolver.names["rebind.example.com"] = "127.0.0.1"  # the name now points at this machine
            await produce_events(
                service.settings.kafka_bootstrap_servers,
                service.settings.topic_prefix,
                [envelope(discovered(uuid.uuid4()), ws)],
            )

            async def refused() -> Any:
                rows = await delivery_rows(service, sid)
                return rows if rows and rows[0].attempts >= 1 else None

            (row,) = await wait_for(refused, what="an attempt")
            assert row.status == "pending" and row.last_status_code is None
            assert row.last_error == (
                "refused target: rebind.example.com resolves to 127.0.0.1, which is not a public address (loopback)"
            )
            assert receiver.requests == []


async def test_another_workspace_gets_404_on_every_route_with_an_id(make_settings: Any, start_service: Any) -> None:
    service = await start(make_settings, start_service, FakeClock())
    async with api(service, "ws-hooks-owner") as owner, api(service, "ws-hooks-stranger") as stranger:
        sid = (await subscribe(owner, "http://127.0.0.1:9/hook"))["subscription_id"]
        base = f"/v1/webhooks/subscriptions/{sid}"
        delivery = f"{base}/deliveries/{uuid.uuid4()}"
        calls = [
            stranger.get(base),
            stranger.patch(base, json={"description": "mine now"}),
            stranger.delete(base),
            stranger.post(f"{base}/enable"),
            stranger.post(f"{base}/disable"),
            stranger.post(f"{base}/rotate-secret"),
            stranger.get(f"{base}/deliveries"),
            stranger.get(delivery),
            stranger.post(f"{delivery}/redeliver"),
            stranger.post(f"{base}/redeliver", json={"since": "2026-01-01T00:00:00Z"}),
        ]
        for call in calls:
            r = await call
            assert r.status_code == 404 and r.json()["code"] == "subscription_not_found", r.text
        assert (await stranger.get("/v1/webhooks/subscriptions")).json()["items"] == []
        shown = (await owner.get(base)).json()
        assert shown["state"] == "active" and shown["description"] == ""  # nothing the stranger did stuck
        r = await owner.get(delivery)
        assert r.status_code == 404 and r.json()["code"] == "delivery_not_found"
        r = await owner.post(f"{delivery}/redeliver")
        assert r.status_code == 404 and r.json()["code"] == "delivery_not_found"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://t") as anonymous:
        assert (await anonymous.get("/v1/webhooks/subscriptions")).status_code == 401


async def test_redirects_are_not_followed_answers_are_capped_and_stalls_time_out(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    ws = "ws-hooks-answers"
    release = asyncio.Event()

    async def stall(_: Request) -> Response:
        await release.wait()
        return Response(b"late", 200)

    stalling_app = Starlette(routes=[Route("/", stall, methods=["POST"])])
    async with Receiver(status=302, body=b"x" * 100_000).running() as receiver, serve(stalling_app) as slow:
        service = await start(
            make_settings, start_service, FakeClock(), webhooks_timeout_s=0.5, webhooks_response_max_bytes=300
        )
        async with api(service, ws) as client:
            redirecting = await subscribe(client, receiver.url)
            stalling = await subscribe(client, slow + "/")
            receiver.secrets = [redirecting["secret"]]
            await produce_events(
                service.settings.kafka_bootstrap_servers,
                service.settings.topic_prefix,
                [envelope(discovered(uuid.uuid4()), ws)],
            )

            async def attempted(sid: str) -> Any:
                rows = await delivery_rows(service, sid)
                return rows[0] if rows and rows[0].attempts >= 1 else None

            row = await wait_for(lambda: attempted(redirecting["subscription_id"]), what="redirect answered")
            assert row.last_status_code == 302 and "redirects are not followed" in row.last_error
            assert len(receiver.requests) == 1  # the Location was not fetched
            detail = (
                await client.get(
                    f"/v1/webhooks/subscriptions/{redirecting['subscription_id']}/deliveries/{row.delivery_id}"
                )
            ).json()
            assert detail["attempt_log"][0]["response_excerpt"] == "x" * 300  # only the first bytes were read

            row = await wait_for(lambda: attempted(stalling["subscription_id"]), what="stalled attempt")
            assert row.last_error == "timed out after 0.5s" and row.status == "pending"
        release.set()


async def test_scopes_are_as_the_readmes_tell_a_subscriber(make_settings: Any, start_service: Any) -> None:
    """A downstream integrator with a ``write`` token (the scope the main README's token example uses) cannot
    subscribe: both READMEs must say that subscribing needs ``admin``, and that the event-type list is public."""
    service = await start(make_settings, start_service, FakeClock())
    workspace = "ws-hooks-scopes"
    path = "/v1/webhooks/subscriptions"
    url, event_types = "http://127.0.0.1:9/hook", ["leadstream.lead.*"]
    body: dict[str, Any] = {"url": url, "event_types": event_types}
    async with api(service, workspace) as admin:
        created = await subscribe(admin, url, event_types)
    write = await create_token(service.engine, workspace, scopes=("write",))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {write}"},
    ) as client:
        refused = await client.post(path, json=body)
        assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
        sid = created["subscription_id"]
        assert (await client.post(f"{path}/{sid}/disable")).status_code == 200
        assert (await client.patch(f"{path}/{sid}", json={"description": "x"})).status_code == 403
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://t") as anonymous:
        assert (await anonymous.get("/v1/webhooks/event-types")).status_code == 200
    service_readme, downstream = _readmes()
    assert "--scope admin" in service_readme and "`GET /v1/webhooks/event-types` (public)" in service_readme
    assert "--scope admin" in downstream


def _readmes() -> tuple[str, str]:
    """services/webhooks/README.md and the main README's section for downstream systems."""
    root = Path(__file__).resolve().parents[3]
    service_readme = (root / "services" / "webhooks" / "README.md").read_text()
    downstream = (root / "README.md").read_text().split("## For downstream systems", 1)[1].split("\n## ", 1)[0]
    return service_readme, downstream
