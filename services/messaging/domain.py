"""Messaging's pure logic: steps, hooks, templates, limits, trimming, personalisation and composition. No I/O.

Time is passed in (``today``); randomness is a hash of a key (the lead, the step and the attempt), so
the same lead always gets the same wording and another lead gets a slightly different one.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal
from uuid import UUID

from leadstream_schemas import Channel, Hook, LeadProfileEnriched, Post, Strategy, Variant, Workflow

# -- limits ---------------------------------------------------------------------------------------

INVITE_NOTE_LIMIT = 200
INVITE_NOTE_VIDEO_LIMIT = 130
MESSAGE_LIMIT = 500
EMAIL_SUBJECT_LIMIT = 120
EMAIL_BODY_LIMIT = 2000
COMMENT_LIMIT = 300


@dataclass(frozen=True)
class Limit:
    """How long a channel's text (and subject) may be, and how to name that limit to a person."""

    text: int
    subject: int | None
    label: str


def limit_for(channel: Channel, *, video: bool) -> Limit:
    """The limits of a channel; an invite note carrying a personalised video link is shorter."""
    if channel == Channel.invite:
        if video:
            label = "invite note limit of 130 characters (a personalised video is attached)"
            return Limit(INVITE_NOTE_VIDEO_LIMIT, None, label)
        return Limit(INVITE_NOTE_LIMIT, None, "invite note limit of 200 characters")
    if channel == Channel.message:
        return Limit(MESSAGE_LIMIT, None, "message limit of 500 characters")
    if channel == Channel.email:
        return Limit(EMAIL_BODY_LIMIT, EMAIL_SUBJECT_LIMIT, "email body limit of 2000 characters")
    return Limit(COMMENT_LIMIT, None, "comment limit of 300 characters")


@dataclass(frozen=True)
class LimitViolation:
    """One field over its limit."""

    field: str
    length: int
    limit: int
    label: str

    def message(self) -> str:
        """A sentence naming the limit."""
        return f"{self.field} is {self.length} characters, over the {self.label}"


def check_limits(text: str, subject: str | None, limit: Limit) -> list[LimitViolation]:
    """Every field of a draft that is over its channel's limit (empty when the draft fits)."""
    out = []
    if len(text) > limit.text:
        out.append(LimitViolation("text", len(text), limit.text, limit.label))
    if subject is not None and limit.subject is not None and len(subject) > limit.subject:
        out.append(
            LimitViolation("subject", len(subject), limit.subject, f"email subject limit of {limit.subject} characters")
        )
    return out


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def trim_to_limit(text: str, limit: int) -> str:
    """Shorten ``text`` to at most ``limit`` characters, at the last sentence boundary that fits.

    Only when not even the first sentence fits is it cut at a word boundary, with an ellipsis.
    """
    text = text.strip()
    if len(text) <= limit:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text) if m.end() <= limit]
    if ends:
        return text[: ends[-1]].rstrip()
    cut = text[: max(limit - 1, 0)]
    if " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:-\u2014") + "\u2026"


# -- templates ------------------------------------------------------------------------------------

