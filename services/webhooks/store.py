"""Webhooks' own tables (schema ``webhooks``): subscriptions, deliveries (the queue and the log) and attempts.

A delivery is one event for one subscription. It is ``pending`` until a 2xx answer (``delivered``), until
its attempts are spent (``failed``) or until its subscription stops selecting its type (``cancelled``);
``seq`` is the order it was queued in, which is the order of the event log for one key, so "deliver in
order per key" is "never claim a delivery while an earlier pending one of the same subscription and key exists".

Lock order: every write takes the deliveries it changes first, in ``delivery_id`` order (:func:`lock_deliveries`),
and the subscription's row after them. A delivery worker holds the one delivery it claimed through the attempt and
then updates its subscription, so the commands follow the same order; two statements that locked their rows in
the order their plans walked them (one by the due index, one by the key index) could each hold a row the other
wanted, and Postgres aborted one as a deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Select,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    delete,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.db import service_metadata

from .domain import State, Status

SCHEMA = "webhooks"
metadata, runtime_tables = service_metadata(SCHEMA)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscription_id", PG_UUID(as_uuid=True), primary_key=True),
    Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
    Column("workspace_id", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("event_types", ARRAY(Text), nullable=False),
    Column("secret", Text, nullable=False),
    Column("previous_secret", Text, nullable=True),
    Column("previous_secret_expires_at", DateTime(timezone=True), nullable=True),
    Column("state", Text, nullable=False),
    Column("disabled_reason", Text, nullable=True),
    Column("disabled_detail", Text, nullable=True),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("failing_since", DateTime(timezone=True), nullable=True),
    Column("last_success_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("webhooks_subscriptions_workspace", subscriptions.c.workspace_id, subscriptions.c.seq)

deliveries = Table(
    "deliveries",
    metadata,
    Column("delivery_id", PG_UUID(as_uuid=True), primary_key=True),
    Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
    Column(
        "subscription_id",
        PG_UUID(as_uuid=True),
        ForeignKey(subscriptions.c.subscription_id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("workspace_id", Text, nullable=False),
    Column("event_id", PG_UUID(as_uuid=True), nullable=False),
    Column("event_type", Text, nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("order_key", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),  # every attempt ever made
    Column("retry", Integer, nullable=False, server_default="0"),  # attempts since it was (re)queued
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_duration_ms", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("cancelled_at", DateTime(timezone=True), nullable=True),
    Column("cancel_reason", Text, nullable=True),
)
Index(
    "webhooks_deliveries_due",
    deliveries.c.next_attempt_at,
    postgresql_where=deliveries.c.status == Status.PENDING.value,
)
Index(
    "webhooks_deliveries_key_order",
    deliveries.c.subscription_id,
    deliveries.c.order_key,
    deliveries.c.seq,
    postgresql_where=deliveries.c.status == Status.PENDING.value,
)
Index("webhooks_deliveries_log", deliveries.c.subscription_id, deliveries.c.seq)
Index("webhooks_deliveries_finished", deliveries.c.updated_at, postgresql_where=deliveries.c.status != "pending")

attempts = Table(
    "attempts",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column(
        "delivery_id",
        PG_UUID(as_uuid=True),
        ForeignKey(deliveries.c.delivery_id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("response_excerpt", Text, nullable=True),
)
Index("webhooks_attempts_delivery", attempts.c.delivery_id, attempts.c.id)

SERVICE_TABLES = (subscriptions, deliveries, attempts)


# -- subscriptions -----------------------------------------------------------------------------------


async def subscriptions_of(conn: AsyncConnection, workspace_id: str) -> list[Row[Any]]:
    """Every subscription of a workspace (active or disabled): what an event is matched against."""
    s = subscriptions
    stmt = select(s).where(s.c.workspace_id == workspace_id)
    return list((await conn.execute(stmt)).all())


async def get_subscription(
    conn: AsyncConnection, workspace_id: str, subscription_id: UUID, *, for_update: bool = False
) -> Row[Any] | None:
    """A workspace's subscription, or None (another workspace's is None too)."""
    s = subscriptions
    stmt = select(s).where(s.c.subscription_id == subscription_id, s.c.workspace_id == workspace_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).first()


async def count_subscriptions(conn: AsyncConnection, workspace_id: str) -> int:
    """How many subscriptions a workspace has."""
    s = subscriptions
    return int(await conn.scalar(select(func.count()).where(s.c.workspace_id == workspace_id)) or 0)


async def list_subscriptions(conn: AsyncConnection, workspace_id: str, after: int | None, limit: int) -> list[Row[Any]]:
    """A page of a workspace's subscriptions, oldest first, after the one with ``seq == after``."""
    s = subscriptions
    stmt = select(s).where(s.c.workspace_id == workspace_id)
    if after is not None:
        stmt = stmt.where(s.c.seq > after)
    return list((await conn.execute(stmt.order_by(s.c.seq).limit(limit))).all())


