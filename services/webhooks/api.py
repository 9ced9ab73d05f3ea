"""Webhooks' HTTP API: subscriptions (create, list, get, update, delete, enable, disable, rotate the secret),
the delivery log, and redelivery. Every route is scoped to the workspace of the bearer token; another
workspace's subscription or delivery answers 404. Lists are keyset-paginated: pass ``next`` as ``after``.
Creating, re-targeting, deleting a subscription and rotating its secret need the ``admin`` scope (a subscription
sends the workspace's events to a URL); reading needs ``read``, the rest ``write``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response
from leadstream_schemas import EVENT_TYPES
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.engine import Row

from services.runtime.auth import AdminWorkspace, ReadWorkspace, WriteWorkspace, public
from services.runtime.errors import Problem
from services.runtime.pagination import bounded
from services.runtime.service import Service

from . import domain, store
from .commands import SubscriptionCommands, not_found
from .domain import DisabledReason, State, Status

Cursor = Annotated[
    str | None, Query(pattern=r"^[0-9]{1,18}$", max_length=18, description="`next` of the previous page.")
]
PageSize = Annotated[int, Query(ge=1, le=200)]
MAX_ATTEMPTS_SHOWN = 100


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _pattern(value: str) -> str:
    return domain.check_pattern(value, EVENT_TYPES)


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=domain.MAX_URL)]
Description = Annotated[str, StringConstraints(max_length=500), AfterValidator(_no_nul)]
EventPattern = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_pattern)]
EventPatterns = Annotated[
    list[EventPattern], Field(min_length=1, max_length=domain.MAX_PATTERNS), AfterValidator(_unique)
]


class SubscriptionIn(BaseModel):
    """A new subscription: where to POST, and which event types (``*``, a type, or ``leadstream.lead.*``)."""

    model_config = ConfigDict(extra="forbid")

    url: Url = Field(description="https URL that receives the events (must resolve to public addresses).")
    event_types: EventPatterns = Field(examples=[["leadstream.lead.*", "leadstream.campaign.launched.v1"]])
    description: Description = ""


class SubscriptionPatch(BaseModel):
    """Fields to change; the ones left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    event_types: EventPatterns | None = None
    description: Description | None = None


class DisableIn(BaseModel):
    """Why the subscription is disabled (shown in ``disabled_detail``)."""

    model_config = ConfigDict(extra="forbid")

    reason: Description = ""


class RedeliverSinceIn(BaseModel):
    """Queue again every delivery of the subscription created at or after ``since``."""

    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime


class SubscriptionOut(BaseModel):
    """A subscription. ``state`` is ``disabled`` when an operator disabled it or it kept failing
    (``disabled_reason`` ``operator`` or ``failing``, ``disabled_detail`` says more); a disabled subscription
    keeps queueing events and delivers them in order once enabled again."""

    subscription_id: UUID
    url: str
    description: str
    event_types: list[str]
    state: State
    disabled_reason: DisabledReason | None
    disabled_detail: str | None
    disabled_at: datetime | None
    consecutive_failures: int
    failing_since: datetime | None
    last_success_at: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the previous secret signs too (after a rotation)."
    )
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionOut):
    """A new subscription with its signing secret, which is shown only here."""

    secret: str = Field(description="Standard Webhooks secret (whsec_...): verify webhook-signature with it.")


class SecretRotated(BaseModel):
    """The new signing secret (shown only here); the previous one signs too until ``previous_secret_expires_at``."""

    secret: str
    previous_secret_expires_at: datetime


class SubscriptionList(BaseModel):
    """A page of subscriptions, oldest first."""

    items: list[SubscriptionOut]
    next: str | None


class AttemptOut(BaseModel):
    """One attempt: when, how long, what the endpoint answered (or the error before any answer)."""

    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None