VARIABLES: tuple[str, ...] = ("first_name", "last_name", "city", "headline")
DEFAULT_FALLBACKS: dict[str, str] = {
    "first_name": "there",
    "last_name": "",
    "city": "your area",
    "headline": "your role",
}
TEMPLATE_CATEGORIES: tuple[str, ...] = (
    "professional_introduction",
    "hiring_manager",
    "business_opportunity",
    "candidate_outreach",
)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class TemplateError(ValueError):
    """A template that cannot be rendered; ``variable`` names the offending placeholder when there is one."""

    def __init__(self, message: str, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


@dataclass(frozen=True)
class Placeholder:
    """A ``{name}`` or ``{name|fallback}`` in a template."""

    name: str
    fallback: str | None


def parse_template(body: str) -> list[Placeholder]:
    """The placeholders of a template; raises :class:`TemplateError` for unknown variables or stray braces."""
    found = []
    for m in _PLACEHOLDER.finditer(body):
        inner = m.group(1)
        name, sep, fallback = inner.partition("|")
        name = name.strip()
        if name not in VARIABLES:
            allowed = ", ".join("{" + v + "}" for v in VARIABLES)
            shown = "{" + name + "}" if name else m.group(0)
            raise TemplateError(f"unknown template variable {shown}; allowed: {allowed}", variable=name or inner)
        found.append(Placeholder(name, fallback.strip() if sep else None))
    rest = _PLACEHOLDER.sub("", body)
    if "{" in rest or "}" in rest:
        raise TemplateError("unbalanced brace: write variables as {name} or {name|fallback}")
    return found


def render(body: str, values: Mapping[str, str | None]) -> str:
    """Fill a template's variables from the lead, using each placeholder's fallback (or the default one)."""
    parse_template(body)

    def fill(m: re.Match[str]) -> str:
        name, sep, fallback = m.group(1).partition("|")
        name = name.strip()
        value = (values.get(name) or "").strip()
        if value:
            return value
        return fallback.strip() if sep else DEFAULT_FALLBACKS[name]

    text = _PLACEHOLDER.sub(fill, body)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


@dataclass(frozen=True)
class Template:
    """A message template: a category, a body (and an email subject) with lead variables."""

    name: str
    category: str
    body: str
    subject: str | None = None
    template_id: str | None = None


BUILTIN_TEMPLATES: dict[str, Template] = {
    "professional_introduction": Template(
        "professional_introduction",
        "professional_introduction",
        "Always good to meet people in {city|your area} working as {headline|leaders in their field}.",
        "Quick intro, {first_name|there}",
    ),
    "hiring_manager": Template(
        "hiring_manager",
        "hiring_manager",
        "I work with hiring managers in {city|your area} who are growing their teams.",
        "Hiring in {city|your area}",
    ),
    "business_opportunity": Template(
        "business_opportunity",
        "business_opportunity",
        "I think there is a real fit with your work as {headline|a leader in your market}.",
        "An idea for {first_name|you}",
    ),
    "candidate_outreach": Template(
        "candidate_outreach",
        "candidate_outreach",
        "Your background as {headline|a professional in your field} stood out for a role we are filling.",
        "A role that fits your background",
    ),
}
DEFAULT_TEMPLATE = "professional_introduction"


# -- workflow steps -------------------------------------------------------------------------------

ReviewMode = Literal["strategy", "draft", "auto"]


@dataclass(frozen=True)
class StepSpec:
    """A workflow step that needs a text, and how its drafts are reviewed.

    ``review`` is "strategy" for invites, messages and emails (the campaign's strategy decides), and
    "draft" or "auto" for comments (the step's own mode decides).
    """

    step_id: str
    channel: Channel
    review: ReviewMode = "strategy"
    template: str | None = None
    subject: str | None = None
    body: str | None = None
    variants: tuple[Variant, ...] = ()
    variant: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for storage."""
        return {
            "step_id": self.step_id,
            "channel": self.channel.value,
            "review": self.review,
            "template": self.template,
            "subject": self.subject,
            "body": self.body,
            "variants": [v.model_dump(mode="json") for v in self.variants],
        }

    def for_variant(self, variant_id: str | None) -> StepSpec:
        """The step as the lead's A/B variant writes it (its template, an email's subject and body); the step
        itself when the lead has no variant of it (or one the step does not know)."""
        chosen = next((v for v in self.variants if v.id == variant_id), None)
        if chosen is None:
            return self
        return replace(
            self,
            template=chosen.template or self.template,
            subject=chosen.subject or self.subject,
            body=chosen.body or self.body,
            variant=chosen.id,
        )

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> StepSpec:
        """Read a stored step."""
        return cls(
            step_id=str(raw["step_id"]),
            channel=Channel(raw["channel"]),
            review=raw.get("review", "strategy"),
            template=raw.get("template"),
            subject=raw.get("subject"),
            body=raw.get("body"),
            variants=tuple(Variant.model_validate(v) for v in raw.get("variants") or ()),
        )


def message_steps(workflow: Workflow | None) -> list[StepSpec]:
    """The steps of a campaign that need a text, from its typed workflow (``leadstream_schemas.Workflow``).

    Outreach decided, when it validated the graph, which steps need a text (an invite only with a note) and
    their channel; unreachable steps never run and need none. Invites, messages and emails are reviewed as the
    campaign's strategy says; a comment as its own mode says (``draft``: in the Messaging Lab). No workflow
    (a v1 record without a step list): no text steps.
    """
    if workflow is None:
        return []
    steps: list[StepSpec] = []
    for step in workflow.text_steps():
        if step.channel is None:
            continue
        review: ReviewMode = "strategy"
        if step.action == "comment":
            review = "draft" if step.mode == "draft" else "auto"
        steps.append(
            StepSpec(
                step.id,
                step.channel,
                review=review,
                template=step.template,
                subject=step.subject,
                body=step.body,
                variants=tuple(step.variants),
            )
        )
    return steps


def needs_review(step: StepSpec, strategy: Strategy) -> bool:
    """Whether a step's draft waits in the Messaging Lab instead of being approved at once."""
    if step.review == "strategy":
        return strategy.review
    return step.review == "draft"