async def set_subscription(conn: AsyncConnection, subscription_id: UUID, **values: Any) -> Row[Any]:
    """Change a subscription's columns; returns the updated row."""
    s = subscriptions
    stmt = update(s).where(s.c.subscription_id == subscription_id).values(**values).returning(s)
    return (await conn.execute(stmt)).one()


# An endpoint's run (consecutive_failures, failing_since, last_success_at) changes only while it is active. Once
# disabled it stays as it was, and so agrees with the disabled_detail written from it: attempts of other keys
# claimed before the disable committed (other loops, other replicas) still finish and are logged in their
# deliveries, but no longer count. `enable` starts a clean run.


async def record_success(conn: AsyncConnection, subscription_id: UUID, now: datetime) -> None:
    """An attempt succeeded: an active endpoint's run of failures is over (a disabled one's run stays as it was)."""
    s = subscriptions
    await conn.execute(
        update(s)
        .where(s.c.subscription_id == subscription_id, s.c.state == State.ACTIVE.value)
        .values(consecutive_failures=0, failing_since=None, last_success_at=now)
    )


async def record_failure(conn: AsyncConnection, subscription_id: UUID, now: datetime) -> Row[Any] | None:
    """An attempt failed: count it against an active endpoint; returns its ``consecutive_failures`` and
    ``failing_since`` after counting, or None when the endpoint is disabled (or gone) and nothing was counted."""
    s = subscriptions
    stmt = (
        update(s)
        .where(s.c.subscription_id == subscription_id, s.c.state == State.ACTIVE.value)
        .values(
            consecutive_failures=s.c.consecutive_failures + 1,
            failing_since=func.coalesce(s.c.failing_since, now),
        )
        .returning(s.c.consecutive_failures, s.c.failing_since)
    )
    return (await conn.execute(stmt)).first()


async def disabled_counts(conn: AsyncConnection) -> dict[str, int]:
    """Disabled subscriptions by reason (for the gauge)."""
    s = subscriptions
    stmt = select(s.c.disabled_reason, func.count()).where(s.c.state == State.DISABLED).group_by(s.c.disabled_reason)
    return {str(reason): int(n) for reason, n in (await conn.execute(stmt)).all()}


# -- deliveries ----------------------------------------------------------------------------------------


async def lock_deliveries(conn: AsyncConnection, *where: Any, skip_locked: bool = False) -> list[UUID]:
    """Lock the deliveries matching ``where`` (``FOR UPDATE``) in ``delivery_id`` order; returns their ids.

    Every write of several deliveries locks them here first, then changes exactly these (:func:`_among`), then
    (where it does) its subscription's row: one order for every command, the worker (one delivery, then its
    subscription) and the erasure, so none waits for a row while holding one the other waits for. An update
    that locked its rows itself would take them in whatever order its plan walks them. Under READ COMMITTED a
    row another transaction changed while this waited is checked against ``where`` again (a delivery a worker
    just delivered is no longer pending). ``skip_locked``: leave out rows another transaction holds."""
    d = deliveries
    stmt = select(d.c.delivery_id).where(*where).order_by(d.c.delivery_id).with_for_update(skip_locked=skip_locked)
    return list((await conn.scalars(stmt)).all())


def _among(ids: Sequence[UUID]) -> ColumnElement[bool]:
    """The deliveries ``ids`` (as one array parameter: a queue may hold more rows than a statement has parameters)."""
    return deliveries.c.delivery_id == any_(bindparam("locked_ids", list(ids), type_=ARRAY(PG_UUID(as_uuid=True))))


async def drop_deliveries(conn: AsyncConnection, subscription_id: UUID) -> None:
    """Delete a subscription's deliveries (with their attempts), locked in the order of :func:`lock_deliveries`."""
    locked = await lock_deliveries(conn, deliveries.c.subscription_id == subscription_id)
    if locked:
        await conn.execute(delete(deliveries).where(_among(locked)))


