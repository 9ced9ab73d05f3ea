"""The campaign builder's pure logic: its form's fields and defaults, the API requests they become, and which
form field (and builder step) each API error names. No I/O: :mod:`services.console.commands` makes the calls.

The form is one ``<form>`` whose steps the page shows one at a time (audience, workflow, messages,
delivery, video, accounts); every value travels with every submit, so an error re-renders the form
exactly as it was filled, with the message next to the field the API named.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .domain import Drawing, draw

if TYPE_CHECKING:
    from .models import Graph, OutreachAccount

STEPS: tuple[tuple[str, str], ...] = (
    ("audience", "Audience"),
    ("workflow", "Workflow"),
    ("messages", "Messages"),
    ("delivery", "Delivery"),
    ("video", "Video"),
    ("accounts", "Accounts"),
)
AUDIENCE_TYPES: tuple[tuple[str, str, str], ...] = (
    ("signals", "Signal discovery", "Describe who to find; leadstream watches for buying signals."),
    ("linkedin_url", "LinkedIn search URL", "One fixed LinkedIn people search you already trust."),
    ("posts", "Recent posts", "People posting intent or pain language on LinkedIn or the web."),
    ("source_group", "A lead list", "A list you already have: a saved search, an import or manual adds."),
    ("csv", "CSV import", "Upload a file of LinkedIn profile URLs or emails."),
)
SIGNAL_TYPES: tuple[tuple[str, str], ...] = (
    ("hiring_plans", "Hiring plans"),
    ("open_jobs", "Open jobs"),
    ("recent_hires", "Recent hires"),
    ("tech_stack", "Tech stack"),
    ("website_signals", "Website changes"),
    ("compliance", "Compliance"),
    ("people", "People moves"),
    ("news", "In the news"),
    ("expansion", "Expansion"),
    ("custom", "Custom signal"),
)
TEMPLATES: tuple[tuple[str, str, str], ...] = (
    (
        "professional_introduction",
        "Professional introduction",
        "Always good to meet people in {city|your area} working as {headline|leaders in their field}.",
    ),
    (
        "hiring_manager",
        "Hiring manager",
        "I work with hiring managers in {city|your area} who are growing their teams.",
    ),
    (
        "business_opportunity",
        "Business opportunity",
        "I think there is a real fit with your work as {headline|a leader in your market}.",
    ),
    (
        "candidate_outreach",
        "Candidate outreach",
        "Your background as {headline|a professional in your field} stood out for a role we are filling.",
    ),
)
TEMPLATE_BODIES = {name: body for name, _, body in TEMPLATES}
VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("first_name", "First name", "there"),
    ("last_name", "Last name", ""),
    ("city", "City", "your area"),
    ("headline", "Headline", "your role"),
)
PACES: tuple[tuple[str, str, str], ...] = (
    ("conservative", "Conservative", "15 invites a week: for free LinkedIn accounts"),
    ("recommended", "Recommended", "20 invites a day per account"),
    ("high_volume", "High volume", "50 invites a day: for warmed-up premium accounts"),
    ("manual", "Manual", "Choose a daily invite limit between 10 and 75"),
)
DAYS: tuple[tuple[str, str], ...] = (
    ("mon", "Mon"),
    ("tue", "Tue"),
    ("wed", "Wed"),
    ("thu", "Thu"),
    ("fri", "Fri"),
    ("sat", "Sat"),
    ("sun", "Sun"),
)
TIMEZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Madrid",
    "Europe/Amsterdam",
    "Europe/Stockholm",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Asia/Singapore",
    "Australia/Sydney",
)
VIDEO_FIELDS = tuple((name, label) for name, label, _ in VARIABLES)
SEGMENTS = 3
VIDEO_INPUTS: tuple[str, ...] = (
    "video",
    "video_template_id",
    *(f"segment_{part}_{i}" for i in range(SEGMENTS) for part in ("name", "field", "fallback")),
)
"""The video step's inputs (partials/video_step.html): outreach judges them as one value, ``video``, so editing any
of them clears its message (macros.err's ``inputs``)."""

MULTI = ("signal_types", "days", "account_ids", "without")
"""Fields whose every value counts (checkboxes)."""
CHECKBOXES = ("invite_note", "personalise", "review", "email_fallback", "video")
"""Single checkboxes: absent from a submitted form means unticked."""


def defaults() -> dict[str, Any]:
    """A new builder's values (the current default is signal discovery, as the product starts)."""
    return {
        "name": "",
        "audience_type": "signals",
        "prompt": "",
        "signal_types": [],
        "custom_signal": "",
        "location": "",
        "lookback_days": "14",
        "target_count": "30",
        "search_url": "",
        "keywords": "",
        "post_source": "posts",
        "post_lookback_days": "14",
        "source_group_id": "",
        "csv_group_id": "",
        "preset": "standard_connect",
        "spacing_minutes": "",
        "invite_wait_hours": "",
        "comment_mode": "draft",
        "without": [],
        "template": "professional_introduction",
        "template_body": TEMPLATE_BODIES["professional_introduction"],
        "invite_note": "on",
        "personalise": "on",
        "review": "on",
        "offer": "",
        "proof": "",
        "tone": "friendly",
        "call_to_action": "",
        "pace": "recommended",
        "daily_limit": "30",
        "active_days": "weekdays",
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start_hour": "9",
        "end_hour": "17",
        "timezone": "",
        "email_fallback": "",
        "sender_email": "",
        "email_subject": "",
        "email_body": "",
        "video": "",
        "video_template_id": "vt-intro",
        **{f"segment_name_{i}": n for i, n in enumerate(("greeting", "location", "role"))},
        **{f"segment_field_{i}": f for i, f in enumerate(("first_name", "city", "headline"))},
        **{f"segment_fallback_{i}": f for i, f in enumerate(("there", "your city", "your role"))},
        "account_ids": [],
    }


def preselected_accounts(accounts: Iterable[OutreachAccount]) -> list[str]:
    """The accounts a new campaign starts with ticked: a workspace's only LinkedIn account when it can send (a
    campaign needs at least one, and a new user with one account otherwise met "choose an account" first);
    none when there are several to choose from, or the only one is inactive."""
    linkedin = list(accounts)
    if len(linkedin) == 1 and linkedin[0].healthy:
        return [str(linkedin[0].account_id)]
    return []


def values_from(form: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The builder's values from a submitted form (multi-item pairs): checkboxes as lists, the rest as strings,
    every string bounded. A checkbox left unticked is absent from a form, so it reads as off; a field the page
    did not show (a step locked by the plan) keeps its default."""
    base = defaults()
    out: dict[str, Any] = {k: ([] if k in MULTI else "" if k in CHECKBOXES else v) for k, v in base.items()}
    for key, raw in form:
        if key not in base or not isinstance(raw, str):
            continue
        value = raw.replace("\x00", "")[:4000]
        if key in MULTI:
            if value and len(out[key]) < 50:
                out[key].append(value[:100])
        else:
            out[key] = value
    return out


def on(values: Mapping[str, Any], key: str) -> bool:
    """Whether a checkbox is ticked."""
    return bool(values.get(key))


def _int_or_raw(value: str) -> int | str | None:
    """A number as a number, empty as None, anything else as it is (the API then names it in its 422)."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text


# -- requests -----------------------------------------------------------------------------------------


def search_request(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The saved search an audience of a new search makes (None for a list or a CSV import)."""
    kind = values.get("audience_type")
    name = (values.get("name") or "").strip() or "Campaign audience"
    target = _int_or_raw(values.get("target_count", ""))
    criteria: dict[str, Any]
    if kind == "signals":
        criteria = {
            "prompt": values.get("prompt", ""),
            "signal_types": list(values.get("signal_types") or []),
            "lookback_days": _int_or_raw(values.get("lookback_days", "")) or 14,
        }
        if (values.get("location") or "").strip():
            criteria["location"] = values["location"]
        if (values.get("custom_signal") or "").strip():
            criteria["custom_signal"] = values["custom_signal"]
    elif kind == "linkedin_url":
        criteria = {"url": values.get("search_url", "")}
    elif kind == "posts":
        keywords = [k.strip() for k in (values.get("keywords") or "").split(",") if k.strip()]
        criteria = {
            "keywords": keywords,
            "source": values.get("post_source") or "posts",
            "lookback_days": _int_or_raw(values.get("post_lookback_days", "")) or 14,
        }
    else:
        return None
    search_kind = "signals" if kind == "signals" else kind
    return {"name": f"{name}: audience"[:200], "kind": search_kind, "criteria": criteria, "target_count": target}


def workflow_spec(values: Mapping[str, Any]) -> dict[str, Any]:
    """The workflow: the preset and the options set on it (outreach validates and draws it)."""
    spec: dict[str, Any] = {"preset": values.get("preset") or "standard_connect"}
    for key in ("spacing_minutes", "invite_wait_hours"):
        number = _int_or_raw(values.get(key, ""))
        if number is not None:
            spec[key] = number
    if values.get("comment_mode") in ("auto", "draft"):
        spec["comment_mode"] = values["comment_mode"]
    if values.get("without"):
        spec["without"] = list(values["without"])
    return spec


def workflow_check(values: Mapping[str, Any]) -> dict[str, Any]:
    """The body of outreach's ``/v1/workflows/validate`` for the builder's values."""
    return {
        "workflow": workflow_spec(values),
        "invite_note": on(values, "invite_note"),
        "email_fallback": on(values, "email_fallback"),
    }


def custom_template(values: Mapping[str, Any]) -> str | None:
    """The template body when the user changed the chosen template's (it is then saved as a template)."""
    body = (values.get("template_body") or "").strip()
    builtin = TEMPLATE_BODIES.get(values.get("template") or "", "")
    return body if body and body != builtin.strip() else None


def template_name(values: Mapping[str, Any], body: str) -> str:
    """A stable name for a campaign's own template (the same body makes the same name: a retry reuses it)."""
    digest = hashlib.sha256(body.encode()).hexdigest()[:8]
    base = (values.get("name") or "").strip()[:60] or "Campaign"
    return f"{base} · {digest}"


def strategy(values: Mapping[str, Any], template_ref: str | None) -> dict[str, Any]:
    """The campaign's strategy profile."""
    return {
        "offer": values.get("offer", ""),
        "proof": values.get("proof", ""),
        "tone": values.get("tone") or "friendly",
        "call_to_action": values.get("call_to_action", ""),
        "template": template_ref or values.get("template") or None,
        "review": on(values, "review"),
        "invite_note": on(values, "invite_note"),
        "personalise": on(values, "personalise"),
    }


def delivery(values: Mapping[str, Any], default_tz: str) -> dict[str, Any]:
    """Pace, days, hours, time zone and the email fallback."""
    out: dict[str, Any] = {
        "pace": values.get("pace") or "recommended",
        "timezone": values.get("timezone") or default_tz,
    }
    for key, default in (("start_hour", 9), ("end_hour", 17)):
        hour = _int_or_raw(values.get(key, ""))
        out[key] = default if hour is None else hour
    if out["pace"] == "manual":
        out["daily_limit"] = _int_or_raw(values.get("daily_limit", ""))
    days = values.get("active_days") or "weekdays"
    out["active_days"] = list(values.get("days") or []) if days == "custom" else days
    if on(values, "email_fallback"):
        out["email_fallback"] = {
            "sender_email": values.get("sender_email", ""),
            "subject": values.get("email_subject", ""),
            "body": values.get("email_body", ""),
        }
    return out


def video(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The video template with each segment mapped to a lead field and its fallback (None: no video)."""
    if not on(values, "video"):
        return None
    segments = []
    for i in range(SEGMENTS):
        name = (values.get(f"segment_name_{i}") or "").strip()
        if not name:
            continue
        segments.append(
            {
                "name": name[:100],
                "field": values.get(f"segment_field_{i}") or "first_name",
                "fallback": values.get(f"segment_fallback_{i}", ""),
            }
        )
    return {"template_id": values.get("video_template_id") or "vt-intro", "segments": segments}


def campaign_request(
    values: Mapping[str, Any], audience: dict[str, str], template_ref: str | None, default_tz: str
) -> dict[str, Any]:
    """Outreach's ``POST /v1/campaigns`` body."""
    body: dict[str, Any] = {
        "name": values.get("name", ""),
        "audience": audience,
        "workflow": workflow_spec(values),
        "strategy": strategy(values, template_ref),
        "delivery": delivery(values, default_tz),
        "account_ids": list(values.get("account_ids") or []),
    }
    chosen = video(values)
    if chosen is not None:
        body["video"] = chosen
    return body


def preview_request(
    values: Mapping[str, Any], steps: list[dict[str, Any]], leads: list[dict[str, Any]]
) -> dict[str, Any]:
    """Messaging's ``POST /v1/previews`` body: what the campaign would write, for a few sample leads."""
    body: dict[str, Any] = {
        "strategy": strategy(values, None),
        "steps": steps,
        "video": on(values, "video"),
        "leads": leads[:5],
    }
    custom = custom_template(values)
    if custom is not None:
        body["template"] = {"body": custom}
    if on(values, "email_fallback"):
        body["email_fallback"] = {"subject": values.get("email_subject", ""), "body": values.get("email_body", "")}
    return body


# -- errors -> fields ---------------------------------------------------------------------------------

# (API, field path prefix) -> the form field that shows it; the longest prefix wins.
_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "discovery": (
        ("criteria.prompt", "prompt"),
        ("criteria.signal_types", "signal_types"),
        ("criteria.custom_signal", "custom_signal"),
        ("criteria.location", "location"),
        ("criteria.lookback_days", "lookback_days"),
        ("criteria.url", "search_url"),
        ("criteria.keywords", "keywords"),
        ("criteria.source", "post_source"),
        ("criteria", "prompt"),
        ("target_count", "target_count"),
        ("name", "name"),
        ("Idempotency-Key", "form"),
    ),
    "messaging": (
        ("body", "template_body"),
        ("template.body", "template_body"),
        ("name", "name"),
        ("email_fallback.subject", "email_subject"),
        ("email_fallback.body", "email_body"),
        ("strategy.template", "template"),
        ("strategy", "offer"),
    ),
    "outreach": (
        ("name", "name"),
        ("audience", "audience_type"),
        ("workflow.spacing_minutes", "spacing_minutes"),
        ("workflow.invite_wait_hours", "invite_wait_hours"),
        ("workflow.comment_mode", "comment_mode"),
        ("workflow.without", "without"),
        ("workflow", "preset"),
        ("strategy.template", "template"),
        ("strategy.offer", "offer"),
        ("strategy.proof", "proof"),
        ("strategy.tone", "tone"),
        ("strategy.call_to_action", "call_to_action"),
        ("strategy", "offer"),
        ("delivery.email_fallback.sender_email", "sender_email"),
        ("delivery.email_fallback.subject", "email_subject"),
        ("delivery.email_fallback.body", "email_body"),
        ("delivery.email_fallback", "email_fallback"),
        ("delivery.daily_limit", "daily_limit"),
        ("delivery.active_days", "active_days"),
        ("delivery.start_hour", "start_hour"),
        ("delivery.end_hour", "end_hour"),
        ("delivery.timezone", "timezone"),
        ("delivery.pace", "pace"),
        ("delivery", "pace"),
        ("video", "video"),
        ("account_ids", "account_ids"),
        ("daily_limit", "daily_limit"),
        ("confirm_email_fallback", "confirm_email_fallback"),
        ("Idempotency-Key", "form"),
    ),
}
STEP_OF: dict[str, str] = {
    **dict.fromkeys(
        (
            "audience_type",
            "prompt",
            "signal_types",
            "custom_signal",
            "location",
            "lookback_days",
            "target_count",
            "search_url",
            "keywords",
            "post_source",
            "post_lookback_days",
            "source_group_id",
            "csv_group_id",
        ),
        "audience",
    ),
    **dict.fromkeys(("preset", "spacing_minutes", "invite_wait_hours", "comment_mode", "without"), "workflow"),
    **dict.fromkeys(
        (
            "template",
            "template_body",
            "invite_note",
            "personalise",
            "review",
            "offer",
            "proof",
            "tone",
            "call_to_action",
        ),
        "messages",
    ),
    **dict.fromkeys(
        (
            "pace",
            "daily_limit",
            "active_days",
            "days",
            "start_hour",
            "end_hour",
            "timezone",
            "email_fallback",
            "sender_email",
            "email_subject",
            "email_body",
        ),
        "delivery",
    ),
    "video": "video",
    "account_ids": "accounts",
}
"""The builder step that shows each field inside the six steps (its message is drawn there, its tab marked for it)."""
STEP_KEYS: frozenset[str] = frozenset(key for key, _ in STEPS)


def form_field(api: str, path: str | None, message: str = "") -> str:
    """The form field showing an error ``api`` gave for ``path`` (the form as a whole when none fits).

    A check across several fields of one object (``delivery``: "end_hour (9) must be after start_hour (18)")
    names the object, not a field; when ``message`` names one of its fields, the first one named shows it (the
    Stop at field, not the pace above it). Only snake_case names count: a plain word ("source", "pace") in a
    sentence is prose, not a field."""
    if not path:
        return "form"
    fields = _FIELDS.get(api, ())
    named: list[tuple[int, str]] = []
    for prefix, name in fields:
        child = prefix[len(path) + 1 :] if prefix.startswith(path + ".") else ""
        mention = re.search(rf"\b{re.escape(child)}\b", message) if "_" in child and "." not in child else None
        if mention:
            named.append((mention.start(), name))
    if named:
        return min(named)[1]
    best = ""
    found = "form"
    for prefix, name in fields:
        if (path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")) and len(prefix) > len(
            best
        ):
            best, found = prefix, name
    return found


# Errors shown above the six steps (the campaign name, the form as a whole), seen from every step: no step's tab is
# marked for them and none is opened for them (they are in no step of STEP_OF).
OUTSIDE_STEPS: frozenset[str] = frozenset({"name", "form"})


def error_steps(messages: Mapping[str, str]) -> frozenset[str]:
    """The builder steps that show an error (each one's tab in the stepper is marked): a step closed while the
    user is on another one says so at its tab, not only the step opened for the first error."""
    return frozenset(STEP_OF[name] for name in messages if name in STEP_OF)


# The fields whose values the workflow check judges (outreach's /v1/workflows/validate: the workflow's options); htmx
# asks it again at every change of the workflow step and redraws the graph's box (partials/workflow_graph.html).
CHECKED_FIELDS: tuple[str, ...] = ("preset", "spacing_minutes", "invite_wait_hours", "comment_mode", "without")
# The one rule of where a message is shown: at the field it names, where the user edits that value. Of the checked
# fields the box draws only "Leave steps out" (without), so only its message is in the box; the others are edited
# above the box and their messages are at them: the redrawn box sends those again out of band into each field's
# slot (FIELD_SLOTS, partials/workflow_check.html), so a check's message replaces or clears the one shown there.
GRAPH_BOX_FIELDS: frozenset[str] = frozenset({"without"})
FIELD_SLOTS: tuple[str, ...] = tuple(name for name in CHECKED_FIELDS if name not in GRAPH_BOX_FIELDS)


def check_errors(messages: Mapping[str, str]) -> dict[str, str]:
    """The workflow check's messages by the field that shows them. The check judges the workflow alone, so a message
    that names no field of the builder (its own path outside the workflow's options) is about the workflow as a
    whole, which the preset's field says (outreach's "workflow" path lands there too)."""
    out: dict[str, str] = {}
    for name, message in messages.items():
        out.setdefault(name if name in CHECKED_FIELDS else "preset", message)
    return out


def graph_box_errors(checked: Mapping[str, str], page: Mapping[str, str]) -> dict[str, str]:
    """The messages the workflow graph's box shows on the builder page: those of the fields it draws, the page's
    (a review outreach refused at ``without`` while the check passed, or could not be asked, is in ``page`` only)
    else the check's. Every other message is shown at its own field, once."""
    box = {name: checked[name] for name in GRAPH_BOX_FIELDS if name in checked}
    box.update({name: page[name] for name in GRAPH_BOX_FIELDS if name in page})
    return box


def open_step(errors: FieldErrors, current: str | None) -> str:
    """The step the builder opens: the first field error's step; else (no error, or only above the steps: the
    name, the form's own message) the one the user was on (``current``, what the form or the link said), so a
    message seen from every step moves no one; else the audience."""
    return errors.step or (current if current in STEP_KEYS else None) or "audience"


@dataclass
class FieldErrors:
    """Errors by form field, and the builder step to open (the first one with an error)."""

    messages: dict[str, str] = field(default_factory=dict)
    upgrade: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        """Keep the first message per field."""
        self.messages.setdefault(name, message)

    @property
    def step(self) -> str | None:
        """The builder step of the first field with an error inside the steps (None when there is none: a message
        above the steps, :data:`OUTSIDE_STEPS`, is seen from every step and opens none)."""
        return next((STEP_OF[name] for name in self.messages if name in STEP_OF), None)

    def __bool__(self) -> bool:
        return bool(self.messages)


def errors_of(api: str, errors: list[tuple[str, str]], detail: str, field_path: str | None) -> FieldErrors:
    """A backend's 4xx as messages next to the form fields it names (its detail on the form when none)."""
    out = FieldErrors()
    for path, message in errors or [(field_path or "", detail)]:
        out.add(form_field(api, path, message or detail), message or detail)
    if not out:
        out.add("form", detail)
    return out


def search_key(builder_key: str, request: Mapping[str, Any]) -> str:
    """The Idempotency-Key of a builder's search: the same audience resubmitted starts no second search; a
    changed one is a new search."""
    digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{builder_key}:search:{digest}"[:200]


def drawing_of(graph: Graph) -> Drawing:
    """The layout of a workflow as outreach checked it (:func:`.domain.draw` over its steps and edges, read as
    outreach's API writes them: an edge's ends are ``from`` and ``to``)."""
    return draw(
        [s.model_dump() for s in graph.steps],
        [e.model_dump(by_alias=True) for e in graph.edges],
        graph.start,
        graph.unreachable,
    )
