"""A campaign run through the product's own HTTP APIs, as load for fault tests: a saved search finds the
leads (discovery), they are enriched, written to (messaging), get a video (video), are invited and messaged
on a paced schedule (outreach's timers) and show up in the views (projection).

The workflow is short in campaign time (hours, on a clock 1800 times faster), so a campaign of a few
dozen leads keeps every service busy for a minute or so and then finishes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from services.runtime import auth
from services.runtime.db import create_engine
from services.runtime.plans import set_plan
from tests.support.fleet import Fleet

CLOCK_SCALE = 1800.0
"""Campaign time per real second: the demo's (half an hour of campaign time per second)."""

WORKFLOW: dict[str, Any] = {  # invite -> accepted + 1 h -> message -> 5 min -> follow-up
    "steps": [
        {"id": "invite", "action": "invite", "note": False, "accept_timeout_hours": 2},
        {"id": "message", "action": "message"},
        {"id": "follow_up", "action": "message"},
    ],
    "edges": [
        {"from": "invite", "to": "message", "condition": "accepted", "wait_hours": 1},
        {"from": "message", "to": "follow_up", "delay_minutes": 5},
    ],
}


@dataclass
class CampaignRun:
    """One launched campaign: whose it is and where it is."""

    workspace: str
    token: str
    campaign_id: str
    source_group_id: str
    leads: int

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def call(fleet: Fleet, token: str, method: str, service: str, path: str, **kwargs: Any) -> Any:
    """One API call; raises with the answer when it is not a success."""
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        r = await http.request(method, fleet.url(service) + path, **kwargs)
    if r.status_code >= 400:
        raise AssertionError(f"{method} {service}{path} -> {r.status_code}: {r.text}")
    return r.json() if r.content else None


def slower(hours: float) -> dict[str, Any]:
    """:data:`WORKFLOW` with ``hours`` more campaign time between the accepted invite and the message (a test
    that needs the campaign still running after a while: 1800x makes one hour two seconds)."""
    edges = [dict(e, wait_hours=e["wait_hours"] + hours) if "wait_hours" in e else e for e in WORKFLOW["edges"]]
    return {**WORKFLOW, "edges": edges}


async def launch_campaign(
    fleet: Fleet, database_url: str, *, leads: int, video: bool = True, workflow: dict[str, Any] | None = None
) -> CampaignRun:
    """A workspace of its own, a LinkedIn account, a signals search for ``leads`` leads and a campaign on its
    source group (``workflow``, by default :data:`WORKFLOW`), launched."""
    workspace = f"ws-{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url)
    try:
        await set_plan(engine, workspace, "scale", ["video"])  # a new workspace starts on Starter: no video
        token = await auth.create_token(engine, workspace, label="fault test")
    finally:
        await engine.dispose()
    account = await call(fleet, token, "POST", "outreach", "/v1/accounts", json={"provider": "linkedin"})
    search = await call(
        fleet,
        token,
        "POST",
        "discovery",
        "/v1/searches",
        json={
            "name": "Fault test",
            "kind": "signals",
            "criteria": {"prompt": "B2B SaaS companies hiring SDRs", "signal_types": ["hiring_plans"]},
            "target_count": leads,
        },
    )
    body: dict[str, Any] = {
        "name": "Fault test",
        "audience": {"type": "source_group", "ref": search["source_group_id"]},
        "workflow": workflow or WORKFLOW,
        "strategy": {"offer": "an audit", "tone": "friendly", "review": False},
        "delivery": {"pace": "high_volume", "active_days": "every_day", "start_hour": 0, "end_hour": 24},
        "account_ids": [account["account_id"]],
    }
    if video:
        body["video"] = {"template_id": "vt-intro", "segments": [{"field": "city", "fallback": "your city"}]}
    campaign = await call(fleet, token, "POST", "outreach", "/v1/campaigns", json=body)
    await call(fleet, token, "POST", "outreach", f"/v1/campaigns/{campaign['campaign_id']}/launch", json={})
    return CampaignRun(workspace, token, campaign["campaign_id"], search["source_group_id"], leads)