class DeliveryOut(BaseModel):
    """One event for the subscription: ``pending`` (``next_attempt_at`` says when; ``held`` while the subscription
    is disabled), ``delivered`` (at ``delivered_at``), ``failed`` (attempts spent) or ``cancelled`` (at
    ``cancelled_at``, ``cancel_reason`` says why: the subscription's ``event_types`` stopped selecting its type
    before it was delivered). The ``webhook-id`` header is ``event_id``. A redelivered delivery is pending again
    with the last status code, error, duration, ``delivered_at`` and cancellation cleared; ``attempts`` and the
    attempt log keep every attempt ever made."""

    delivery_id: UUID
    event_id: UUID
    event_type: str
    event_time: datetime
    status: Status
    held: bool
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_duration_ms: int | None
    created_at: datetime
    delivered_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None = Field(max_length=500)


class DeliveryDetail(DeliveryOut):
    """A delivery with its last attempts (up to 100)."""

    attempt_log: list[AttemptOut]


class DeliveryList(BaseModel):
    """A page of the delivery log, newest first."""

    items: list[DeliveryOut]
    next: str | None


class Redelivered(BaseModel):
    """How many deliveries were queued again."""

    redelivered: int


def _subscription(row: Row[Any]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in SubscriptionOut.model_fields}


def _delivery(row: Row[Any], subscription_state: str) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in DeliveryOut.model_fields if name != "held"}
    values["held"] = row.status == Status.PENDING and subscription_state == State.DISABLED
    return values