async def enqueue(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    """Queue deliveries (ignoring ones already queued: same subscription and event); returns how many were new."""
    if not rows:
        return 0
    result = await conn.execute(insert(deliveries).values(rows).on_conflict_do_nothing(index_elements=["delivery_id"]))
    return int(result.rowcount or 0)


def deliverable(now: datetime) -> Any:
    """Pending, due, its subscription active, and not behind an earlier pending delivery of its key."""
    d = deliveries
    earlier = deliveries.alias("earlier")
    blocked = exists().where(
        earlier.c.subscription_id == d.c.subscription_id,
        earlier.c.order_key == d.c.order_key,
        earlier.c.status == Status.PENDING.value,
        earlier.c.seq < d.c.seq,
    )
    return and_(
        d.c.status == Status.PENDING.value,
        d.c.next_attempt_at <= now,
        subscriptions.c.state == State.ACTIVE.value,
        ~blocked,
    )


def due_deliveries(now: datetime) -> Select[Any]:
    """The deliverable deliveries with their endpoint, most overdue first: the durable timers' claim
    (which locks one with ``FOR UPDATE SKIP LOCKED``; a locked one still counts as pending for its key).

    The lock is held for the attempt, so a crash releases it and the delivery is simply tried again.
    """
    d, s = deliveries, subscriptions
    return (
        select(
            d,
            s.c.url,
            s.c.secret,
            s.c.previous_secret,
            s.c.previous_secret_expires_at,
        )
        .select_from(d.join(s, s.c.subscription_id == d.c.subscription_id))
        .where(deliverable(now))
        .order_by(d.c.next_attempt_at, d.c.seq)
    )


async def finish_attempt(
    conn: AsyncConnection,
    delivery: Row[Any],
    *,
    started_at: datetime,
    now: datetime,
    status: Status,
    retry: int,
    next_attempt_at: datetime | None,
    duration_ms: int,
    status_code: int | None,
    error: str | None,
    response_excerpt: str | None,
) -> None:
    """Log an attempt and move its delivery to its next state."""
    attempt = delivery.attempts + 1
    await conn.execute(
        insert(attempts).values(
            delivery_id=delivery.delivery_id,
            attempt=attempt,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=status_code,
            error=error,
            response_excerpt=response_excerpt,
        )
    )
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.delivery_id == delivery.delivery_id)
        .values(
            status=status.value,
            attempts=attempt,
            retry=retry,
            next_attempt_at=next_attempt_at,
            last_status_code=status_code,
            last_error=error,
            last_duration_ms=duration_ms,
            updated_at=now,
            delivered_at=now if status is Status.DELIVERED else deliveries.c.delivered_at,
        )
    )


async def get_delivery(
    conn: AsyncConnection, workspace_id: str, subscription_id: UUID, delivery_id: UUID
) -> Row[Any] | None:
    """A delivery of a workspace's subscription, or None."""
    d = deliveries
    stmt = select(d).where(
        d.c.delivery_id == delivery_id, d.c.subscription_id == subscription_id, d.c.workspace_id == workspace_id
    )
    return (await conn.execute(stmt)).first()


async def list_deliveries(
    conn: AsyncConnection, subscription_id: UUID, status: Status | None, before: int | None, limit: int
) -> list[Row[Any]]:
    """A page of a subscription's delivery log, newest first, before the one with ``seq == before``."""
    d = deliveries
    stmt = select(d).where(d.c.subscription_id == subscription_id)
    if status is not None:
        stmt = stmt.where(d.c.status == status.value)
    if before is not None:
        stmt = stmt.where(d.c.seq < before)
    return list((await conn.execute(stmt.order_by(d.c.seq.desc()).limit(limit))).all())


async def attempts_of(conn: AsyncConnection, delivery_id: UUID, limit: int) -> list[Row[Any]]:
    """The last ``limit`` attempts of a delivery, oldest first."""
    a = attempts
    stmt = select(a).where(a.c.delivery_id == delivery_id).order_by(a.c.id.desc()).limit(limit)
    return list(reversed((await conn.execute(stmt)).all()))


async def logged_types(
    conn: AsyncConnection, subscription_id: UUID, *, status: Status | None = None, since: datetime | None = None
) -> list[str]:
    """The event types among a subscription's deliveries (those with ``status``, or created at or after ``since``)."""
    d = deliveries
    stmt = select(d.c.event_type).where(d.c.subscription_id == subscription_id).distinct()
    if status is not None:
        stmt = stmt.where(d.c.status == status.value)
    if since is not None:
        stmt = stmt.where(d.c.created_at >= since)
    return list((await conn.scalars(stmt)).all())


async def requeue(
    conn: AsyncConnection,
    subscription_id: UUID,
    now: datetime,
    *,
    event_types: Sequence[str],
    delivery_id: UUID | None = None,
    since: datetime | None = None,
) -> int:
    """Queue deliveries of ``event_types`` again (one, or every one created at or after ``since``): pending, due
    now, with a fresh set of attempts. They keep their place (``seq``), so a redelivered history goes out in its
    original order, before newer pending events of the same key.

    What the previous attempts concluded is cleared (``delivered_at``, the last status code, error and duration,
    a cancellation): a delivery pending again must not read as delivered or failed. Their log (``attempts``, the
    count of every attempt ever made) is kept."""
    d = deliveries
    where = [d.c.subscription_id == subscription_id, d.c.event_type.in_(list(event_types))]
    if delivery_id is not None:
        where.append(d.c.delivery_id == delivery_id)
    if since is not None:
        where.append(d.c.created_at >= since)
    locked = await lock_deliveries(conn, *where)
    if not locked:
        return 0
    result = await conn.execute(
        update(d)
        .where(_among(locked))
        .values(
            status=Status.PENDING.value,
            retry=0,
            next_attempt_at=now,
            updated_at=now,
            delivered_at=None,
            last_status_code=None,
            last_error=None,
            last_duration_ms=None,
            cancelled_at=None,
            cancel_reason=None,
        )
    )
    return int(result.rowcount or 0)


