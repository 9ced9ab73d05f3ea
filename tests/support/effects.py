"""Counting effects of a campaign after a fault: lost, duplicated, and copies on the wire.

What counts, per campaign (one workspace):

- **on the topic**: every lead of the search reaches each stage of the pipeline (found, profile, email,
  enrolled, a video outcome, an end: completed or replied). A fact appears once: at most one event id per
  (event type, lead, step, stage), except for facts that may repeat by nature (a retried action's failure,
  a re-drafted message, a second reply). A handler re-run after a crash emits the same id (ids derive from
  the causing event), so a second *id* for one fact is an effect applied twice; a second *record* with the
  same id is a re-published outbox row, counted apart as a copy on the wire (harmless: consumers dedupe).
- **at the provider**: what the simulated LinkedIn provider performed, per lead and kind, equals the sends
  on the topic (a send repeated after a crash would be performed twice for one event).
- **in the views** (projection API): each lead's timeline holds exactly the lead's event ids on the topic,
  each once; the campaign summary's counts equal the topic's.

The provider and the views are read first and the topic caught up on after, so an event they reflect is on
the topic; an answer that arrives meanwhile can still move a count (a reply after a completion), so a caller
counts again until nothing disagrees or its deadline passes (a real duplicate never goes away).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import httpx
from aiokafka import ConsumerRecord
from leadstream_schemas import (
    ActionFailed,
    ActionSkipped,
    CampaignFinished,
    EmailSent,
    InviteSent,
    LeadCompleted,
    LeadDiscovered,
    LeadEmailEnriched,
    LeadEmailNotFound,
    LeadEnrichmentFailed,
    LeadEnrolled,
    LeadProfileEnriched,
    MessageEdited,
    MessageGenerated,
    MessageRejected,
    MessageSent,
    Replied,
    VideoFailed,
    VideoGenerated,
    headers_dict,
)
from sqlalchemy import text

from services.runtime.db import create_engine
from tests.support.campaign import CampaignRun
from tests.support.fleet import Fleet
from tests.support.probe.tail import Tail

Record: TypeAlias = ConsumerRecord[Any, Any]

REPEATABLE = {
    ActionFailed.event_type,  # a retryable failure, then the retry
    ActionSkipped.event_type,
    MessageGenerated.event_type,  # a new draft after a rejection or an edit
    MessageRejected.event_type,
    MessageEdited.event_type,
    Replied.event_type,  # an out-of-office answer, then a reply
}
"""Facts that may happen more than once for one (lead, step)."""

STAGES: dict[str, set[str]] = {
    "found": {LeadDiscovered.event_type},
    "profile": {LeadProfileEnriched.event_type},
    "email": {LeadEmailEnriched.event_type, LeadEmailNotFound.event_type},
    "enrolled": {LeadEnrolled.event_type},
    "video": {VideoGenerated.event_type, VideoFailed.event_type},
    "end": {LeadCompleted.event_type, Replied.event_type},
}
"""Each lead of a campaign reaches every stage (an enrichment failure of a stage stands for that stage)."""

SENDS = {InviteSent.event_type: "invite", MessageSent.event_type: "message"}
"""Sends on the topic, by the simulated LinkedIn provider's kind of request."""

SUMMARY_COUNTS = {
    "invites_sent": InviteSent.event_type,
    "messages_sent": MessageSent.event_type,
    "emails_sent": EmailSent.event_type,
    "videos_generated": VideoGenerated.event_type,
    "failed_actions": ActionFailed.event_type,
    "skipped_actions": ActionSkipped.event_type,
}


@dataclass
class Effects:
    """The count of one campaign's effects; ``lost`` and ``duplicated`` name each problem found."""

    leads: int
    events: int
    sends: int
    wire_copies: int
    provider_replays: int = 0
    """Provider calls repeated with the same idempotency key (the provider answered them from its memory)."""
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)

    def figures(self) -> str:
        return (
            f"leads={self.leads} events={self.events} sends={self.sends} lost={len(self.lost)} "
            f"duplicated={len(self.duplicated)} copies_on_the_wire={self.wire_copies} "
            f"provider_replays={self.provider_replays}"
        )

    def problems(self) -> str:
        return "\n".join([*(f"LOST {p}" for p in self.lost[:20]), *(f"DUPLICATED {p}" for p in self.duplicated[:20])])


