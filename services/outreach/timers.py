"""Durable timers in Postgres: scheduling, what is claimable, waking and cancelling.

A timer row is unique by ``key`` (a step runs at most once per lead and campaign), so scheduling is
idempotent. The runtime's claim loop locks one claimable row at a time (``FOR UPDATE SKIP LOCKED``);
rows whose campaign is not running, whose account worker is paused or whose account is limit-paused
are not claimable, so pausing needs no timer updates. A step whose send is under way waits
(``waiting_for="send"``) until its answer is settled.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Select, and_, bindparam, case, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.telemetry import current_traceparent

from .store import accounts, campaign_workers, campaigns, timers

LIVE = ("pending", "waiting")
EDITED = "campaign edited"
"""Outcome of a step timer cancelled because its lead moved to a new version of the campaign's sequence."""
LEAD_KINDS = ("step", "accept_wait")
# Kinds that run whatever the state of a campaign or account: provider facts, scheduled starts, sender checks.
FREE_KINDS = ("inbound", "campaign_start", "sender_check")
FAR_FUTURE = timedelta(days=3650)


def step_key(campaign_id: UUID, lead_id: UUID, step_id: str) -> str:
    """The unique key of a lead's step timer."""
    return f"step:{campaign_id}:{lead_id}:{step_id}"


def accept_key(campaign_id: UUID, lead_id: UUID, step_id: str) -> str:
    """The unique key of an invite's acceptance deadline."""
    return f"accept:{campaign_id}:{lead_id}:{step_id}"


async def schedule(
    conn: AsyncConnection,
    *,
    key: str,
    workspace_id: str,
    kind: str,
    due_at: datetime,
    now: datetime,
    campaign_id: UUID | None = None,
    lead_id: UUID | None = None,
    account_id: UUID | None = None,
    step_id: str | None = None,
    state: str = "pending",
    waiting_for: str | None = None,
    payload: dict[str, Any] | None = None,
) -> bool:
    """Insert a timer unless one with ``key`` exists; True when inserted. A step timer an edit of the campaign
    cancelled before it ran (:data:`EDITED`: the lead moved to the new version) is scheduled again."""
    values = {
        "key": key,
        "workspace_id": workspace_id,
        "kind": kind,
        "due_at": due_at,
        "campaign_id": campaign_id,
        "lead_id": lead_id,
        "account_id": account_id,
        "step_id": step_id,
        "state": state,
        "waiting_for": waiting_for,
        "payload": payload or {},
        "traceparent": current_traceparent(),
        "updated_at": now,
    }
    stmt = insert(timers).values(**values)
    again = {
        k: stmt.excluded[k]
        for k in ("due_at", "account_id", "state", "waiting_for", "payload", "traceparent", "updated_at")
    }
    result = await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={**again, "outcome": None, "attempts": 0},
            where=(timers.c.state == "cancelled") & (timers.c.outcome == EDITED),
        )
    )
    return bool(result.rowcount)


def _runnable() -> Any:
    w, c = campaign_workers, campaigns
    return and_(
        timers.c.state.in_(LIVE),
        or_(
            timers.c.kind.in_(FREE_KINDS),
            and_(c.c.state == "running", or_(w.c.state.is_(None), w.c.state == "active")),
        ),
    )


def _claimable(now: datetime) -> Any:
    a = accounts
    return and_(
        _runnable(),
        timers.c.due_at <= now,
        or_(
            timers.c.kind.in_(FREE_KINDS),
            a.c.limit_paused_until.is_(None),
            a.c.limit_paused_until <= now,
        ),
    )


def _joined() -> Any:
    w, a, c = campaign_workers, accounts, campaigns
    return (
        timers.outerjoin(c, c.c.campaign_id == timers.c.campaign_id)
        .outerjoin(w, and_(w.c.campaign_id == timers.c.campaign_id, w.c.account_id == timers.c.account_id))
        .outerjoin(a, a.c.account_id == timers.c.account_id)
    )


def claimable(now: datetime) -> Select[Any]:
    """The claimable timers, most overdue first (the runtime's claim loop locks them one at a time)."""
    return select(timers).select_from(_joined()).where(_claimable(now)).order_by(timers.c.due_at, timers.c.id)


async def next_due_at(conn: AsyncConnection) -> datetime | None:
    """When the next timer of a running campaign becomes claimable (None when there is none)."""
    due = func.greatest(timers.c.due_at, func.coalesce(accounts.c.limit_paused_until, timers.c.due_at))
    return await conn.scalar(select(func.min(due)).select_from(_joined()).where(_runnable()))