# -- hooks ----------------------------------------------------------------------------------------

HookKind = Literal["recent_post", "career_move", "company_milestone", "role_company"]


@dataclass(frozen=True)
class HookWindows:
    """How recent a fact must be to count as a hook."""

    post_days: int = 30
    career_days: int = 120
    milestone_days: int = 90


@dataclass(frozen=True)
class HookChoice:
    """The hook a message opens on, with the facts the writer needs and why it was chosen."""

    kind: HookKind
    detail: str
    reason: str
    fallback: bool = False
    topic: str | None = None
    excerpt: str | None = None
    post_kind: str | None = None
    post_url: str | None = None
    role: str | None = None
    company: str | None = None
    previous: str | None = None
    move: str | None = None
    milestone_kind: str | None = None
    age_days: int | None = None

    def to_event(self) -> Hook:
        """The hook as recorded in ``MessageGenerated``."""
        return Hook(kind=self.kind, detail=self.detail, reason=self.reason, fallback=self.fallback)


def _age(on: date | None, today: date) -> int | None:
    if on is None:
        return None
    days = (today - on).days
    return days if days >= 0 else None


def days_ago(days: int) -> str:
    """An age in a hook's words: "today", "1 day ago", "12 days ago"."""
    if days == 0:
        return "today"
    return f"{days} day ago" if days == 1 else f"{days} days ago"


def _topic_of(post: Post) -> str:
    if post.topic:
        return post.topic
    words = re.findall(r"[A-Za-z0-9'&-]+", post.text)
    return " ".join(words[:4]) or "your recent post"


