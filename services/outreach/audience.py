"""Campaign audiences that keep working: the audience run before each invite window, and late joiners.

- **Audience runs**: while a campaign runs, two hours before each of its invite windows (the campaign's active
  days and hours, its time zone) it emits ``CampaignAudienceRunRequested``: discovery runs the searches feeding
  the audience (a scheduled one now, an exhausted one again from the top for new results), and the leads they
  find are enrolled as they become ready, in time for the window. The run is an ``audience_run`` timer per
  campaign and window (claimable only while the campaign runs: a paused campaign's run waits, then catches up
  with the window at hand); each run schedules the next. The first runs when the campaign starts.
- **Late joiners**: a finished campaign whose audience gained members (a search found more, someone added
  leads) takes them on when it is resumed or extended (``POST /v1/campaigns/{id}/extend``): it runs again,
  enrolls every ready member not enrolled yet, and runs its audience at once. An extension
  (``CampaignExtended``) also lets the audience's searches find ``additional_leads`` more new leads.

A resumed or extended campaign with nothing left to do finishes again at its next audience run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from leadstream_schemas import Audience, CampaignAudienceRunRequested, CampaignExtended, CampaignResumed
from sqlalchemy import func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.errors import Problem
from services.runtime.service import Service

from . import lifecycle as lc
from . import timers as tm
from .domain.schedule import AUDIENCE_LEAD, Schedule
from .emit import Emitter, RootEmitter
from .enrollment import enroll
from .store import campaign_workers, campaigns

AUDIENCE_RUN = "audience_run"
RECHECK_S = 300


def _audience(campaign: Row[Any]) -> Audience:
    return Audience(type=campaign.audience_type, ref=campaign.audience_ref)


async def request_run(em: Emitter, campaign: Row[Any], window_start: datetime) -> None:
    """Ask discovery to run the campaign's audience for the window opening at ``window_start`` (once per window)."""
    em.emit(
        CampaignAudienceRunRequested(
            campaign_id=campaign.campaign_id, audience=_audience(campaign), window_start=window_start
        ),
        f"audience_run:{campaign.campaign_id}:{window_start.isoformat()}",
    )


async def schedule_next(conn: AsyncConnection, campaign: Row[Any], window_start: datetime, now: datetime) -> None:
    """The audience run of the window after the one opening at ``window_start``: two hours before it opens."""
    schedule = Schedule.from_delivery(campaign.delivery)
    next_start, _ = schedule.next_day_window(window_start)
    await tm.schedule(
        conn,
        key=f"audience:{campaign.campaign_id}:{next_start.isoformat()}",
        workspace_id=campaign.workspace_id,
        kind=AUDIENCE_RUN,
        due_at=max(next_start - AUDIENCE_LEAD, now),
        now=now,
        campaign_id=campaign.campaign_id,
        payload={"window_start": next_start.isoformat()},
    )


async def start_runs(conn: AsyncConnection, em: Emitter, campaign: Row[Any], now: datetime) -> None:
    """The campaign (re)starts running: its audience runs now for the window at hand, then before each window."""
    window_start, _ = Schedule.from_delivery(campaign.delivery).next_window(now)
    await request_run(em, campaign, window_start)
    await schedule_next(conn, campaign, window_start, now)


async def run_timer(conn: AsyncConnection, em: Emitter, timer: Row[Any], now: datetime) -> None:
    """An ``audience_run`` timer is due: request the run and schedule the next one (or finish the campaign when
    nothing is left: every lead done, no member to enroll, no search still looking)."""
    campaign = (
        await conn.execute(select(campaigns).where(campaigns.c.campaign_id == timer.campaign_id).with_for_update())
    ).first()
    if campaign is None or campaign.state in ("finished", "deleted"):
        await tm.finish(conn, timer.id, now, f"campaign {campaign.state if campaign else 'gone'}", state="cancelled")
        return
    if campaign.state != "running":  # paused after the claim: the run waits for the campaign
        await tm.postpone(conn, timer.id, now + timedelta(seconds=RECHECK_S), now)
        return
    if await lc.maybe_finish_campaign(conn, em, campaign.campaign_id, now):
        await tm.finish(conn, timer.id, now, "campaign finished")
        return
    schedule = Schedule.from_delivery(campaign.delivery)
    window_start = datetime.fromisoformat(str(timer.payload.get("window_start") or now.isoformat()))
    start, end = schedule.next_window(window_start)
    if now >= end:  # late (the campaign was paused over that window): run for the window at hand instead
        start, _ = schedule.next_window(now)
    await request_run(em, campaign, start)
    await schedule_next(conn, campaign, start, now)
    await tm.finish(conn, timer.id, now, "requested")


