"""A deterministic synthetic event log for the projection's benchmark, tests and demos.

It looks like what the services produce: accounts connect, a search discovers leads into a source
group, campaigns are created on those groups and launched, and each enrolled lead goes through
video, drafts, invite, acceptance, message, email, failures and skips until it replies or completes.
Times increase per lead and per campaign, so producing the list in order keeps per-key order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from leadstream_schemas import (
    AccountConnected,
    Action,
    ActionFailed,
    ActionSkipped,
    Audience,
    CampaignCreated,
    CampaignLaunched,
    CampaignPaused,
    CampaignResumed,
    Channel,
    Delivery,
    Edge,
    EmailSent,
    Envelope,
    Event,
    FitSignal,
    Hook,
    InviteAccepted,
    InviteSent,
    LeadCompleted,
    LeadDiscovered,
    LeadEmailEnriched,
    LeadEmailNotFound,
    LeadEnrolled,
    LeadProfileEnriched,
    LeadSource,
    MessageApproved,
    MessageGenerated,
    MessageSent,
    Replied,
    SearchFinished,
    SearchStarted,
    SkipReason,
    Step,
    VideoGenerated,
    VideoRequested,
    VideoSettings,
    Workflow,
    service_source,
)

EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
WORKFLOW = Workflow(
    preset="invite_message_email",
    start="invite",
    steps=[
        Step(id="invite", action="invite", needs_text=True, channel=Channel.invite, note=True),
        Step(id="message", action="message", needs_text=True, channel=Channel.message),
        Step(id="email", action="email", needs_text=True, channel=Channel.email),
    ],
    edges=[
        Edge(source="invite", target="message", condition="accepted", delay_minutes=1440),
        Edge(source="invite", target="email", condition="not_accepted", delay_minutes=60),
    ],
)
"""The workflow of the workload's campaigns (the steps its lead sequences take)."""
_FIRST = ["Ada", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Liam"]
_LAST = ["Adler", "Brandt", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ito", "Jensen"]
_COMPANIES = ["Northwind Labs", "Bluepeak", "Cobalt Systems", "Dataforge", "Evergreen AI", "Fluxio"]


@dataclass
class Workload:
    """The generated log plus the ids it used (tests look things up by them)."""

    envelopes: list[Envelope[Any]]
    workspace_ids: list[str]
    lead_ids: list[UUID]
    campaign_ids: list[UUID]
    account_ids: list[UUID]
    lead_workspace: dict[UUID, str] = field(default_factory=dict)
    campaign_workspace: dict[UUID, str] = field(default_factory=dict)


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.out: list[tuple[datetime, int, Envelope[Any]]] = []

    def uid(self) -> UUID:
        return UUID(int=self.rng.getrandbits(128), version=4)

    def emit(self, data: Event, ws: str, t: datetime, source: str) -> None:
        env = Envelope.new(data, workspace_id=ws, source=service_source(source), time=t, id=self.uid())
        self.out.append((t, len(self.out), env))


def generate(
    *,
    leads: int = 50,
    campaigns: int = 4,
    workspaces: int = 1,
    events: int | None = None,
    seed: int = 7,
    start: datetime = EPOCH,
) -> Workload:
    """A log over ``leads`` leads and ``campaigns`` campaigns (spread over ``workspaces``).

    Without ``events`` every lead is enrolled in the campaign of its source group. With ``events``,
    leads are also enrolled in further campaigns of their workspace until the log holds that many
    events, and the log is cut to exactly ``events`` (sorted by time, so the cut is a prefix in time).
    """
    g = _Gen(seed)
    wss = [f"ws-{i + 1}" for i in range(workspaces)]
    accounts: dict[str, list[UUID]] = {}
    groups: dict[str, UUID] = {}
    camp_ids: list[UUID] = []
    camp_ws: dict[UUID, str] = {}
    camp_group: dict[UUID, UUID] = {}
    camp_video: dict[UUID, bool] = {}
    for w in wss:
        accounts[w] = [g.uid() for _ in range(2)]
        for i, a in enumerate(accounts[w]):
            g.emit(AccountConnected(account_id=a, display_name=f"SDR {i + 1} ({w})"), w, start, "outreach")
    for i in range(campaigns):
        w = wss[i % len(wss)]
        cid, group, search = g.uid(), g.uid(), g.uid()
        camp_ids.append(cid)
        camp_ws[cid] = w
        camp_group[cid] = group
        camp_video[cid] = i % 3 == 0
        groups[str(group)] = group
        t = start + timedelta(minutes=i)
        g.emit(
            SearchStarted(
                search_id=search, source_group_id=group, kind="people", name=f"Search {i + 1}", target_count=leads
            ),
            w,
            t,
            "discovery",
        )
        g.emit(
            SearchFinished(search_id=search, reason="target_reached", total_new=leads),
            w,
            t + timedelta(minutes=30),
            "discovery",
        )
        g.emit(
            CampaignCreated(
                campaign_id=cid,
                name=f"Campaign {i + 1}",
                audience=Audience(type="source_group", ref=str(group)),
                workflow=WORKFLOW,
                delivery=Delivery(pace=["steady", "high_volume"][i % 2], daily_cap=20),
                account_ids=accounts[w],
                video=VideoSettings(template_id="intro-v1") if camp_video[cid] else None,
            ),
            w,
            t + timedelta(seconds=1),
            "outreach",
        )
        g.emit(CampaignLaunched(campaign_id=cid, account_ids=accounts[w]), w, t + timedelta(minutes=31), "outreach")
        if i % 4 == 1:
            g.emit(CampaignPaused(campaign_id=cid, reason="user"), w, t + timedelta(hours=20), "outreach")
            g.emit(CampaignResumed(campaign_id=cid, reason="user"), w, t + timedelta(hours=21), "outreach")
    lead_ids: list[UUID] = []
    lead_ws: dict[UUID, str] = {}
    lead_home: dict[UUID, UUID] = {}
    for n in range(leads):
        lid = g.uid()
        home = camp_ids[n % len(camp_ids)] if camp_ids else None
        w = camp_ws[home] if home else wss[n % len(wss)]
        lead_ids.append(lid)
        lead_ws[lid] = w
        t = start + timedelta(minutes=40 + n % 60, seconds=n)
        name = f"{g.rng.choice(_FIRST)} {g.rng.choice(_LAST)}"
        company = g.rng.choice(_COMPANIES)
        url = f"https://www.linkedin.com/in/lead-{lid.hex[:12]}"
        g.emit(
            LeadDiscovered(
                lead_id=lid,
                source=LeadSource.search,
                source_group_id=camp_group[home] if home else None,
                linkedin_url=url,
                full_name=name,
                title="Head of Sales",
                company=company,
                fit_signals=[FitSignal(kind="hiring", detail=f"{company} is hiring SDRs")] if n % 2 else [],
            ),
            w,
            t,
            "discovery",
        )
        g.emit(
            LeadProfileEnriched(
                lead_id=lid,
                full_name=name,
                headline=f"Head of Sales at {company}",
                company_name=company,
                linkedin_url=url,
            ),
            w,
            t + timedelta(seconds=2),
            "enrichment",
        )
        if g.rng.random() < 0.7:
            g.emit(
                LeadEmailEnriched(lead_id=lid, email=f"lead{n}@example.com"), w, t + timedelta(seconds=2), "enrichment"
            )
        else:
            g.emit(LeadEmailNotFound(lead_id=lid, reason="not_found"), w, t + timedelta(seconds=2), "enrichment")
        if home is not None:
            lead_home[lid] = home
    pairs = list(lead_home.items())
    paired = set(pairs)
    for k, (lid, cid) in enumerate(pairs):
        _sequence(g, lid, cid, lead_ws[lid], accounts[lead_ws[lid]], camp_video[cid], k)
    # More enrolments (each lead in further campaigns of its workspace) until the log is long enough.
    extra = 0
    while events is not None and len(g.out) < events and extra < len(camp_ids) * len(lead_ids):
        lid = lead_ids[extra % len(lead_ids)]
        extra += 1
        for c in camp_ids:
            if camp_ws[c] == lead_ws[lid] and (lid, c) not in paired:
                paired.add((lid, c))
                _sequence(g, lid, c, lead_ws[lid], accounts[lead_ws[lid]], camp_video[c], len(paired))
                break
    ordered = [env for _, _, env in sorted(g.out, key=lambda x: (x[0], x[1]))]
    if events is not None:
        ordered = ordered[:events]
    return Workload(ordered, wss, lead_ids, camp_ids, [a for w in wss for a in accounts[w]], lead_ws, camp_ws)


def _sequence(g: _Gen, lid: UUID, cid: UUID, ws: str, accounts: list[UUID], video: bool, k: int) -> None:
    """One lead's run through one campaign."""
    rng = g.rng
    account = accounts[k % len(accounts)]
    t = EPOCH + timedelta(hours=1, minutes=k % 240)

    def at(minutes: float) -> datetime:
        nonlocal t
        t = t + timedelta(minutes=minutes)
        return t

    g.emit(
        LeadEnrolled(lead_id=lid, campaign_id=cid, account_id=account, workflow_preset="invite_message_email"),
        ws,
        at(1),
        "outreach",
    )
    video_url = None
    if video:
        job = g.uid()
        g.emit(
            VideoRequested(lead_id=lid, campaign_id=cid, video_job_id=job, template_id="intro-v1"), ws, at(1), "video"
        )
        video_url = f"https://videos.example/{job.hex[:10]}.mp4"
        g.emit(VideoGenerated(lead_id=lid, campaign_id=cid, video_job_id=job, video_url=video_url), ws, at(3), "video")
    hook = Hook(kind="role_company", detail="Head of Sales at a growing team", reason="no recent posts", fallback=True)
    for channel in (Channel.invite, Channel.message, Channel.email):
        draft = g.uid()
        text = {
            "invite": "Hi, loved your post on outbound.",
            "message": "Thanks for connecting!",
            "email": "Quick idea for your SDR team",
        }[channel.value]
        g.emit(
            MessageGenerated(
                lead_id=lid,
                campaign_id=cid,
                draft_id=draft,
                channel=channel,
                step_id=channel.value,
                text=text,
                hook=hook,
            ),
            ws,
            at(0.5),
            "messaging",
        )
        g.emit(
            MessageApproved(
                lead_id=lid,
                campaign_id=cid,
                draft_id=draft,
                channel=channel,
                step_id=channel.value,
                text=text,
                auto=True,
            ),
            ws,
            at(0.1),
            "messaging",
        )
    g.emit(
        InviteSent(
            lead_id=lid,
            campaign_id=cid,
            account_id=account,
            step_id="invite",
            note="Hi, loved your post on outbound.",
            video_url=video_url,
        ),
        ws,
        at(5),
        "outreach",
    )
    if rng.random() < 0.4:
        g.emit(
            ActionSkipped(
                lead_id=lid,
                campaign_id=cid,
                account_id=account,
                step_id="message",
                action=Action.message,
                reason=SkipReason.not_accepted,
            ),
            ws,
            at(60 * 24),
            "outreach",
        )
        g.emit(LeadCompleted(lead_id=lid, campaign_id=cid, steps_done=1), ws, at(1), "outreach")
        return
    g.emit(
        InviteAccepted(lead_id=lid, campaign_id=cid, account_id=account), ws, at(60 * rng.randint(1, 30)), "outreach"
    )
    if rng.random() < 0.1:
        g.emit(
            ActionFailed(
                lead_id=lid,
                campaign_id=cid,
                account_id=account,
                step_id="message",
                action=Action.message,
                reason="provider_error",
                retryable=True,
            ),
            ws,
            at(5),
            "outreach",
        )
    g.emit(
        MessageSent(
            lead_id=lid,
            campaign_id=cid,
            account_id=account,
            step_id="message",
            text="Thanks for connecting!",
            video_url=video_url,
        ),
        ws,
        at(10),
        "outreach",
    )
    if rng.random() < 0.25:
        g.emit(
            Replied(
                lead_id=lid,
                campaign_id=cid,
                account_id=account,
                channel=Channel.message,
                received_at=t,
                excerpt="Sounds interesting, let's talk",
            ),
            ws,
            at(90),
            "outreach",
        )
        return
    if rng.random() < 0.7:
        g.emit(
            EmailSent(
                lead_id=lid,
                campaign_id=cid,
                account_id=account,
                step_id="email",
                to="lead@example.com",
                subject="Quick idea",
                body="Hello",
                unsubscribe_url=f"https://u.example/{g.uid().hex}",
            ),
            ws,
            at(60 * 48),
            "outreach",
        )
    else:
        g.emit(
            ActionSkipped(
                lead_id=lid,
                campaign_id=cid,
                account_id=account,
                step_id="email",
                action=Action.email,
                reason=SkipReason.no_contact,
            ),
            ws,
            at(60 * 48),
            "outreach",
        )
    g.emit(LeadCompleted(lead_id=lid, campaign_id=cid, steps_done=3), ws, at(60), "outreach")
