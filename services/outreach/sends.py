"""Send intents: every provider send happens at most once.

A step that reaches its send commits, in the transaction that claimed its timer and ran the pacing,
quota and compliance checks, a **send intent**: its ``sends`` row in state ``pending``, keyed by the
step's deterministic request id (the provider's idempotency key), holding the action event to emit once
sent. The intent counts against the day's quota at once. The provider is called after that commit,
outside any transaction, and the answer is **settled** in a second transaction with the events:

============  ==================================================================  =====================
state         meaning                                                             counts against quota
============  ==================================================================  =====================
pending       committed, the provider's answer not recorded yet                    yes
sent          the provider performed it (the action event is emitted)             yes
rate_limited  the provider said not now (the step waits as told)                  no
failed        the provider said no, or a lookup says it never arrived             no
unknown       nobody can say whether it was performed: never resent               yes
============  ==================================================================  =====================

A ``pending`` intent whose answer was lost (a crash, a SIGTERM, a database error after the call, a
timeout) is **reconciled** once it is older than ``send_reconcile_after_s`` (wall clock, longer than any
call can take): the provider is asked by the idempotency key (``lookup``). Performed -> settled as
sent; never arrived -> failed, and the step tries again with the same key; the provider cannot say
(SMTP) or cannot be asked after ``send_reconcile_max_attempts`` -> ``unknown``, shown as
``ActionFailed(reason="outcome_unknown")``, and the lead's sequence ends. Nothing is resent blindly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from leadstream_schemas import Event, event_class
from sqlalchemy import Select, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.providers import ProviderError, RateLimited
from services.runtime.telemetry import current_traceparent

from .adapters import LimitReached, SendResult
from .store import sends

PENDING, SENT, FAILED, RATE_LIMITED, UNKNOWN = "pending", "sent", "failed", "rate_limited", "unknown"
OUTCOME_UNKNOWN = "outcome_unknown"
"""The ActionFailed reason of a send whose outcome cannot be known."""


# -- what a provider call answered (pure) ----------------------------------------------------------


@dataclass(frozen=True)
class Performed:
    """The provider performed the send (its answer, or a lookup, says so)."""

    result: SendResult


@dataclass(frozen=True)
class Refused:
    """The provider answered that it did not perform it (a rate limit, a refusal, a 4xx)."""

    error: ProviderError


@dataclass(frozen=True)
class Unanswered:
    """The call may or may not have been performed (a lost answer, an unexpected error): reconcile later."""

    detail: str
    reason: str


@dataclass(frozen=True)
class NeverArrived:
    """A lookup says the provider never performed it: the step may try again with the same key."""

    detail: str
    reason: str


@dataclass(frozen=True)
class Unknowable:
    """Nobody can say whether it was performed: recorded as unknown, never resent."""

    detail: str


Answer = Performed | Refused | Unanswered | NeverArrived | Unknowable


def maybe_performed(exc: BaseException) -> bool:
    """Whether a failed send may have been performed all the same (then only the provider can tell)."""
    if not isinstance(exc, ProviderError):
        return True  # an unexpected error: the request may have gone out before it
    if exc.maybe_performed is not None:
        return exc.maybe_performed
    if isinstance(exc, RateLimited | LimitReached):
        return False
    if exc.status is not None:
        return exc.status >= 500 or exc.status < 400  # a 5xx may hide a performed request; a 4xx refused it
    return exc.transient  # a timeout or a lost connection may have lost the answer; a refusal sent nothing


def answer_of(exc: Exception) -> Answer:
    """What a send that raised ``exc`` tells about its outcome."""
    detail = f"{type(exc).__name__}: {exc}"[:500]
    if maybe_performed(exc):
        return Unanswered(detail, "provider_error" if isinstance(exc, ProviderError) else "internal_error")
    assert isinstance(exc, ProviderError)
    return Refused(exc)


# -- the intent rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntentKey:
    """Which step's send: the primary key of its ``sends`` row, and its workspace."""

    campaign_id: UUID
    lead_id: UUID
    step_id: str
    workspace_id: str

    @classmethod
    def of(cls, row: Row[Any]) -> IntentKey:
        """The key of a ``sends`` row."""
        return cls(row.campaign_id, row.lead_id, row.step_id, row.workspace_id)

    @property
    def event_key(self) -> str:
        """The key of the step's action events (as the step executor emits them)."""
        return f"{self.campaign_id}:{self.lead_id}:{self.step_id}"


