"""The console's pure logic: how states look (badges), where each next step is resolved, how numbers and
times read, which live updates a page wants. No I/O; the templates and routes call these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class Badge:
    """A state shown as coloured text (never colour alone): ``tone`` is the CSS modifier."""

    label: str
    tone: str


CAMPAIGN_STATES: dict[str, Badge] = {
    "running": Badge("Running", "good"),
    "scheduled": Badge("Scheduled", "info"),
    "paused": Badge("Paused", "warn"),
    "needs_review": Badge("Needs review", "bad"),
    "finished": Badge("Finished", "muted"),
    "pending": Badge("Pending launch", "muted"),
    "prepared": Badge("Prepared for review", "info"),
    "deleted": Badge("Deleted", "muted"),
}

ACCOUNT_HEALTH: dict[str, Badge] = {
    "healthy": Badge("Healthy", "good"),
    "reconnect_required": Badge("Reconnect required", "bad"),
    "limited": Badge("Limit reached", "warn"),
    "pending": Badge("Connecting", "info"),
    "deleted": Badge("Deleted", "muted"),
}

REVIEW_STATES: dict[str, Badge] = {
    "pending_review": Badge("Waiting for review", "warn"),
    "generated": Badge("Written", "info"),
    "auto_approved": Badge("Approved automatically", "good"),
    "approved": Badge("Approved", "good"),
    "edited": Badge("Edited and approved", "good"),
    "rejected": Badge("Rejected, rewriting", "bad"),
}

STATUSES: dict[str, Badge] = {
    "queued": Badge("Queued", "muted"),
    "in_progress": Badge("In progress", "info"),
    "replied": Badge("Replied", "good"),
    "completed": Badge("Completed", "muted"),
    "unsubscribed": Badge("Unsubscribed", "warn"),
}

ACTIVITY: dict[str, Badge] = {
    "matched": Badge("Matched", "muted"),
    "engaged": Badge("Engaged", "good"),
    "invite_sent": Badge("Invite sent", "info"),
    "message_sent": Badge("Message sent", "info"),
    "waiting_acceptance": Badge("Waiting acceptance", "warn"),
    "skipped": Badge("Skipped", "muted"),
    "processing": Badge("Processing", "muted"),
}

SEVERITY: dict[str, Badge] = {
    "critical": Badge("Needs you now", "bad"),
    "warning": Badge("Heads-up", "warn"),
    "action": Badge("Next step", "info"),
}

WORKFLOWS = {
    "warm_intro": "Warm intro",
    "standard_connect": "Standard connect",
    "direct_connect": "Direct connect",
    "message_connected": "Message connected leads",
    "custom": "Custom workflow",
}
PACES = {
    "conservative": "Conservative · 15 invites/week",
    "recommended": "Recommended · 20 invites/day",
    "high_volume": "High volume · 50 invites/day",
    "manual": "Manual daily limit",
}
STATE_REASONS = {
    "account_reconnect_required": "Waiting for its LinkedIn account to be reconnected",
    "account_reconnected": "Resumed: its account is connected again",
    "user": "Paused by a user",
}


def state_reason(detail: str | None) -> str:
    """Why a campaign is in its state, in words (a campaign's own message is shown as it is)."""
    if not detail:
        return ""
    return STATE_REASONS.get(detail, detail.replace("_", " ") if " " not in detail else detail)


PROVIDERS = {"linkedin": "LinkedIn", "email": "Email sender"}
AUDIENCES = {"source_group": "Source group", "saved_search": "Saved search", "linkedin_url": "LinkedIn search URL"}
EMAIL_STATUS = {
    "verified": Badge("Verified email", "good"),
    "not_found": Badge("No email found", "muted"),
    "risky": Badge("Email risky", "warn"),
    "invalid": Badge("Email invalid", "bad"),
    "provider_error": Badge("Email lookup failed", "warn"),
}


def badge(table: dict[str, Badge], code: str | None) -> Badge:
    """The badge of ``code`` (a readable fallback for codes this console does not know yet)."""
    if code and code in table:
        return table[code]
    return Badge((code or "unknown").replace("_", " ").capitalize(), "muted")


def stage_tone(stage: str | None) -> str:
    """The colour of a workflow stage label."""
    s = stage or ""
    if s == "replied":
        return "good"
    if s.endswith("_failed"):
        return "bad"
    if s.endswith(("_skipped", "_blocked", "_suppressed", "_duplicate", "_no_contact")) or s in (
        "unsubscribed",
        "completed",
    ):
        return "muted"
    if s.endswith(("_pending", "_draft_ready")) or s == "generating_video":
        return "warn"
    if s.endswith("_sent") or s in ("liked", "workflow_running"):
        return "info"
    return "muted"


def label(table: dict[str, str], code: str | None) -> str:
    """A set-up value's display name (the code, readable, when unknown)."""
    if not code:
        return "—"
    return table.get(code, code.replace("_", " ").capitalize())


# -- where things are resolved ---------------------------------------------------------------------


def inbox_link(kind: str, campaign_id: UUID | None, account_id: UUID | None) -> tuple[str, str]:
    """(href, action label) of an action inbox item: the page where it is resolved."""
    if kind == "connect_account":
        return "/accounts", "Connect an account"
    if kind == "reconnect_account":
        return (f"/accounts#account-{account_id}" if account_id else "/accounts"), "Reconnect"
    if campaign_id is None:
        return "/campaigns", "Open campaigns"
    base = f"/campaigns/{campaign_id}"
    if kind == "drafts_waiting":
        return f"{base}#drafts", "Review drafts"
    if kind == "failed_actions":
        return f"{base}#results", "See the leads"
    if kind == "campaign_paused_by_limit":
        return base, "See the campaign"
    return base, "Review the campaign"


ONBOARDING_LINKS = {
    "workspace_ready": ("/", "Your workspace is set up."),
    "account_connected": ("/accounts", "Campaigns send from your own LinkedIn account."),
    "campaign_launched": ("/campaigns", "Pick an audience, a workflow and a pace, then launch."),
}


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never another host), else home."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or len(target) > 500:
        return "/"
    return target