@dataclass(frozen=True)
class Fact:
    """One event id of the workspace on the lead topic: what it says, about whom, for which step."""

    event_id: str
    event_type: str
    lead: str
    step: str | None
    stage: str | None
    campaign: str | None


def lead_facts(records: Sequence[Record], workspace: str) -> tuple[list[Fact], int]:
    """The workspace's lead facts, one per event id, and how many records were copies of an id already seen."""
    seen: dict[str, Fact] = {}
    copies = 0
    for r in records:
        h = headers_dict(r.headers)
        if h.get("workspaceid") != workspace or r.key is None:
            continue
        if h["ce_id"] in seen:
            copies += 1
            continue
        data = json.loads(r.value)
        campaign = data.get("campaign_id") or h.get("campaignid")
        seen[h["ce_id"]] = Fact(
            h["ce_id"], h["ce_type"], r.key.decode(), data.get("step_id"), data.get("stage"), campaign
        )
    return list(seen.values()), copies


def finished(records: Sequence[Record], run: CampaignRun) -> bool:
    """Whether the campaign's CampaignFinished is on the campaign topic."""
    for r in records:
        h = headers_dict(r.headers)
        if h.get("ce_type") == CampaignFinished.event_type and r.key is not None and r.key.decode() == run.campaign_id:
            return True
    return False


def count_topic(lead_records: Sequence[Record], run: CampaignRun) -> Effects:
    """Lost and duplicated facts on the lead topic (see the module's description)."""
    facts, copies = lead_facts(lead_records, run.workspace)
    by_lead: dict[str, list[Fact]] = defaultdict(list)
    for f in facts:
        by_lead[f.lead].append(f)
    effects = Effects(
        leads=len(by_lead), events=len(facts), sends=sum(f.event_type in SENDS for f in facts), wire_copies=copies
    )
    found = [lead for lead, fs in by_lead.items() if any(f.event_type == LeadDiscovered.event_type for f in fs)]
    if len(found) != run.leads:
        effects.lost.append(f"{run.leads} leads searched for, {len(found)} found")
    for lead in found:
        fs = by_lead[lead]
        for stage, types in STAGES.items():
            failed = any(f.event_type == LeadEnrichmentFailed.event_type and f.stage == stage for f in fs)
            if not failed and not any(f.event_type in types for f in fs):
                effects.lost.append(f"lead {lead} never reached {stage}")
    ids: dict[tuple[str, str, str | None, str | None], set[str]] = defaultdict(set)
    for f in facts:
        if f.event_type not in REPEATABLE:
            ids[(f.event_type, f.lead, f.step, f.stage)].add(f.event_id)
    for (event_type, lead_id, step, fact_stage), distinct in ids.items():
        if len(distinct) > 1:
            where = f"lead {lead_id} step {step} stage {fact_stage}"
            effects.duplicated.append(f"{event_type} of {where}: {len(distinct)} ids")
    return effects


@dataclass
class Observed:
    """What the provider and the views show, read before the topic is caught up on (so the topic holds at
    least every event they reflect)."""

    performed: Counter[tuple[str, str]]
    replays: int
    timelines: dict[str, list[str]]
    summary: dict[str, Any]


