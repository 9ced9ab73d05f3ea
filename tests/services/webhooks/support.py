"""Helpers to start the webhooks service, call its API and look at its queue in a test."""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from leadstream_schemas import Channel, Envelope, Event, LeadDiscovered, LeadSource, Replied
from sqlalchemy import select

from services.runtime.auth import create_token
from services.runtime.clock import Clock
from services.runtime.service import Service
from services.webhooks.app import build
from services.webhooks.domain import IpAddress
from services.webhooks.sender import system_resolver
from services.webhooks.settings import WebhooksSettings
from services.webhooks.store import deliverable, deliveries, subscriptions
from tests.support.kafka import wait_for


class PinnedResolver:
    """A resolver for tests: names map to addresses the test sets; other names go to the system resolver."""

    def __init__(self, names: dict[str, str] | None = None) -> None:
        self.names = dict(names or {})
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[IpAddress]:
        self.calls.append(host)
        with contextlib.suppress(ValueError):
            return [ipaddress.ip_address(host)]
        if host not in self.names:
            return await system_resolver(host, port)
        return [ipaddress.ip_address(self.names[host])]


async def start(
    make_settings: Any,
    start_service: Any,
    clock: Clock,
    *,
    resolver: PinnedResolver | None = None,
    **overrides: Any,
) -> Service:
    """The webhooks service on the test servers: quick polls, no jitter, loopback receivers allowed."""
    values: dict[str, Any] = {
        "webhooks_allow_private_targets": True,
        "webhooks_allow_http": True,
        "webhooks_poll_interval_s": 0.05,
        "webhooks_retry_jitter": 0.0,
        "webhooks_timeout_s": 5.0,
    }
    values.update(overrides)
    settings = make_settings("webhooks", WebhooksSettings, **values)
    service: Service = await start_service(build(settings, clock=clock, resolver=resolver or PinnedResolver()))
    return service


@contextlib.asynccontextmanager
async def api(service: Service, workspace: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the service for ``workspace``."""
    token = await create_token(service.engine, workspace)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


async def subscribe(client: httpx.AsyncClient, url: str, event_types: list[str] | None = None) -> dict[str, Any]:
    """Create a subscription; returns the answer (with its secret)."""
    r = await client.post("/v1/webhooks/subscriptions", json={"url": url, "event_types": event_types or ["*"]})
    assert r.status_code == 201, r.text
    return dict(r.json())


def discovered(lead_id: uuid.UUID, name: str = "Ada Adler") -> LeadDiscovered:
    """A lead event."""
    return LeadDiscovered(lead_id=lead_id, source=LeadSource.manual, full_name=name, company="Northwind Labs")


def replied(lead_id: uuid.UUID) -> Replied:
    """A later lead event."""
    return Replied(
        lead_id=lead_id,
        campaign_id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        step_id="s1",
        channel=Channel.message,
        received_at=datetime(2026, 1, 5, tzinfo=UTC),
    )


def envelope(data: Event, workspace: str) -> Envelope[Any]:
    """A root envelope as a producing service would write it."""
    return Envelope.new(data, workspace_id=workspace, source="leadstream/test")


async def delivery_rows(service: Service, subscription_id: str) -> list[Any]:
    """The subscription's deliveries in queue order."""
    async with service.engine.connect() as conn:
        stmt = select(deliveries).where(deliveries.c.subscription_id == uuid.UUID(subscription_id))
        return list((await conn.execute(stmt.order_by(deliveries.c.seq))).all())


async def wait_delivery_count(service: Service, subscription_id: str, n: int) -> list[Any]:
    """Poll until the subscription has ``n`` deliveries queued."""

    async def check() -> list[Any] | None:
        rows = await delivery_rows(service, subscription_id)
        return rows if len(rows) >= n else None

    rows: list[Any] = await wait_for(check, timeout_s=60, what=f"{n} deliveries queued")
    return rows


async def drain(service: Service, subscription_id: str) -> None:
    """Wait until the worker attempted every delivery of the subscription that is due by the service's clock."""
    d = deliveries
    sid = uuid.UUID(subscription_id)

    async def nothing_due() -> bool:
        async with service.engine.connect() as conn:
            stmt = (
                select(d.c.delivery_id)
                .select_from(d.join(subscriptions, subscriptions.c.subscription_id == d.c.subscription_id))
                .where(deliverable(service.clock.now()), d.c.subscription_id == sid)
                .limit(1)
            )
            return (await conn.execute(stmt)).first() is None

    await wait_for(nothing_due, timeout_s=60, what="every due delivery attempted")