async def cancel(
    conn: AsyncConnection, subscription_id: UUID, event_types: Sequence[str], now: datetime, reason: str
) -> int:
    """Cancel a subscription's pending deliveries of ``event_types``; returns how many.

    A delivery a worker is attempting is locked by its claim until the attempt is recorded: this waits for that,
    then sees the recorded status (READ COMMITTED re-checks the row), so a delivery just delivered stays
    delivered and one waiting for a retry is cancelled. Nothing the worker writes can overwrite the cancel."""
    if not event_types:
        return 0
    d = deliveries
    locked = await lock_deliveries(
        conn,
        d.c.subscription_id == subscription_id,
        d.c.status == Status.PENDING.value,
        d.c.event_type.in_(list(event_types)),
    )
    if not locked:
        return 0
    stmt = (
        update(d)
        .where(_among(locked))
        .values(
            status=Status.CANCELLED.value,
            next_attempt_at=None,
            cancelled_at=now,
            cancel_reason=reason,
            updated_at=now,
        )
    )
    result = await conn.execute(stmt)
    return int(result.rowcount or 0)


async def resume(conn: AsyncConnection, subscription_id: UUID, now: datetime) -> None:
    """A re-enabled endpoint: its queued deliveries are due now rather than at their backed-off times."""
    d = deliveries
    locked = await lock_deliveries(
        conn, d.c.subscription_id == subscription_id, d.c.status == Status.PENDING.value, d.c.next_attempt_at > now
    )
    if locked:
        await conn.execute(update(d).where(_among(locked)).values(next_attempt_at=now))


async def backlog(conn: AsyncConnection) -> int:
    """Pending deliveries (for the gauge)."""
    d = deliveries
    return int(await conn.scalar(select(func.count()).where(d.c.status == Status.PENDING.value)) or 0)


async def prune(conn: AsyncConnection, before: datetime) -> int:
    """Delete delivered, given-up and cancelled deliveries (with their attempts) last changed before ``before``."""
    d = deliveries
    # Never waits for a row (one a redelivery or an erasure holds goes in a later sweep), so never in a deadlock.
    free = await lock_deliveries(conn, d.c.status != Status.PENDING.value, d.c.updated_at < before, skip_locked=True)
    if not free:
        return 0
    result = await conn.execute(delete(d).where(_among(free)))
    return int(result.rowcount or 0)


async def lock_workspace(conn: AsyncConnection, workspace_id: str, *, shared: bool = False) -> None:
    """Hold a workspace's subscription lock until the transaction ends.

    Exclusive: creating a subscription (so the workspace's limit holds under concurrent requests) and changing
    one's ``event_types``. Shared: whatever queues deliveries from the filters it read (the event handler, a
    redelivery), so that a change of filters is wholly before or wholly after it: the change cancels what was
    queued under the old filters, and nothing is queued under them afterwards. Delivery workers never take it
    (they lock a delivery, then its subscription), so a holder may wait for a delivery a worker has claimed.
    """
    lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await conn.execute(text(f"SELECT {lock}(hashtext(:k))"), {"k": f"{SCHEMA}:ws:{workspace_id}"})


SUBSCRIPTIONS_CHANNEL = f"leadstream.{SCHEMA}.subscriptions"
"""The LISTEN/NOTIFY channel on which a change of a workspace's subscriptions is announced (payload: the
workspace id), to every replica's :class:`~.interest.SubscriptionIndex`."""


async def announce_change(conn: AsyncConnection, workspace_id: str) -> None:
    """Tell every replica, when this transaction commits, that the workspace's subscriptions changed."""
    await conn.execute(text("SELECT pg_notify(:c, :w)"), {"c": SUBSCRIPTIONS_CHANNEL, "w": workspace_id})


async def selectors_of(conn: AsyncConnection, workspace_id: str) -> list[tuple[datetime, list[str]]]:
    """What a workspace's subscriptions select events by: (created_at, event-type filters) of each."""
    s = subscriptions
    rows = await conn.execute(select(s.c.created_at, s.c.event_types).where(s.c.workspace_id == workspace_id))
    return [(r.created_at, list(r.event_types)) for r in rows]