async def _performed(database_url: str, leads: Sequence[str]) -> tuple[Counter[tuple[str, str]], int]:
    """The simulated LinkedIn provider's own record: requests performed per (lead, kind), and replays."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT lead_id, kind, count(*), sum(replays) FROM outreach.sim_linkedin_requests "
                        "WHERE lead_id = ANY(:leads) GROUP BY lead_id, kind"
                    ),
                    {"leads": list(leads)},
                )
            ).all()
    finally:
        await engine.dispose()
    return Counter({(str(lead), kind): int(n) for lead, kind, n, _ in rows}), sum(int(r or 0) for *_, r in rows)


async def _get(http: httpx.AsyncClient, url: str, **params: Any) -> Any:
    r = await http.get(url, params=params)
    r.raise_for_status()
    return r.json()


async def _views(run: CampaignRun, fleet: Fleet, leads: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Each lead's timeline (event ids, in order, every page) and the campaign summary, from the projection API."""
    base = fleet.url("projection") + "/v1"
    timelines: dict[str, list[str]] = {}
    async with httpx.AsyncClient(timeout=30, headers=run.headers()) as http:
        for lead in leads:
            items: list[str] = []
            after: str | None = None
            while True:
                page = await _get(
                    http, f"{base}/leads/{lead}/timeline", limit=200, **({"after": after} if after else {})
                )
                items.extend(str(i["event_id"]) for i in page["items"])
                after = page.get("next")
                if not after:
                    break
            timelines[lead] = items
        summary = await _get(http, f"{base}/campaigns/{run.campaign_id}/summary")
    return timelines, summary


async def count(run: CampaignRun, tail: Tail, lead_topic: str, fleet: Fleet, database_url: str) -> Effects:
    """The campaign's effects: read the provider and the views, catch up on the topics, compare all three."""
    known = {r.key.decode() for r in tail.records if r.topic == lead_topic and r.key is not None}
    leads = sorted(known)
    performed, replays = await _performed(database_url, leads)
    timelines, summary = await _views(run, fleet, leads)
    await tail.catch_up()
    lead_records = [r for r in tail.records if r.topic == lead_topic]
    effects = count_topic(lead_records, run)
    effects.provider_replays = replays
    compare(effects, lead_facts(lead_records, run.workspace)[0], run, Observed(performed, replays, timelines, summary))
    return effects


def compare(effects: Effects, facts: Sequence[Fact], run: CampaignRun, seen: Observed) -> None:
    """Add to ``effects`` where the provider or the views disagree with the topic's ``facts``."""
    on_topic = Counter((f.lead, SENDS[f.event_type]) for f in facts if f.event_type in SENDS)
    for key in seen.performed.keys() | on_topic.keys():
        if seen.performed[key] > on_topic[key]:
            effects.duplicated.append(
                f"provider performed {key[1]} for lead {key[0]} {seen.performed[key]}x, sent events {on_topic[key]}"
            )
        elif seen.performed[key] < on_topic[key]:
            effects.lost.append(
                f"{on_topic[key]} {key[1]} sends of lead {key[0]} on the topic, provider performed "
                f"{seen.performed[key]}"
            )
    by_lead: dict[str, set[str]] = defaultdict(set)
    for f in facts:
        by_lead[f.lead].add(f.event_id)
    for lead, items in seen.timelines.items():
        expected = by_lead.get(lead, set())
        if repeated := [i for i, n in Counter(items).items() if n > 1]:
            effects.duplicated.append(f"timeline of lead {lead} shows {len(repeated)} events twice")
        if missing := expected - set(items):
            effects.lost.append(f"timeline of lead {lead} misses {len(missing)} of its events")
        if extra := set(items) - expected:
            effects.duplicated.append(f"timeline of lead {lead} shows {len(extra)} events not on the topic")
    mine = [f for f in facts if f.campaign == run.campaign_id]
    for name, event_type in SUMMARY_COUNTS.items():
        _compare(effects, f"summary {name}", seen.summary[name], sum(f.event_type == event_type for f in mine))
    replied = {f.lead for f in mine if f.event_type == Replied.event_type}
    completed = {f.lead for f in mine if f.event_type == LeadCompleted.event_type} - replied  # the view's rule
    _compare(effects, "summary replied", seen.summary["replied"], len(replied))
    _compare(effects, "summary completed (without a reply)", seen.summary["completed"], len(completed))


def _compare(effects: Effects, what: str, shown: int, on_topic: int) -> None:
    if shown < on_topic:
        effects.lost.append(f"{what}: {shown}, topic {on_topic}")
    elif shown > on_topic:
        effects.duplicated.append(f"{what}: {shown}, topic {on_topic}")