class AudienceCommands:
    """Resuming a finished campaign and extending a campaign: its late joiners are enrolled."""

    def __init__(self, service: Service, wake: Any) -> None:
        self.service = service
        self.wake = wake

    async def _locked(self, conn: AsyncConnection, workspace_id: str, campaign_id: UUID) -> Row[Any]:
        campaign = (
            await conn.execute(
                select(campaigns)
                .where(
                    campaigns.c.campaign_id == campaign_id,
                    campaigns.c.workspace_id == workspace_id,
                    campaigns.c.state != "deleted",
                )
                .with_for_update()
            )
        ).first()
        if campaign is None:
            raise Problem(404, "not_found", f"campaign {campaign_id} not found")
        return campaign

    async def extend_campaign(self, workspace_id: str, campaign_id: UUID, additional: int) -> None:
        """``POST /v1/campaigns/{id}/extend``: one transaction on the locked campaign (404 for another workspace's)."""
        async with self.service.engine.begin() as conn:
            campaign = await self._locked(conn, workspace_id, campaign_id)
            em = RootEmitter(self.service, workspace_id)
            await self.extend(conn, em, campaign, additional)
            await em.flush(conn)
        self.service.wake_relay()
        self.wake()

    async def resume_finished(self, workspace_id: str, campaign_id: UUID) -> bool:
        """Resume a finished campaign (its late joiners are enrolled); False, changing nothing, when the
        campaign is not finished (the ordinary resume of a paused one applies)."""
        async with self.service.engine.begin() as conn:
            campaign = await self._locked(conn, workspace_id, campaign_id)
            if campaign.state != "finished":
                return False
            em = RootEmitter(self.service, workspace_id)
            await self.reopen(conn, em, campaign, "resumed_finished")
            await em.flush(conn)
        self.service.wake_relay()
        self.wake()
        return True

    async def reopen(self, conn: AsyncConnection, em: RootEmitter, campaign: Row[Any], reason: str) -> None:
        """A finished campaign runs again: leases, late joiners enrolled, and its audience runs now."""
        now = self.service.clock.now()
        active = await conn.scalar(
            select(func.count()).where(
                campaign_workers.c.campaign_id == campaign.campaign_id, campaign_workers.c.state == "active"
            )
        )
        if not active:
            raise Problem(409, "no_active_account", "every account of the campaign needs reconnecting first")
        await conn.execute(
            update(campaigns)
            .where(campaigns.c.campaign_id == campaign.campaign_id)
            .values(state="running", pause_reason=None, message=None, updated_at=now)
        )
        em.emit(CampaignResumed(campaign_id=campaign.campaign_id, reason=reason))
        await lc.acquire_leases(conn, em, campaign.campaign_id, campaign.workspace_id, now)
        fresh = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign.campaign_id))).one()
        await enroll(conn, em, fresh, now)
        await start_runs(conn, em, fresh, now)

    async def extend(self, conn: AsyncConnection, em: RootEmitter, campaign: Row[Any], additional: int) -> None:
        """More leads for the campaign: ``CampaignExtended`` (discovery's searches may find ``additional`` more
        new leads); a finished campaign runs again, a running one runs its audience now and enrolls any member
        not enrolled yet; a paused one enrolls them when resumed."""
        if campaign.state not in ("running", "paused", "finished"):
            raise Problem(
                409,
                "invalid_state",
                f"campaign is {campaign.state}; only a running, paused or finished campaign can be extended",
            )
        em.emit(
            CampaignExtended(
                campaign_id=campaign.campaign_id, audience=_audience(campaign), additional_leads=additional
            )
        )
        if campaign.state == "finished":
            await self.reopen(conn, em, campaign, "extended")
        elif campaign.state == "running":
            now = self.service.clock.now()
            await enroll(conn, em, campaign, now)
            await start_runs(conn, em, campaign, now)
