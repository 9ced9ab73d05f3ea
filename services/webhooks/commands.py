"""Write commands on subscriptions and deliveries: check -> decide -> store, one transaction each.

Routes call these; every one is scoped to the caller's workspace, and another workspace's subscription or
delivery is "not found" (404), never "forbidden".
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from fastapi.exceptions import RequestValidationError
from sqlalchemy import delete
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.runtime.clock import Clock
from services.runtime.errors import Problem

from . import domain, store
from .domain import DisabledReason, State, Status
from .metrics import DELIVERIES, ENDPOINTS_DISABLED
from .sender import TargetGuard


def invalid(field: str, message: str) -> RequestValidationError:
    """A 422 naming a body field, in the same form as the request model's own errors."""
    return RequestValidationError([{"loc": ("body", field), "type": "value_error", "msg": message}])


def not_found(subscription_id: UUID) -> Problem:
    """The 404 of a subscription that is not the caller's (or does not exist)."""
    return Problem(404, "subscription_not_found", f"no webhook subscription {subscription_id} in this workspace")


class SubscriptionCommands:
    """The write side of the API."""

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        guard: TargetGuard,
        *,
        max_subscriptions: int,
        rotation_window: timedelta,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.guard = guard
        self.max_subscriptions = max_subscriptions
        self.rotation_window = rotation_window
        self.wake = wake

    async def _check_url(self, url: str) -> None:
        try:
            await self.guard.check(url)
        except ValueError as exc:
            raise invalid("url", str(exc)) from None

    async def _owned(
        self, conn: AsyncConnection, workspace_id: str, subscription_id: UUID, *, lock: bool = False
    ) -> Row[Any]:
        """The caller's subscription (locked with ``lock``), or a 404.

        Lock order (:mod:`.store`): a delivery worker holds a delivery's row and then updates its subscription, so a
        command that changes deliveries locks them first, in ``delivery_id`` order, and the subscription after.
        """
        row = await store.get_subscription(conn, workspace_id, subscription_id, for_update=lock)
        if row is None:
            raise not_found(subscription_id)
        return row

    async def create(
        self, workspace_id: str, *, url: str, event_types: Sequence[str], description: str
    ) -> tuple[Row[Any], str]:
        """A new active subscription and its secret (returned here only)."""
        await self._check_url(url)
        secret = domain.new_secret()
        now = self.clock.now()
        async with self.engine.begin() as conn:
            await store.lock_workspace(conn, workspace_id)
            if await store.count_subscriptions(conn, workspace_id) >= self.max_subscriptions:
                raise Problem(
                    409,
                    "too_many_subscriptions",
                    f"a workspace can have {self.max_subscriptions} webhook subscriptions; delete one first",
                )
            row = (
                await conn.execute(
                    store.subscriptions.insert()
                    .values(
                        subscription_id=uuid.uuid4(),
                        workspace_id=workspace_id,
                        url=url,
                        description=description,
                        event_types=list(event_types),
                        secret=secret,
                        state=State.ACTIVE.value,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(store.subscriptions)
                )
            ).one()
            await store.announce_change(conn, workspace_id)
        return row, secret

    async def update(
        self,
        workspace_id: str,
        subscription_id: UUID,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        description: str | None = None,
    ) -> Row[Any]:
        """Change the URL (checked again), the filters or the description.

        New filters cancel, in this transaction, the pending deliveries of the types they no longer select: the
        subscriber said it no longer wants them. Cancelling here rather than skipping them at send time cannot
        race with a worker: the worker holds its claimed delivery's row lock until the attempt is recorded, so
        :func:`store.cancel` waits for it and then cancels it only if it is still pending (a delivery just
        delivered stays delivered), and once this commits no worker can claim a cancelled delivery. A check at
        send time would read the filters when the delivery is claimed and send what a change committed during
        the attempt dropped, and until a worker reached them the API would show the dropped deliveries as pending
        (holding back later events of their keys, for hours when backed off). The workspace's lock (exclusive
        here, shared where deliveries are queued) keeps an event being queued under the old filters meanwhile.
        """
        if url is not None:
            await self._check_url(url)
        now = self.clock.now()
        values: dict[str, Any] = {"updated_at": now}
        if url is not None:
            values["url"] = url
        if event_types is not None:
            values["event_types"] = list(event_types)
        if description is not None:
            values["description"] = description
        cancelled = 0
        async with self.engine.begin() as conn:
            if event_types is not None:
                await store.lock_workspace(conn, workspace_id)
            await self._owned(conn, workspace_id, subscription_id)
            if event_types is not None:
                queued = await store.logged_types(conn, subscription_id, status=Status.PENDING)
                dropped = domain.unselected(event_types, queued)
                cancelled = await store.cancel(conn, subscription_id, dropped, now, domain.UNSUBSCRIBED)
                await store.announce_change(conn, workspace_id)
            await self._owned(conn, workspace_id, subscription_id, lock=True)  # after the deliveries (lock order)
            row = await store.set_subscription(conn, subscription_id, **values)
        if cancelled:
            DELIVERIES.labels(Status.CANCELLED.value).inc(cancelled)
        return row

    async def delete(self, workspace_id: str, subscription_id: UUID) -> None:
        """Delete the subscription with its queue and log.

        The workspace's lock, exclusive, waits for an event being queued (the handler holds it shared): what it
        queued for this subscription is then deleted with the rest, where it would otherwise have met a
        subscription deleted under it (a foreign-key error: the handler retried, or the delete failed)."""
        async with self.engine.begin() as conn:
            await store.lock_workspace(conn, workspace_id)
            await self._owned(conn, workspace_id, subscription_id)
            await store.drop_deliveries(conn, subscription_id)  # the deliveries first (store's lock order)
            s = store.subscriptions
            await conn.execute(delete(s).where(s.c.subscription_id == subscription_id))
            await store.announce_change(conn, workspace_id)

    async def enable(self, workspace_id: str, subscription_id: UUID) -> Row[Any]:
        """Active again, with a clean failure count; its queued deliveries are due now, in order.

        Its deliveries are locked in the order every write takes them (then the subscription's row), so an enable
        and a change of ``event_types`` at the same instant wait for each other where their rows meet; each used to
        lock them in the order its plan walked them, and Postgres could abort one of the two as a deadlock."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            await self._owned(conn, workspace_id, subscription_id)
            await store.resume(conn, subscription_id, now)  # the deliveries, then the subscription (lock order)
            row = await store.set_subscription(
                conn,
                subscription_id,
                state=State.ACTIVE.value,
                disabled_reason=None,
                disabled_detail=None,
                disabled_at=None,
                consecutive_failures=0,
                failing_since=None,
                updated_at=now,
            )
        self.wake()
        return row

    async def disable(self, workspace_id: str, subscription_id: UUID, detail: str) -> Row[Any]:
        """Stop delivering (events keep being queued, and go out in order once enabled again)."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            current = await self._owned(conn, workspace_id, subscription_id, lock=True)
            if current.state == State.DISABLED:
                return current
            row = await store.set_subscription(
                conn,
                subscription_id,
                state=State.DISABLED.value,
                disabled_reason=DisabledReason.OPERATOR.value,
                disabled_detail=detail or "disabled through the API",
                disabled_at=now,
                updated_at=now,
            )
        ENDPOINTS_DISABLED.labels(DisabledReason.OPERATOR.value).inc()
        return row

    async def rotate_secret(self, workspace_id: str, subscription_id: UUID) -> tuple[Row[Any], str]:
        """A new secret; the current one keeps signing (next to the new one) for the rotation window."""
        now = self.clock.now()
        secret = domain.new_secret()
        async with self.engine.begin() as conn:
            current = await self._owned(conn, workspace_id, subscription_id, lock=True)
            row = await store.set_subscription(
                conn,
                subscription_id,
                secret=secret,
                previous_secret=current.secret,
                previous_secret_expires_at=now + self.rotation_window,
                updated_at=now,
            )
        return row, secret

    async def redeliver(self, workspace_id: str, subscription_id: UUID, delivery_id: UUID) -> Row[Any]:
        """Queue one delivery again (whatever its status), due now; a 409 when the subscription's filters no
        longer select its type (it would send what the subscriber said it no longer wants)."""
        async with self.engine.begin() as conn:
            await store.lock_workspace(conn, workspace_id, shared=True)  # the filters read stay the filters
            subscription = await self._owned(conn, workspace_id, subscription_id)
            row = await store.get_delivery(conn, workspace_id, subscription_id, delivery_id)
            if row is None:
                raise Problem(404, "delivery_not_found", f"no delivery {delivery_id} of subscription {subscription_id}")
            if not domain.matches(subscription.event_types, row.event_type):
                raise Problem(
                    409,
                    "event_type_not_selected",
                    f"the subscription's event_types no longer select {row.event_type}; add it to redeliver this",
                )
            await store.requeue(
                conn, subscription_id, self.clock.now(), event_types=[row.event_type], delivery_id=delivery_id
            )
            row = await store.get_delivery(conn, workspace_id, subscription_id, delivery_id)
        assert row is not None
        self.wake()
        return row

    async def redeliver_since(self, workspace_id: str, subscription_id: UUID, since: datetime) -> int:
        """Queue again every delivery created at or after ``since`` whose type the subscription still selects;
        returns how many."""
        async with self.engine.begin() as conn:
            await store.lock_workspace(conn, workspace_id, shared=True)  # the filters read stay the filters
            subscription = await self._owned(conn, workspace_id, subscription_id)
            logged = await store.logged_types(conn, subscription_id, since=since)
            selected = [t for t in logged if domain.matches(subscription.event_types, t)]
            n = await store.requeue(conn, subscription_id, self.clock.now(), event_types=selected, since=since)
        self.wake()
        return n