# -- numbers and times -----------------------------------------------------------------------------


def number(value: int | float | None) -> str:
    """A count with thousands separators (1,234)."""
    if value is None:
        return "—"
    return f"{value:,.0f}"


def percent(value: float | None) -> str:
    """A ratio in [0, 1] as a percentage (12.5%, 40%)."""
    if value is None:
        return "—"
    pct = value * 100
    return f"{pct:.0f}%" if pct == int(pct) or pct >= 10 else f"{pct:.1f}%"


def relative(when: datetime | None, now: datetime) -> str:
    """'just now', '5 min ago', '3 h ago', '2 d ago', or 'in 3 h' for the future."""
    if when is None:
        return "—"
    seconds = (now - when).total_seconds()
    future = seconds < 0
    s = abs(seconds)
    if s < 45:
        return "just now"
    if s < 3600:
        amount = f"{round(s / 60)} min"
    elif s < 86400:
        amount = f"{round(s / 3600)} h"
    elif s < 86400 * 60:
        amount = f"{round(s / 86400)} d"
    else:
        amount = f"{round(s / (86400 * 30))} mo"
    return f"in {amount}" if future else f"{amount} ago"


def zone(name: str | None) -> str:
    """An IANA time zone name the browser reported, or UTC when it is missing or unknown."""
    if not name or len(name) > 64:
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return name


def local_time(when: datetime | None, tz: str) -> str:
    """An absolute time in the user's zone (the page script refines it to the browser's locale)."""
    if when is None:
        return "—"
    return when.astimezone(ZoneInfo(tz)).strftime("%d %b %Y, %H:%M")


# -- live updates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Watch:
    """What an open page wants to hear about (the query of its ``/live`` stream)."""

    lead: UUID | None = None
    campaign: UUID | None = None
    home: bool = False
    campaigns: bool = False
    accounts: bool = False


def live_events(watch: Watch, change: dict[str, Any] | None) -> list[str]:
    """The browser events (``sse:<name>`` triggers) a change of the projection's stream fires on a page.

    ``None`` is a reset (the page's position is gone): everything the page watches refreshes.
    """
    names: list[str] = []
    if change is None:
        return [
            n
            for n, on in (
                ("lead", watch.lead),
                ("campaign", watch.campaign),
                ("home", watch.home),
                ("campaigns", watch.campaigns),
                ("accounts", watch.accounts),
            )
            if on
        ]
    kind = change.get("kind")
    if watch.lead is not None and change.get("lead_id") == str(watch.lead):
        names.append("lead")
    if watch.campaign is not None and change.get("campaign_id") == str(watch.campaign):
        names.append("campaign")
    if watch.home:
        names.append("home")
    if watch.campaigns and change.get("campaign_id"):
        names.append("campaigns")
    if watch.accounts and kind == "account":
        names.append("accounts")
    return names