def build_router(service: Service, commands: SubscriptionCommands) -> APIRouter:
    """The webhooks routes."""
    router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
    engine = service.engine

    async def owned(ws: str, subscription_id: UUID) -> Row[Any]:
        async with engine.connect() as conn:
            row = await store.get_subscription(conn, ws, subscription_id)
        if row is None:
            raise not_found(subscription_id)
        return row

    @router.get(
        "/event-types",
        response_model=list[str],
        openapi_extra={
            **public("none: the published contract's event types"),
            **bounded("the contract's event types"),
        },
    )
    async def event_types() -> list[str]:
        """Every event type a subscription can select (``*`` and ``<prefix>.*`` select several)."""
        return sorted(EVENT_TYPES)

    @router.post("/subscriptions", status_code=201, response_model=SubscriptionCreated)
    async def create(body: SubscriptionIn, ws: AdminWorkspace) -> SubscriptionCreated:
        """Subscribe a URL; the answer holds the signing secret, which is not shown again."""
        row, secret = await commands.create(
            ws, url=body.url, event_types=body.event_types, description=body.description
        )
        return SubscriptionCreated(**_subscription(row), secret=secret)

    @router.get("/subscriptions", response_model=SubscriptionList)
    async def list_subscriptions(ws: ReadWorkspace, after: Cursor = None, limit: PageSize = 50) -> SubscriptionList:
        """The workspace's subscriptions."""
        async with engine.connect() as conn:
            rows = await store.list_subscriptions(conn, ws, int(after) if after else None, limit + 1)
        page = rows[:limit]
        return SubscriptionList(
            items=[SubscriptionOut(**_subscription(r)) for r in page],
            next=str(page[-1].seq) if len(rows) > limit else None,
        )

    @router.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
    async def get(subscription_id: UUID, ws: ReadWorkspace) -> SubscriptionOut:
        """One subscription (its state, why it is disabled, its run of failures)."""
        return SubscriptionOut(**_subscription(await owned(ws, subscription_id)))

    @router.patch("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
    async def update(subscription_id: UUID, body: SubscriptionPatch, ws: AdminWorkspace) -> SubscriptionOut:
        """Change the URL, the event types or the description; queued deliveries of the event types it no longer
        selects are cancelled."""
        row = await commands.update(
            ws, subscription_id, url=body.url, event_types=body.event_types, description=body.description
        )
        return SubscriptionOut(**_subscription(row))

    @router.delete("/subscriptions/{subscription_id}", status_code=204)
    async def remove(subscription_id: UUID, ws: AdminWorkspace) -> Response:
        """Delete the subscription, its queue and its delivery log."""
        await commands.delete(ws, subscription_id)
        return Response(status_code=204)

    @router.post("/subscriptions/{subscription_id}/enable", response_model=SubscriptionOut)
    async def enable(subscription_id: UUID, ws: WriteWorkspace) -> SubscriptionOut:
        """Deliver again: queued deliveries go out now, in order."""
        return SubscriptionOut(**_subscription(await commands.enable(ws, subscription_id)))

    @router.post("/subscriptions/{subscription_id}/disable", response_model=SubscriptionOut)
    async def disable(subscription_id: UUID, ws: WriteWorkspace, body: DisableIn | None = None) -> SubscriptionOut:
        """Stop delivering; events keep being queued until the subscription is enabled or deleted."""
        row = await commands.disable(ws, subscription_id, body.reason if body else "")
        return SubscriptionOut(**_subscription(row))

    @router.post("/subscriptions/{subscription_id}/rotate-secret", response_model=SecretRotated)
    async def rotate_secret(subscription_id: UUID, ws: AdminWorkspace) -> SecretRotated:
        """A new signing secret; both sign during the rotation window so receivers can switch without a gap."""
        row, secret = await commands.rotate_secret(ws, subscription_id)
        return SecretRotated(secret=secret, previous_secret_expires_at=row.previous_secret_expires_at)

    @router.get("/subscriptions/{subscription_id}/deliveries", response_model=DeliveryList)
    async def deliveries(
        subscription_id: UUID,
        ws: ReadWorkspace,
        status: Status | None = None,
        after: Cursor = None,
        limit: PageSize = 50,
    ) -> DeliveryList:
        """The delivery log: each event's status, attempts, last answer or error, and next attempt."""
        sub = await owned(ws, subscription_id)
        async with engine.connect() as conn:
            rows = await store.list_deliveries(conn, subscription_id, status, int(after) if after else None, limit + 1)
        page = rows[:limit]
        return DeliveryList(
            items=[DeliveryOut(**_delivery(r, sub.state)) for r in page],
            next=str(page[-1].seq) if len(rows) > limit else None,
        )

    @router.get("/subscriptions/{subscription_id}/deliveries/{delivery_id}", response_model=DeliveryDetail)
    async def delivery(subscription_id: UUID, delivery_id: UUID, ws: ReadWorkspace) -> DeliveryDetail:
        """One delivery with its attempts."""
        sub = await owned(ws, subscription_id)
        async with engine.connect() as conn:
            row = await store.get_delivery(conn, ws, subscription_id, delivery_id)
            if row is None:
                raise Problem(404, "delivery_not_found", f"no delivery {delivery_id} of subscription {subscription_id}")
            log = await store.attempts_of(conn, delivery_id, MAX_ATTEMPTS_SHOWN)
        return DeliveryDetail(
            **_delivery(row, sub.state),
            attempt_log=[AttemptOut(**{n: getattr(a, n) for n in AttemptOut.model_fields}) for a in log],
        )

    @router.post(
        "/subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver",
        status_code=202,
        response_model=DeliveryOut,
    )
    async def redeliver(subscription_id: UUID, delivery_id: UUID, ws: WriteWorkspace) -> DeliveryOut:
        """Send this delivery again (same webhook-id), with a fresh set of attempts; 409 when the subscription no
        longer selects its event type."""
        sub = await owned(ws, subscription_id)
        row = await commands.redeliver(ws, subscription_id, delivery_id)
        return DeliveryOut(**_delivery(row, sub.state))

    @router.post("/subscriptions/{subscription_id}/redeliver", status_code=202, response_model=Redelivered)
    async def redeliver_since(subscription_id: UUID, body: RedeliverSinceIn, ws: WriteWorkspace) -> Redelivered:
        """Send again every delivery created since a time whose type the subscription still selects, in their
        original order per key."""
        return Redelivered(redelivered=await commands.redeliver_since(ws, subscription_id, body.since))

    return router
