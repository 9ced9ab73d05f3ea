"""The console's pure logic: how states look (badges), where each next step is resolved, how numbers and
times read, which live updates a page wants. No I/O; the templates and routes call these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
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
    "accounts_replaced": "Running again on the accounts you chose",
    "user": "Paused by a user",
}


def state_reason(detail: str | None) -> str:
    """Why a campaign is in its state, in words (a campaign's own message is shown as it is)."""
    if not detail:
        return ""
    return STATE_REASONS.get(detail, detail.replace("_", " ") if " " not in detail else detail)


PROVIDERS = {"linkedin": "LinkedIn", "email": "Email sender"}
AUDIENCES = {"source_group": "Lead list", "saved_search": "Saved search", "linkedin_url": "LinkedIn search URL"}
SEARCH_KINDS = {
    "people": "Described people",
    "signals": "Signal discovery",
    "posts": "Recent posts",
    "linkedin_url": "LinkedIn search URL",
    "csv": "CSV import",
    "manual": "Added by hand",
}
BLOCK_KINDS = {"domain": "Domain", "email": "Email", "profile_url": "LinkedIn profile"}
"""What a blocklist entry can be (outreach's kinds), as the blocklist page names them."""
PERSONAL_MAIL = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com",
        "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.de", "gmx.net", "web.de",
        "yandex.ru", "mail.ru",
    }
)  # fmt: skip
"""Mail providers of everyone: a lead's address there says nothing about their company, so its domain is never
offered as the company's (blocking gmail.com would silence a whole audience)."""


@dataclass(frozen=True)
class BlockChoice:
    """One way to block a lead: outreach's blocklist kind, the value blocked, and how the choice reads."""

    kind: str
    value: str
    label: str


def block_choices(email: str | None, linkedin_url: str | None) -> list[BlockChoice]:
    """What a lead's page offers to block, only what the lead has: their email, their LinkedIn profile, their
    company's domain (from a work email); the narrowest first (the dialog preselects it)."""
    out: list[BlockChoice] = []
    address = (email or "").strip()
    company = address.rpartition("@")[2].lower() if "@" in address else ""
    if address:
        out.append(BlockChoice("email", address, f"This email, {address}"))
    if linkedin_url and linkedin_url.strip():
        out.append(BlockChoice("profile_url", linkedin_url.strip(), "This LinkedIn profile"))
    if company and company not in PERSONAL_MAIL:
        out.append(BlockChoice("domain", company, f"The company's domain, {company} (everyone there)"))
    return out


SUPPRESSION_KINDS = {"lead": "Lead", "email": "Email"}
SUPPRESSION_REASONS: dict[str, Badge] = {
    "unsubscribed": Badge("Unsubscribed", "warn"),
    "bounced": Badge("Email bounced", "bad"),
    "manual": Badge("Suppressed by hand", "muted"),
}
SEARCH_STATES: dict[str, Badge] = {
    "running": Badge("Finding leads", "info"),
    "scheduled": Badge("Scheduled", "info"),
    "finished": Badge("Done", "good"),
}
FINISH_REASONS = {
    "target_reached": "Target reached",
    "exhausted": "No more results",
    "cancelled": "Cancelled",
    "failed": "Failed",
}
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
        # Drafts are reviewed in the campaign's Messaging Lab queue: the campaign page only says how many wait.
        return f"{base}/lab", "Review drafts"
    if kind == "failed_actions":
        return f"{base}#results", "See the leads"
    if kind == "campaign_paused_by_limit":
        return base, "See the campaign"
    return base, "Review the campaign"


ONBOARDING_LINKS = {
    "workspace_ready": ("/", "Your workspace is set up."),
    "account_connected": ("/accounts", "Campaigns send from your own LinkedIn account."),
    "campaign_launched": ("/campaigns/new", "Pick an audience, a workflow and a pace, then launch."),
}


@dataclass(frozen=True)
class NextStep:
    """What an empty panel offers: its title and words, and the one button to the next step."""

    title: str
    text: str
    href: str
    action: str


def campaigns_next_step(account_connected: bool, campaigns_total: int) -> NextStep:
    """What home's empty "Campaign health" panel offers, by the workspace's state (the onboarding's
    ``account_connected`` step, its campaigns): connect a LinkedIn account while none is connected, else build a
    campaign (it said "Go to accounts" to a workspace whose account was connected already)."""
    if not account_connected:
        return NextStep(
            "No campaigns yet",
            "Campaigns send from your own LinkedIn account: connect it first, then build a campaign.",
            "/accounts",
            "Connect a LinkedIn account",
        )
    if campaigns_total == 0:
        return NextStep(
            "No campaigns yet",
            "Your LinkedIn account is connected. Build a campaign: who to reach, the steps and a safe pace; you see "
            "where each lead will go before anything is sent.",
            "/campaigns/new",
            "Build a campaign",
        )
    return NextStep(
        "No campaign to show",
        "None of your campaigns is running or recent.",
        "/campaigns",
        "See campaigns",
    )


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never another host), else home."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or len(target) > 500:
        return "/"
    return target


