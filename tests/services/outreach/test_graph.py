"""A workflow graph with a cycle and an invalid edge is accepted with warnings and runs only its valid part."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from leadstream_schemas import Hook, MessageGenerated
from sqlalchemy import func, select

from services.outreach.store import texts
from tests.services.outreach.support import MakeSettings, StartService, lead_events, of_type, start_outreach
from tests.support.kafka import wait_for

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


async def test_cyclic_graph_runs_its_valid_part(
    make_settings: MakeSettings, start_service: StartService, topic_prefix: str
) -> None:
    o = await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)
    account = await o.account()
    group = uuid.uuid4()
    graph = {
        "steps": [
            {"id": "like", "action": "like"},
            {"id": "comment", "action": "comment", "mode": "auto"},
            {"id": "orphan", "action": "message"},
        ],
        "edges": [
            {"from": "like", "to": "comment", "delay_minutes": 5},
            {"from": "comment", "to": "like", "delay_minutes": 5},
            {"from": "like", "to": "ghost", "delay_minutes": 5},
            {"from": "comment", "to": "comment", "delay_minutes": 5},
        ],
    }
    campaign = await o.api(
        "POST",
        "/v1/campaigns",
        201,
        json={
            "name": "Cyclic",
            "audience": {"type": "source_group", "ref": str(group)},
            "workflow": graph,
            "delivery": {"active_days": "every_day", "start_hour": 0, "end_hour": 24},
            "account_ids": [account],
        },
    )
    warnings = campaign["warnings"]
    assert any("comment -> like closes a cycle" in w for w in warnings)
    assert any("unknown step 'ghost'" in w for w in warnings)
    assert any("points to itself" in w for w in warnings)
    assert any("'orphan' is unreachable" in w for w in warnings)
    assert campaign["workflow"]["edges"] == [
        {"from": "like", "to": "comment", "condition": "always", "delay_minutes": 5}
    ]
    cid = campaign["campaign_id"]
    await o.api("POST", f"/v1/campaigns/{cid}/launch", 200)
    (lead,), events = lead_events(group, 1, tag=o.workspace)
    await o.produce(events)
    await o.wait_enrolled(cid, 1)
    hook = Hook(kind="recent_post", detail="pipeline post", reason="recent")
    await o.produce(
        [
            MessageGenerated(
                lead_id=lead,
                campaign_id=uuid.UUID(cid),
                draft_id=uuid.uuid4(),
                channel="comment",
                step_id="comment",
                text="Great point on pipeline!",
                hook=hook,
            )
        ]
    )

    async def draft() -> bool:
        async with o.service.engine.connect() as conn:
            return bool(
                await conn.scalar(select(func.count()).select_from(texts).where(texts.c.campaign_id == uuid.UUID(cid)))
            )

    await wait_for(draft, timeout_s=60, what="comment draft")
    await o.drive(MONDAY + timedelta(days=1))
    got = await o.events()
    acts = [
        (type(e.data).__name__, e.data.step_id)
        for e in got
        if type(e.data).__name__ in {"PostLiked", "CommentPosted", "MessageSent", "ActionSkipped"}
    ]
    assert acts == [("PostLiked", "like"), ("CommentPosted", "comment")]
    comment = of_type(got, "CommentPosted")[0]
    assert comment.data.text == "Great point on pipeline!"
    assert comment.time - of_type(got, "PostLiked")[0].time == timedelta(minutes=5)
    assert [e.data.steps_done for e in of_type(got, "LeadCompleted")] == [2]