def _where(key: IntentKey) -> Any:
    c = sends.c
    return (c.campaign_id == key.campaign_id) & (c.lead_id == key.lead_id) & (c.step_id == key.step_id)


async def lock(conn: AsyncConnection, key: IntentKey) -> Row[Any] | None:
    """The step's send row, locked until the transaction ends (None when the step never reached its send)."""
    return (await conn.execute(select(sends).where(_where(key)).with_for_update())).first()


async def open_intent(
    conn: AsyncConnection,
    key: IntentKey,
    *,
    request_id: str,
    account_id: UUID,
    action: str,
    event: Event,
    sender: str | None,
    now: datetime,
    reconcile_at: datetime,
) -> None:
    """Commit-to-be the intent to send (state pending); a step trying again after a refusal reuses its row."""
    values: dict[str, Any] = {
        "account_id": account_id,
        "action": action,
        "sender": sender,
        "sent_at": now,
        "state": PENDING,
        "event": {"type": event.event_type, "data": event.model_dump(mode="json")},
        "reason": None,
        "detail": None,
        "reconcile_at": reconcile_at,
        "reconcile_attempts": 0,
        "traceparent": current_traceparent(),
    }
    stmt = _insert(key, request_id, dry_run=False, values=values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["campaign_id", "lead_id", "step_id"], set_=values))


async def record_dry_run(
    conn: AsyncConnection, key: IntentKey, *, request_id: str, account_id: UUID, sender: str | None, now: datetime
) -> None:
    """A dry-run email: recorded as sent (it paces like the real thing) without calling any provider."""
    values = {"account_id": account_id, "action": "email", "sender": sender, "sent_at": now, "state": SENT}
    await conn.execute(_insert(key, request_id, dry_run=True, values=values).on_conflict_do_nothing())


def _insert(key: IntentKey, request_id: str, *, dry_run: bool, values: dict[str, Any]) -> Any:
    return insert(sends).values(
        campaign_id=key.campaign_id,
        lead_id=key.lead_id,
        step_id=key.step_id,
        workspace_id=key.workspace_id,
        request_id=UUID(request_id),
        dry_run=dry_run,
        **values,
    )


async def mark(conn: AsyncConnection, key: IntentKey, state: str, **values: Any) -> None:
    """Move a locked intent to ``state`` (a settled one leaves the reconciler's queue)."""
    await conn.execute(update(sends).where(_where(key)).values(state=state, **values))


def sent_event(intent: Row[Any], provider_ref: str | None) -> Event:
    """The action event the intent holds, with the provider's message id when it is an email."""
    cls = event_class(intent.event["type"])
    assert cls is not None, intent.event["type"]
    data = dict(intent.event["data"])
    if "provider_message_id" in cls.model_fields:
        data["provider_message_id"] = provider_ref or data.get("provider_message_id")
    return cls.model_validate(data)


def reconcilable(now: datetime) -> Select[Any]:
    """Pending intents old enough to ask the provider about (``now`` on the wall clock), oldest first."""
    return (
        select(sends)
        .where(sends.c.state == PENDING, sends.c.reconcile_at <= now)
        .order_by(sends.c.reconcile_at, sends.c.request_id)
    )


async def lease(conn: AsyncConnection, key: IntentKey, until: datetime) -> None:
    """Keep other replicas off an intent being reconciled until ``until`` (a lookup is under way)."""
    await conn.execute(update(sends).where(_where(key)).values(reconcile_at=until))


def reconcile_at(now: datetime, after_s: float) -> datetime:
    """When a pending intent committed at wall-clock ``now`` may be reconciled."""
    return now + timedelta(seconds=after_s)