def is_web_link(value: object) -> bool:
    """Whether a stored link may be an ``href``: an http(s) URL. An erased one (``[erased]``, crypto-shredding) or
    anything else a provider wrote (a ``javascript:`` URL) is shown as no link."""
    return isinstance(value, str) and value.lower().startswith(("https://", "http://"))


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


@dataclass(frozen=True)
class TimeBase:
    """The projection's clock as last seen: its time ``at`` when the console's monotonic clock read ``seen``,
    and how many times faster than real time it runs. Relative times ("3 h ago") are measured against it,
    because the events they describe carry that clock's time (a demo's runs 1800 times faster than the
    wall clock), whatever the console's own clock is set to."""

    at: datetime
    seen: float
    scale: float

    def now(self, monotonic: float) -> datetime:
        """The projection's time now, ``monotonic`` being the console's monotonic clock now."""
        return self.at + timedelta(seconds=max(0.0, monotonic - self.seen) * self.scale)


def time_base(stamp: str | None, scale: str | None, seen: float) -> TimeBase | None:
    """A :class:`TimeBase` from a service's ``X-Leadstream-Time`` and ``X-Leadstream-Clock-Scale`` headers
    (None when they are missing or not readable: the console then uses its own clock)."""
    if not stamp or len(stamp) > 64:
        return None
    try:
        at = datetime.fromisoformat(stamp)
        factor = float(scale) if scale else 1.0
    except ValueError:
        return None
    if at.tzinfo is None or not 0 < factor < 1e7:
        return None
    return TimeBase(at, seen, factor)


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
    search: UUID | None = None


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
                ("search", watch.search),
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
    if watch.search is not None and change.get("search_id") == str(watch.search):
        names.append("search")
    return names


# -- workflow graphs -------------------------------------------------------------------------------

ACTIONS: dict[str, str] = {
    "like": "Like a recent post",
    "comment": "Comment on the post",
    "invite": "Send an invite",
    "message": "Send a message",
    "email": "Send an email",
}
ACTION_ICONS: dict[str, str] = {"like": "♥", "comment": "✎", "invite": "+", "message": "✉", "email": "@"}