async def finish(conn: AsyncConnection, timer_id: int, now: datetime, outcome: str, state: str = "done") -> None:
    """Mark a claimed timer done (or cancelled) with what happened."""
    await conn.execute(
        update(timers)
        .where(timers.c.id == timer_id)
        .values(state=state, outcome=outcome, waiting_for=None, updated_at=now)
    )


async def postpone(
    conn: AsyncConnection,
    timer_id: int,
    due_at: datetime,
    now: datetime,
    *,
    attempts: int | None = None,
    waiting_for: str | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Move a claimed timer to ``due_at`` (state waiting when it waits for something, else pending)."""
    values: dict[str, Any] = {
        "due_at": due_at,
        "updated_at": now,
        "waiting_for": waiting_for,
        "state": "waiting" if waiting_for else "pending",
    }
    if attempts is not None:
        values["attempts"] = attempts
    if payload is not None:
        values["payload"] = payload
    await conn.execute(update(timers).where(timers.c.id == timer_id).values(**values))


async def wake(
    conn: AsyncConnection,
    *,
    campaign_id: UUID,
    lead_id: UUID,
    waiting_for: str,
    now: datetime,
    step_id: str | None = None,
) -> int:
    """Make timers waiting for ``waiting_for`` due now. Pending timers of the same lead are locked too, so a
    step being decided right now cannot miss the wake-up (it re-reads after this commits)."""
    conds = [
        timers.c.campaign_id == campaign_id,
        timers.c.lead_id == lead_id,
        timers.c.state.in_(LIVE),
        timers.c.kind == "step",
    ]
    if step_id is not None:
        conds.append(timers.c.step_id == step_id)
    woken = (timers.c.state == "waiting") & (timers.c.waiting_for == waiting_for)
    # A step's own input (its text) is part of its run's story even when it arrived before the step waited.
    linked = true() if step_id is not None else woken
    result = await conn.execute(
        update(timers)
        .where(*conds)
        .values(
            state=case((woken, "pending"), else_=timers.c.state),
            waiting_for=case((woken, None), else_=timers.c.waiting_for),
            due_at=case((woken, now), else_=timers.c.due_at),
            # Its run continues the trace of what it waited for (e.g. the handler of the text for its step).
            traceparent=case((linked, current_traceparent()), else_=timers.c.traceparent),
            updated_at=now,
        )
        .returning(timers.c.id, timers.c.state)
    )
    return sum(1 for r in result if r.state == "pending")


async def cancel_lead(
    conn: AsyncConnection,
    workspace_id: str,
    lead_id: UUID,
    now: datetime,
    outcome: str,
    campaign_id: UUID | None = None,
) -> list[UUID]:
    """Cancel every live step and acceptance timer of a lead (of one campaign, or all); returns their campaigns."""
    params: dict[str, Any] = {"ws": workspace_id, "lead": lead_id, "outcome_": outcome, "now": now}
    stmt = _CANCEL_LEAD
    if campaign_id is not None:
        stmt, params["campaign"] = _CANCEL_LEAD_IN_CAMPAIGN, campaign_id
    result = await conn.execute(stmt, params)
    return sorted({r.campaign_id for r in result if r.campaign_id is not None}, key=str)


# Built once: every reply (read back too) cancels its lead's timers, and building a statement per call cost about
# two thirds of what executing it does in client CPU (bench/results/NOTES.md, 2026-12-06).
_CANCEL_LEAD = (
    update(timers)
    .where(
        timers.c.workspace_id == bindparam("ws"),
        timers.c.lead_id == bindparam("lead"),
        timers.c.kind.in_(LEAD_KINDS),
        timers.c.state.in_(LIVE),
    )
    .values(state="cancelled", outcome=bindparam("outcome_"), updated_at=bindparam("now"))
    .returning(timers.c.campaign_id)
)
_CANCEL_LEAD_IN_CAMPAIGN = _CANCEL_LEAD.where(timers.c.campaign_id == bindparam("campaign"))


async def live_for_lead(conn: AsyncConnection, campaign_id: UUID, lead_id: UUID) -> int:
    """How many step or acceptance timers of the lead in the campaign are still live."""
    return int(
        await conn.scalar(
            select(func.count())
            .select_from(timers)
            .where(
                timers.c.campaign_id == campaign_id,
                timers.c.lead_id == lead_id,
                timers.c.kind.in_(LEAD_KINDS),
                timers.c.state.in_(LIVE),
            )
        )
        or 0
    )