def _excerpt(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rsplit(" ", 1)[0] + "\u2026"


_MILESTONE_PRIORITY = {"funding": 0, "hiring": 1, "expansion": 2, "news": 3, "launch": 4, "other": 5}


def choose_hook(profile: LeadProfileEnriched | None, today: date, windows: HookWindows) -> HookChoice:
    """Pick a genuine hook: a recent post, then a career move, then a company milestone, each within its window.

    When none qualifies the opener is built on the lead's role and company, flagged ``fallback`` with
    the reason (what was looked for and why nothing counted).
    """
    if profile is None:
        return HookChoice(
            "role_company",
            "no profile data",
            "profile enrichment failed, so no post, career move or company milestone is known; generic opener",
            fallback=True,
        )
    notes: list[str] = []

    posts = [(p, _age(p.posted_on, today)) for p in profile.recent_posts]
    fresh = sorted(((p, a) for p, a in posts if a is not None and a <= windows.post_days), key=lambda pa: pa[1])
    if fresh:
        post, age = fresh[0]
        topic = _topic_of(post)
        kind = post.kind
        return HookChoice(
            "recent_post",
            f"{kind} on '{topic}' ({days_ago(age)})",
            f"most recent {kind} within the {windows.post_days}-day window; a topic they chose to talk about publicly",
            topic=topic,
            excerpt=_excerpt(post.text),
            post_kind=kind,
            post_url=post.url,
            age_days=age,
        )
    dated = [a for _, a in posts if a is not None]
    notes.append(
        f"latest post is {min(dated)} days old (window {windows.post_days})" if dated else "no dated recent posts"
    )

    current = [p for p in profile.work_history if p.ended_on is None]
    current.sort(key=lambda p: p.started_on or date.min, reverse=True)
    if current:
        pos = current[0]
        started = _age(pos.started_on, today)
        if started is not None and started <= windows.career_days:
            earlier = [p for p in profile.work_history if p is not pos and p.ended_on is not None]
            earlier.sort(key=lambda p: p.ended_on or date.min, reverse=True)
            prev = earlier[0] if earlier else None
            if prev is not None and prev.company.strip().lower() == pos.company.strip().lower():
                move = "promotion"
                detail = f"new role as {pos.title} at {pos.company} ({days_ago(started)}, was {prev.title})"
            else:
                move = "company_change"
                was = f", was {prev.title} at {prev.company}" if prev else ""
                detail = f"joined {pos.company} as {pos.title} ({days_ago(started)}{was})"
            return HookChoice(
                "career_move",
                detail,
                f"{'role' if move == 'promotion' else 'company'} change within the {windows.career_days}-day window; "
                + "; ".join(notes),
                role=pos.title,
                company=pos.company,
                previous=(f"{prev.title} at {prev.company}" if prev else None),
                move=move,
                age_days=started,
            )
        notes.append(f"current role started {days_ago(started)}" if started is not None else "no dated current role")
    else:
        notes.append("no current position listed")

    milestones = [(m, _age(m.occurred_on, today)) for m in profile.company_milestones]
    recent = [(m, a) for m, a in milestones if a is not None and a <= windows.milestone_days]
    if recent:
        recent.sort(key=lambda ma: (_MILESTONE_PRIORITY.get(ma[0].kind, 9), ma[1]))
        milestone, m_age = recent[0]
        return HookChoice(
            "company_milestone",
            f"{milestone.kind}: {milestone.detail} ({days_ago(m_age)})",
            f"company {milestone.kind} within the {windows.milestone_days}-day window; " + "; ".join(notes),
            company=profile.company_name,
            excerpt=milestone.detail,
            milestone_kind=milestone.kind,
            age_days=m_age,
        )
    notes.append(f"no company milestone within {windows.milestone_days} days")

    role = profile.role or (current[0].title if current else None)
    company = profile.company_name or (current[0].company if current else None)
    if role and company:
        detail = f"{role} at {company}"
    else:
        detail = role or company or profile.headline or "their profile"
    return HookChoice(
        "role_company",
        detail,
        "no genuine hook found (" + "; ".join(notes) + "); opening on their role and company",
        fallback=True,
        role=role,
        company=company,
    )


def matched_post_hook(post: Post, language: str, matched: Sequence[str], today: date) -> HookChoice:
    """The hook of a lead found by a posts watch: the very post that matched (whatever else the profile holds),
    because it is why this lead is being written to now."""
    topic = post.topic or _topic_of(post)
    age = _age(post.posted_on, today)
    when = f" ({days_ago(age)})" if age is not None else ""
    said = ", ".join(repr(m) for m in matched[:3]) or "its keywords"
    return HookChoice(
        "recent_post",
        f"{post.kind} on '{topic}'{when}",
        f"the post that matched the watch's {language} language ({said}): the reason this lead is contacted now",
        topic=topic,
        excerpt=_excerpt(post.text),
        post_kind=post.kind,
        post_url=post.url,
        age_days=age,
    )


def comment_target(profile: LeadProfileEnriched | None) -> Post | None:
    """The post a comment step answers: the lead's first post (articles only when there is no post).

    The same choice outreach makes when it keeps the lead's post to like or comment on.
    """
    if profile is None or not profile.recent_posts:
        return None
    return next((p for p in profile.recent_posts if p.kind == "post"), profile.recent_posts[0])


def comment_hook(post: Post, today: date) -> HookChoice:
    """The hook of a comment: the post it answers (whatever its age: a comment needs a post, not news)."""
    topic = _topic_of(post)
    age = _age(post.posted_on, today)
    when = f" ({days_ago(age)})" if age is not None else ""
    return HookChoice(
        "recent_post",
        f"{post.kind} on '{topic}'{when}",
        "comment step: replying to the lead's most recent post",
        topic=topic,
        excerpt=_excerpt(post.text),
        post_kind=post.kind,
        post_url=post.url,
        age_days=age,
    )


def post_url_for(post: Post, lead_id: UUID) -> str:
    """Where a post lives: its URL, else the opaque activity reference outreach uses for URL-less posts."""
    if post.url:
        return post.url
    digits = uuid.uuid5(uuid.NAMESPACE_URL, f"{lead_id}|{post.text}").int % 10**19
    return f"urn:li:activity:{digits}"


def lead_variables(profile: LeadProfileEnriched | None) -> dict[str, str | None]:
    """The template variables of a lead (None where the profile lacks them)."""
    if profile is None:
        return dict.fromkeys(VARIABLES)
    parts = profile.full_name.split(" ", 1) if profile.full_name else []
    first = profile.first_name or (parts[0] if parts else None)
    last = profile.last_name or (parts[1] if len(parts) > 1 else None)
    headline = profile.headline
    if not headline and profile.role:
        headline = f"{profile.role} at {profile.company_name}" if profile.company_name else profile.role
    return {"first_name": first, "last_name": last, "city": profile.city, "headline": headline}


# -- personalisation ------------------------------------------------------------------------------


def pick(key: str, options: Sequence[str]) -> str:
    """A deterministic choice among ``options`` for ``key`` (same key, same choice)."""
    digest = hashlib.sha256(key.encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


PHRASES: tuple[tuple[str, ...], ...] = (
    ("I'd love to connect", "Would be great to connect", "Happy to connect"),
    ("Open to a quick chat?", "Up for a quick chat?", "Worth a short call?"),
    ("caught my eye", "stood out to me", "got my attention"),
    ("Congrats on", "Congratulations on", "Well done on"),
    ("Curious how", "Wondering how", "Keen to hear how"),
    ("I work with", "I spend my days with", "I help"),
    ("Thanks,", "Best,", "Cheers,"),
)


def personalise(text: str, key: str) -> str:
    """Rephrase a text slightly for one recipient: each known phrase becomes one of its variants.

    Deterministic for a key (a lead, a step and an attempt), so a retried handler writes the same note.
    """
    for group in PHRASES:
        for phrase in group:
            if phrase in text:
                text = text.replace(phrase, pick(f"{key}|{group[0]}", group))
                break
    return text


# -- composing (the simulated writer, and the fallback when a real model is unavailable) ----------


@dataclass(frozen=True)
class DraftRequest:
    """Everything a writer needs for one draft."""

    channel: Channel
    step_id: str
    limit: Limit
    hook: HookChoice
    strategy: Strategy
    template: Template
    variables: dict[str, str | None]
    variant_key: str
    attempt: int = 1
    feedback: str | None = None
    shorter: bool = False
    post: Post | None = None
    company: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def shortened(self, note: str) -> DraftRequest:
        """The same request, asking for a shorter text (after an answer over the limit)."""
        return replace(self, shorter=True, feedback=(self.feedback + "; " if self.feedback else "") + note)


def sentence(text: str) -> str:
    """``text`` as a sentence: stripped, capitalised, ending with punctuation."""
    text = " ".join(text.split()).strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _tone(req: DraftRequest) -> str:
    fb = (req.feedback or "").lower()
    for tone in ("formal", "casual", "friendly", "direct"):
        if tone in fb:
            return tone
    return (req.strategy.tone or "friendly").lower()


def salutation(tone: str, first_name: str | None, key: str) -> str:
    """The greeting for a tone (a fallback when the first name is unknown)."""
    name = (first_name or "").strip()
    if "formal" in tone:
        return f"Dear {name}," if name else "Hello,"
    if "casual" in tone:
        return f"{pick(key + '|sal', ('Hey', 'Hi'))} {name}," if name else "Hey there,"
    if "direct" in tone:
        return f"{name}," if name else "Hi,"
    return f"{pick(key + '|sal', ('Hi', 'Hello'))} {name}," if name else "Hi there,"


def hook_sentence(hook: HookChoice, key: str) -> str:
    """The opening line for a hook, varied per lead."""
    k = key + "|hook"
    if hook.kind == "recent_post" and hook.topic:
        noun = "article" if hook.post_kind == "article" else "post"
        return pick(
            k,
            (
                f"Your recent {noun} on {hook.topic} caught my eye.",
                f"Enjoyed your {noun} about {hook.topic}.",
                f"Saw your take on {hook.topic} in your latest {noun}.",
            ),
        )
    if hook.kind == "career_move" and hook.company:
        if hook.move == "promotion":
            return pick(k, (f"Congrats on stepping up to {hook.role}!", f"Congrats on the new role as {hook.role}!"))
        return pick(
            k,
            (
                f"Congrats on joining {hook.company} as {hook.role}!",
                f"Congrats on the move to {hook.company}!",
                f"Saw you recently joined {hook.company} - congrats!",
            ),
        )
    if hook.kind == "company_milestone" and hook.excerpt:
        detail = hook.excerpt.rstrip(".")
        mk = hook.milestone_kind
        if mk == "funding":
            return pick(k, (f"Saw that {detail} - congrats!", f"Congrats on the news: {detail}!"))
        if mk == "hiring":
            return pick(k, (f"Noticed that {detail}.", f"Saw that {detail} - exciting growth."))
        if mk == "expansion":
            return pick(k, (f"Saw that {detail} - congrats on the expansion!", f"Noticed that {detail}."))
        return pick(k, (f"Saw that {detail}.", f"Read that {detail} - congrats!"))
    if hook.role and hook.company:
        return pick(
            k,
            (
                f"I see you work as {hook.role} at {hook.company}.",
                f"Your work as {hook.role} at {hook.company} stood out.",
                f"Came across your profile as {hook.role} at {hook.company}.",
            ),
        )
    return "Came across your profile and wanted to reach out."


def _default_cta(channel: Channel, key: str) -> str:
    if channel == Channel.invite:
        return pick(key + "|cta", ("I'd love to connect.", "Open to connecting?"))
    return pick(key + "|cta", ("Open to a quick chat?", "Would a short call next week make sense?"))


def _greedy(parts: Sequence[tuple[str, bool]], limit: int, sep: str) -> str:
    """Join parts in order, dropping optional ones (False) that would not leave room for the required ones."""
    parts = [(t, r) for t, r in parts if t]
    chosen: list[str] = []
    for i, (text, required) in enumerate(parts):
        later_required = [t for t, r in parts[i + 1 :] if r]
        if required or len(sep.join([*chosen, text, *later_required])) <= limit:
            chosen.append(text)
    return sep.join(chosen)


_GREETING = re.compile(r"^\s*(hi|hello|hey|dear|good (morning|afternoon))\b", re.IGNORECASE)


def compose(req: DraftRequest) -> tuple[str, str | None]:
    """Write a draft from the hook, the strategy and the template: the simulated model's answer.

    Short channels keep the greeting, the hook and the call to action and drop the rest when it
    would not fit; a ``shorter`` request drops the optional parts altogether.
    """
    key = f"{req.variant_key}|{req.attempt}"
    tone = _tone(req)
    body = render(req.template.body, req.variables) if req.template.body else ""
    has_greeting = bool(_GREETING.match(body))
    sal = "" if has_greeting else salutation(tone, req.variables.get("first_name"), key)
    opener = hook_sentence(req.hook, key)
    offer = sentence(req.strategy.offer) if req.strategy.offer else ""
    proof = sentence(req.strategy.proof) if req.strategy.proof else ""
    cta = sentence(req.strategy.call_to_action) if req.strategy.call_to_action else _default_cta(req.channel, key)
    optional = not req.shorter

    if req.channel == Channel.comment:
        topic = req.hook.topic or (req.post.topic if req.post and req.post.topic else "this")
        text = pick(
            key + "|comment",
            (
                f"Great point on {topic}. The practical detail is what makes this useful.",
                f"Really like how you framed {topic} - it matches what we keep seeing.",
                f"Thanks for sharing this on {topic}. Curious how it holds up a year from now?",
            ),
        )
        return text, None

    if req.channel == Channel.invite:
        first = f"{sal} {opener}".strip()
        text = _greedy([(first, True), (body, False), (offer, False), (cta, True)], req.limit.text, " ")
        if req.shorter and len(text) > req.limit.text:
            text = first
        return text, None

    if req.channel == Channel.message:
        lines = [
            (f"{sal}" if sal else "", True),
            (opener, True),
            (body, optional),
            (offer, optional),
            (proof, optional),
            (cta, True),
        ]
        # The greeting gets its own paragraph: one character more than the space it replaces.
        text = _greedy(lines, req.limit.text - (1 if sal else 0), " ")
        if sal:
            text = text.replace(f"{sal} ", f"{sal}\n\n", 1)
        return text, None

    # email
    closing = {"formal": "Kind regards,", "casual": "Cheers,"}.get(tone, "Thanks,")
    paragraphs = [sal, " ".join(p for p in (opener, body) if p), " ".join(p for p in (offer, proof) if p), cta, closing]
    text = "\n\n".join(p for p in paragraphs if p)
    subject_tpl = req.template.subject
    if subject_tpl:
        subject = render(subject_tpl, req.variables)
    elif req.hook.kind == "recent_post" and req.hook.topic:
        subject = f"Your post on {req.hook.topic}"
    elif req.hook.kind == "career_move" and req.hook.company:
        subject = f"Congrats on {req.hook.company}"
    elif req.hook.company:
        subject = f"An idea for {req.hook.company}"
    else:
        subject = "Quick question"
    return text, subject


def finish(text: str, subject: str | None, limit: Limit) -> tuple[str, str | None, bool]:
    """Make a text fit its limits by trimming at a sentence boundary; says whether it had to trim."""
    trimmed_text = trim_to_limit(text, limit.text)
    trimmed_subject = subject
    if subject is not None and limit.subject is not None:
        trimmed_subject = trim_to_limit(subject, limit.subject)
    return trimmed_text, trimmed_subject, (trimmed_text != text.strip() or trimmed_subject != subject)