def wait_label(minutes: int) -> str:
    """A wait as people say it: '45 min', '12 h', '1 d 2 h'."""
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours <= 168:  # waits are set in hours up to a week (the invite-to-message wait's range)
        return f"{hours} h" + (f" {rest} min" if rest else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def edge_label(condition: str, minutes: int) -> str:
    """What an edge waits for: 'after 60 min', 'accepted + 24 h', 'not accepted, then 60 min'."""
    if condition == "accepted":
        return f"accepted + {wait_label(minutes)}"
    if condition == "not_accepted":
        return f"not accepted · {wait_label(minutes)}"
    return f"after {wait_label(minutes)}"


@dataclass(frozen=True)
class Node:
    """A step placed on the drawing: its column and row, what it does, whether it can run."""

    id: str
    action: str
    label: str
    detail: str
    x: int
    y: int
    unreachable: bool = False


@dataclass(frozen=True)
class Link:
    """An edge on the drawing: from one node's right side to another's left side, with its label."""

    path: str
    label: str
    lx: int
    ly: int
    tone: str


@dataclass(frozen=True)
class Drawing:
    """A workflow graph laid out left to right for an SVG of ``width`` x ``height``."""

    nodes: list[Node]
    links: list[Link]
    width: int
    height: int


NODE_W, NODE_H, COL_GAP, ROW_GAP = 150, 56, 120, 26


def draw(steps: list[dict[str, Any]], edges: list[dict[str, Any]], start: str, unreachable: list[str]) -> Drawing:
    """Lay a validated graph out in columns by distance from the start (rows within a column in order);
    steps that cannot run go in a last column, greyed."""
    ids = [s["id"] for s in steps]
    depth: dict[str, int] = {start: 0} if start in ids else {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for e in edges:
                if e["from"] == node and e["to"] not in depth:
                    depth[e["to"]] = depth[node] + 1
                    nxt.append(e["to"])
        frontier = nxt
    last = max(depth.values(), default=-1) + 1
    for sid in ids:
        depth.setdefault(sid, last)
    columns: dict[int, list[str]] = {}
    for sid in ids:
        columns.setdefault(depth[sid], []).append(sid)
    pos: dict[str, tuple[int, int]] = {}
    for col, members in columns.items():
        for row, sid in enumerate(members):
            pos[sid] = (16 + col * (NODE_W + COL_GAP), 16 + row * (NODE_H + ROW_GAP + 14))
    by_id = {s["id"]: s for s in steps}
    nodes = []
    for sid in ids:
        s = by_id[sid]
        detail = ""
        if s["action"] == "invite":
            detail = "with a note" if s.get("note") else "without a note"
        elif s["action"] == "comment":
            detail = "drafts for approval" if s.get("mode") == "draft" else "posted automatically"
        elif s["action"] == "message" and sid != "message":
            detail = step_name(sid, s.get("channel"))  # named as the Lab and a lead's page name it
        x, y = pos[sid]
        nodes.append(Node(sid, s["action"], ACTIONS.get(s["action"], s["action"]), detail, x, y, sid in unreachable))
    links = []
    for e in edges:
        if e["from"] not in pos or e["to"] not in pos:
            continue
        (x1, y1), (x2, y2) = pos[e["from"]], pos[e["to"]]
        sx, sy, tx, ty = x1 + NODE_W, y1 + NODE_H // 2, x2, y2 + NODE_H // 2
        mid = (sx + tx) // 2
        path = f"M{sx},{sy} C{mid},{sy} {mid},{ty} {tx - 6},{ty}"
        tone = {"accepted": "good", "not_accepted": "warn"}.get(e.get("condition", "always"), "info")
        label = edge_label(e.get("condition", "always"), int(e.get("delay_minutes", 0)))
        links.append(Link(path, label, mid, min(sy, ty) - 8 if sy != ty else sy - 8, tone))
    width = 16 + (max(columns, default=0) + 1) * (NODE_W + COL_GAP) - COL_GAP + 16
    height = 16 + max((len(m) for m in columns.values()), default=1) * (NODE_H + ROW_GAP + 14) + 8
    return Drawing(nodes, links, width, height)


# -- small helpers of the action pages ---------------------------------------------------------------

CHANNELS = {"invite": "Invite note", "message": "Message", "email": "Email", "comment": "Comment"}
STEP_NAMES = {"invite": "Invite note", "message": "First message", "follow_up": "Follow-up", "email": "Email"}


class _Step(Protocol):
    @property
    def lead_id(self) -> UUID: ...
    @property
    def step_id(self) -> str: ...


DraftT = TypeVar("DraftT", bound=_Step)


STEP_ORDER = ("like", "comment", "invite", "message", "follow_up", "email")
"""The order in which a workflow's steps reach a lead (its presets never run them in another order)."""


def review_order(drafts: Sequence[DraftT]) -> list[DraftT]:
    """A review queue as a reviewer reads it: each lead's drafts together, in the order the lead receives them
    (invite note, first message, follow-up), leads in the order the queue gave them. Messaging lists a lead's
    drafts in the order they were written, which runs in parallel: a follow-up often came before its invite."""
    first: dict[UUID, int] = {}
    for d in drafts:
        first.setdefault(d.lead_id, len(first))
    rank = {step: i for i, step in enumerate(STEP_ORDER)}
    return sorted(drafts, key=lambda d: (first[d.lead_id], rank.get(d.step_id, len(rank))))


def step_name(step_id: str, channel: str | None = None) -> str:
    """A workflow step's name in a sentence ('Follow-up', 'Invite note')."""
    return STEP_NAMES.get(step_id, CHANNELS.get(channel or "", step_id.replace("_", " ").capitalize()))


def unavailable_message(backend: str) -> str:
    """What a form says when a service it posts to did not answer (down, timing out, failing): the form stays as it
    was filled. It does not claim that nothing happened: a write whose answer was lost may have been done."""
    return f"leadstream's {backend} service did not answer. What you typed is kept: try again in a moment."


def return_url(public_url: str, path: str) -> str:
    """An absolute URL of a console page (where a hosted provider page sends the user back)."""
    return public_url.rstrip("/") + path


CAMPAIGN_NOTICES = {
    "paused": "Paused. Nothing is sent until you resume; the account leases were released.",
    "resumed": "Running again.",
    "accounts": "The campaign sends from the accounts you chose and runs again.",
}


def campaign_notice(done: str | None, launched: str | None) -> str | None:
    """The confirmation shown after an action on a campaign."""
    if launched:
        return "Launched. Leads are enrolled as they are ready; invites go out in the active window."
    return CAMPAIGN_NOTICES.get(done or "")


def builder_unavailable_message(backend: str) -> str:
    """What the campaign builder says when a service did not answer its review. Discovery (the audience's search)
    and messaging (the template) come before the campaign, so then no campaign exists; outreach's answer may have
    been lost after it made the pending campaign, and the builder's idempotency key makes a second review find
    that one: either way nothing was launched or sent."""
    made = "the campaign is not ready to launch" if backend == "outreach" else "no campaign was created"
    return (
        f"leadstream's {backend} service did not answer, so {made}; nothing was launched or sent. "
        "Everything you typed is kept: review the campaign again in a moment (it is made once, however often "
        "you try)."
    )


def launch_unavailable_message(backend: str) -> str:
    """What the launch form says when a service did not answer the launch: the same form, with the same
    idempotency key, launches once however often it is sent (a launch done before its answer was lost included)."""
    return (
        f"leadstream's {backend} service did not answer, so the launch is not confirmed. What you typed is kept: "
        "launch again in a moment (the campaign launches once, however often you try)."
    )
