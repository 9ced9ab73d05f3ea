"""The event handler: every contract event is queued for each subscription of its workspace that selects it."""

from __future__ import annotations

from typing import Any

from leadstream_schemas import Envelope
from leadstream_schemas.structured import encode_structured

from services.runtime.consumer import HandlerContext

from . import domain, store
from .domain import Status
from .metrics import ENQUEUED


async def on_event(env: Envelope[Any], ctx: HandlerContext) -> None:
    """Queue ``env`` for the workspace's subscriptions whose filters select its type.

    A subscription receives the events that happened after it was created (by event time), so a consumer
    that replays the log from offset 0 does not send history to an endpoint that never asked for it.
    Runs in the consumer's transaction: the queued rows and the processed event id commit together.
    """
    subscriptions = await store.subscriptions_of(ctx.conn, env.workspace_id)
    chosen = [s for s in subscriptions if env.time >= s.created_at and domain.matches(s.event_types, env.type)]
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
    ENQUEUED.inc(await store.enqueue(ctx.conn, rows))
