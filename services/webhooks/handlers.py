"""The event handler: every contract event is queued for each subscription of its workspace that selects it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from leadstream_schemas import LEAD, Envelope, LeadErased
from leadstream_schemas.personal import personal_paths, redact
from leadstream_schemas.structured import encode_structured
from sqlalchemy import select, update

from services.runtime.consumer import HandlerContext

from . import domain, store
from .domain import Status
from .metrics import ENQUEUED


def _nothing() -> None:
    pass


async def on_event(env: Envelope[Any], ctx: HandlerContext, wake: Callable[[], None] = _nothing) -> None:
    """Queue ``env`` for the workspace's subscriptions whose filters select its type; ``wake`` tells the delivery
    loops a delivery was queued, once committed (due now; they nap up to ``timer_idle_max_s`` otherwise).

    A subscription receives the events that happened after it was created (:func:`domain.selects`). Called only
    for events the :class:`~.interest.SubscriptionIndex` says a subscription may take; this read, in the
    consumer's transaction, decides. The queued rows and the processed event id commit together; the workspace's
    lock, shared, keeps a change of filters (which cancels what its old filters queued) from committing between
    this read and that commit.
    """
    await store.lock_workspace(ctx.conn, env.workspace_id, shared=True)
    subscriptions = await store.subscriptions_of(ctx.conn, env.workspace_id)
    chosen = [s for s in subscriptions if domain.selects(s.created_at, s.event_types, env.time, env.type)]
    if not chosen:
        return
    body = encode_structured(env)
    now = ctx.clock.now()
    key = domain.order_key(env.topic, env.subject)
    rows = [
        {
            "delivery_id": domain.delivery_id(s.subscription_id, env.id),
            "subscription_id": s.subscription_id,
            "workspace_id": env.workspace_id,
            "event_id": env.id,
            "event_type": env.type,
            "event_time": env.time,
            "order_key": key,
            "body": body,
            "status": Status.PENDING.value,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for s in chosen
    ]
    queued = await store.enqueue(ctx.conn, rows)
    ENQUEUED.inc(queued)
    if queued:
        ctx.after_commit(wake)


async def on_lead_erased(env: Envelope[LeadErased], ctx: HandlerContext, wake: Callable[[], None] = _nothing) -> None:
    """Queue ``LeadErased`` like any event (subscribers learn of the erasure), then blank the personal fields of
    every stored delivery about the lead (the bodies of its events, sent or not, and what the endpoints answered
    to them); idempotent. A delivery still pending goes out with ``[erased]`` in place of the data."""
    await on_event(env, ctx, wake)
    d, a = store.deliveries, store.attempts
    key = domain.order_key(LEAD.name, str(env.data.lead_id))
    # Locked in delivery_id order before any is changed, as every write of deliveries does (store's lock order):
    # these rows span subscriptions, and a command changing one of them takes them in that order too.
    rows = await ctx.conn.execute(
        select(d.c.delivery_id, d.c.event_type, d.c.body)
        .where(d.c.workspace_id == env.workspace_id, d.c.order_key == key, d.c.event_type != env.type)
        .order_by(d.c.delivery_id)
        .with_for_update(of=d)
    )
    for row in rows.all():
        paths = personal_paths(row.event_type)
        doc = json.loads(row.body)
        if paths and isinstance(doc.get("data"), dict):
            redact(doc["data"], paths)
            body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
            await ctx.conn.execute(update(d).where(d.c.delivery_id == row.delivery_id).values(body=body))
        await ctx.conn.execute(update(a).where(a.c.delivery_id == row.delivery_id).values(response_excerpt=None))
