"""Messaging's pure logic: hooks, templates, limits, trimming, steps and deterministic personalisation."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest
from leadstream_schemas import Channel, Edge, LeadProfileEnriched, Step, Strategy, Workflow

from services.messaging import domain as d
from services.outreach.domain.workflow import resolve_workflow

TODAY = date(2026, 1, 5)
WINDOWS = d.HookWindows(post_days=30, career_days=120, milestone_days=90)


def profile(**overrides: Any) -> LeadProfileEnriched:
    base: dict[str, Any] = {
        "lead_id": uuid.uuid4(),
        "full_name": "Ada Adler",
        "first_name": "Ada",
        "last_name": "Adler",
        "headline": "Head of Sales at Northwind Labs",
        "role": "Head of Sales",
        "company_name": "Northwind Labs",
        "city": "Berlin",
        "recent_posts": [
            {
                "text": "We rebuilt our outbound motion and pipeline doubled.",
                "topic": "outbound pipeline",
                "posted_on": "2025-12-30",
                "url": "https://linkedin.example/posts/1",
            },
        ],
        "work_history": [
            {"title": "Head of Sales", "company": "Northwind Labs", "started_on": "2025-11-20"},
            {"title": "Account Executive", "company": "Bluepeak", "started_on": "2019-01-01", "ended_on": "2025-11-19"},
        ],
        "company_milestones": [
            {"kind": "funding", "detail": "Northwind Labs raised a Series B of $30M", "occurred_on": "2025-12-01"},
        ],
    }
    base.update(overrides)
    return LeadProfileEnriched.model_validate(base)


STRATEGY = Strategy(
    offer="We help sales teams book more meetings with researched first lines",
    proof="Acme doubled its reply rate in six weeks",
    call_to_action="Open to a quick chat?",
)


def request(
    p: LeadProfileEnriched | None,
    channel: Channel,
    *,
    video: bool = False,
    key: str = "k",
    strategy: Strategy = STRATEGY,
    template: str = "professional_introduction",
) -> d.DraftRequest:
    hook = d.choose_hook(p, TODAY, WINDOWS)
    return d.DraftRequest(
        channel=channel,
        step_id=channel.value,
        limit=d.limit_for(channel, video=video),
        hook=hook,
        strategy=strategy,
        template=d.BUILTIN_TEMPLATES[template],
        variables=d.lead_variables(p),
        variant_key=key,
    )


# -- hooks ----------------------------------------------------------------------------------------


def test_recent_post_is_the_preferred_hook_and_names_its_topic() -> None:
    hook = d.choose_hook(profile(), TODAY, WINDOWS)
    assert hook.kind == "recent_post"
    assert not hook.fallback
    assert "outbound pipeline" in hook.detail and "6 days ago" in hook.detail
    assert "30-day window" in hook.reason


def test_post_outside_the_window_is_not_a_hook_and_a_career_move_is_used() -> None:
    old_post = [{"text": "Old thoughts", "topic": "old topic", "posted_on": "2025-10-01"}]
    hook = d.choose_hook(profile(recent_posts=old_post), TODAY, WINDOWS)
    assert hook.kind == "career_move"
    assert hook.move == "company_change"
    assert "joined Northwind Labs as Head of Sales" in hook.detail
    assert "was Account Executive at Bluepeak" in hook.detail
    assert "latest post is 96 days old (window 30)" in hook.reason


def test_promotion_inside_the_same_company_is_a_role_change() -> None:
    history = [
        {"title": "VP Sales", "company": "Northwind Labs", "started_on": "2025-12-01"},
        {"title": "Head of Sales", "company": "Northwind Labs", "started_on": "2022-01-01", "ended_on": "2025-11-30"},
    ]
    hook = d.choose_hook(profile(recent_posts=[], work_history=history), TODAY, WINDOWS)
    assert hook.kind == "career_move" and hook.move == "promotion"
    assert hook.reason.startswith("role change")


def test_company_milestone_when_no_post_or_recent_move() -> None:
    history = [{"title": "Head of Sales", "company": "Northwind Labs", "started_on": "2021-01-01"}]
    hook = d.choose_hook(profile(recent_posts=[], work_history=history), TODAY, WINDOWS)
    assert hook.kind == "company_milestone"
    assert hook.milestone_kind == "funding"
    assert "Series B" in hook.detail
    assert "current role started" in hook.reason


def test_fallback_opener_on_role_and_company_says_why() -> None:
    history = [{"title": "Head of Sales", "company": "Northwind Labs", "started_on": "2021-01-01"}]
    old = [{"kind": "news", "detail": "old news", "occurred_on": "2024-01-01"}]
    hook = d.choose_hook(profile(recent_posts=[], work_history=history, company_milestones=old), TODAY, WINDOWS)
    assert hook.kind == "role_company"
    assert hook.fallback is True
    assert hook.detail == "Head of Sales at Northwind Labs"
    assert "no genuine hook found" in hook.reason and "no company milestone within 90 days" in hook.reason
    event_hook = hook.to_event()
    assert event_hook.fallback and event_hook.kind == "role_company"


def test_no_profile_is_a_flagged_fallback() -> None:
    hook = d.choose_hook(None, TODAY, WINDOWS)
    assert hook.fallback and hook.kind == "role_company" and "enrichment failed" in hook.reason


def test_future_dated_post_is_ignored() -> None:
    future = [{"text": "Tomorrow", "topic": "future", "posted_on": "2026-02-01"}]
    assert d.choose_hook(profile(recent_posts=future), TODAY, WINDOWS).kind == "career_move"


# -- templates ------------------------------------------------------------------------------------


def test_template_variables_render_with_fallbacks() -> None:
    body = "Hi {first_name}, how is {city|your city}? Saw you are {headline}. {last_name|}"
    assert d.render(body, {"first_name": "Ada", "city": None, "headline": "CTO at X", "last_name": None}) == (
        "Hi Ada, how is your city? Saw you are CTO at X."
    )
    assert d.render("{city}", {}) == "your area"


@pytest.mark.parametrize("body, variable", [("Hi {company}", "company"), ("{ first_name }, {title|x}", "title")])
def test_unknown_template_variable_is_named(body: str, variable: str) -> None:
    with pytest.raises(d.TemplateError) as err:
        d.parse_template(body)
    assert err.value.variable == variable
    assert "{" + variable + "}" in str(err.value)


def test_unbalanced_brace_is_an_error() -> None:
    with pytest.raises(d.TemplateError, match="unbalanced"):
        d.parse_template("Hi {first_name")


def test_builtin_templates_are_valid() -> None:
    assert set(d.BUILTIN_TEMPLATES) == set(d.TEMPLATE_CATEGORIES)
    for t in d.BUILTIN_TEMPLATES.values():
        d.parse_template(t.body)
        d.parse_template(t.subject or "")


# -- limits and trimming --------------------------------------------------------------------------


def test_limits_per_channel_and_130_with_video() -> None:
    assert d.limit_for(Channel.invite, video=False).text == 200
    assert d.limit_for(Channel.invite, video=True).text == 130
    assert "130" in d.limit_for(Channel.invite, video=True).label
    assert d.limit_for(Channel.message, video=True).text == 500
    email = d.limit_for(Channel.email, video=False)
    assert email.subject is not None and email.text > email.subject


def test_check_limits_names_the_limit() -> None:
    v = d.check_limits("x" * 131, None, d.limit_for(Channel.invite, video=True))
    assert len(v) == 1 and v[0].limit == 130 and "130 characters" in v[0].message()
    assert d.check_limits("x" * 130, None, d.limit_for(Channel.invite, video=True)) == []
    over_subject = d.check_limits("ok", "s" * 200, d.limit_for(Channel.email, video=False))
    assert [x.field for x in over_subject] == ["subject"]


def test_trim_at_sentence_boundary() -> None:
    text = "Hi Ada, loved your post. We help teams like yours! Want a chat? Here is a long trailing sentence."
    trimmed = d.trim_to_limit(text, 64)
    assert trimmed == "Hi Ada, loved your post. We help teams like yours! Want a chat?"
    assert d.trim_to_limit(text, 40) == "Hi Ada, loved your post."
    assert d.trim_to_limit("Short.", 10) == "Short."
    # decimals are not sentence ends
    assert d.trim_to_limit("Raised 2.5M in funding. Congrats to the team!", 30) == "Raised 2.5M in funding."


def test_trim_without_sentence_boundary_cuts_at_a_word() -> None:
    out = d.trim_to_limit("one two three four five six seven eight", 20)
    assert len(out) <= 20 and out.endswith("\u2026") and out.startswith("one two three")


@pytest.mark.parametrize("video", [False, True])
@pytest.mark.parametrize("channel", list(Channel))
def test_composed_drafts_fit_their_limits_for_every_hook(channel: Channel, video: bool) -> None:
    variants = [
        profile(),
        profile(recent_posts=[]),
        profile(recent_posts=[], work_history=[]),
        profile(recent_posts=[], work_history=[], company_milestones=[]),
        None,
    ]
    for i, p in enumerate(variants):
        for key in range(5):
            req = request(p, channel, video=video, key=f"lead-{i}-{key}")
            text, subject = d.compose(req)
            assert text and len(text) <= req.limit.text, (channel, video, len(text), text)
            if channel == Channel.email:
                assert subject and len(subject) <= (req.limit.subject or 0)
            assert "{" not in text


def test_invite_with_video_keeps_hook_and_cta_within_130() -> None:
    req = request(profile(), Channel.invite, video=True)
    text, _ = d.compose(req)
    assert len(text) <= 130
    assert "outbound pipeline" in text
    assert text.endswith("?") or text.endswith(".")


def test_drafts_are_hook_specific() -> None:
    post = d.compose(request(profile(), Channel.message))[0]
    move = d.compose(request(profile(recent_posts=[]), Channel.message))[0]
    milestone = d.compose(request(profile(recent_posts=[], work_history=[]), Channel.message))[0]
    assert "outbound pipeline" in post
    assert "Northwind Labs" in move and "outbound pipeline" not in move
    assert "Series B" in milestone


def test_missing_city_uses_the_template_fallback() -> None:
    text, _ = d.compose(request(profile(city=None), Channel.message))
    assert "your area" in text


# -- personalisation ------------------------------------------------------------------------------


def test_personalisation_is_deterministic_per_lead_and_varies_across_leads() -> None:
    base = "Hi Ada, your post caught my eye. I'd love to connect. Open to a quick chat?"
    assert d.personalise(base, "lead-1") == d.personalise(base, "lead-1")
    variants = {d.personalise(base, f"lead-{i}") for i in range(20)}
    assert len(variants) >= 3
    for v in variants:
        assert v.startswith("Hi Ada, your post")


def test_composed_text_is_deterministic_per_lead_and_rephrased_across_leads() -> None:
    p = profile()
    first = d.compose(request(p, Channel.invite, key="42|lead-a|invite"))
    assert first == d.compose(request(p, Channel.invite, key="42|lead-a|invite"))
    texts = {d.compose(request(p, Channel.invite, key=f"42|lead-{i}|invite"))[0] for i in range(12)}
    assert len(texts) >= 3


def test_a_new_attempt_rewrites_the_draft() -> None:
    req = request(profile(), Channel.message, key="42|lead-z|message")
    texts = {d.compose(d.DraftRequest(**{**req.__dict__, "attempt": n}))[0] for n in range(1, 6)}
    assert len(texts) >= 2


def test_rejection_feedback_can_change_the_tone() -> None:
    req = request(profile(), Channel.message)
    formal = d.compose(d.DraftRequest(**{**req.__dict__, "feedback": "too casual, be more formal"}))[0]
    assert formal.startswith("Dear Ada,")


# -- workflow steps -------------------------------------------------------------------------------


def test_steps_from_outreachs_typed_workflow() -> None:
    """The steps needing a text are read from the typed workflow as outreach built it (nothing to guess):
    outreach's own preset graph, made into the contract's Workflow."""
    graph = resolve_workflow("warm_intro", default_note=True, email_fallback=True)
    steps = d.message_steps(graph.to_model())
    # warm intro: the like needs no text, the comment is a draft, the invite has no note (the preset says so)
    assert [(s.step_id, s.channel.value, s.review) for s in steps] == [
        ("comment", "comment", "draft"),
        ("message", "message", "strategy"),
        ("follow_up", "message", "strategy"),
        ("email", "email", "strategy"),
    ]
    noted = d.message_steps(resolve_workflow("standard_connect", default_note=True, email_fallback=False).to_model())
    assert [(s.step_id, s.channel.value) for s in noted] == [
        ("invite", "invite"),
        ("message", "message"),
        ("follow_up", "message"),
    ]
    plain = d.message_steps(resolve_workflow("standard_connect", default_note=False, email_fallback=False).to_model())
    assert [s.step_id for s in plain] == ["message", "follow_up"]


def test_custom_steps_carry_their_template_subject_body_and_skip_unreachable_ones() -> None:
    workflow = Workflow(
        start="m1",
        steps=[
            Step(id="m1", action="message", needs_text=True, channel="message", template="hiring_manager"),
            Step(id="c1", action="comment", needs_text=True, channel="comment", mode="auto"),
            Step(id="e1", action="email", needs_text=True, channel="email", subject="Hi {first_name}", body="B"),
            Step(id="orphan", action="message", needs_text=True, channel="message"),
        ],
        edges=[Edge(source="m1", target="c1"), Edge(source="c1", target="e1")],
        unreachable=["orphan"],
    )
    steps = d.message_steps(workflow)
    assert [(s.step_id, s.review, s.template) for s in steps] == [
        ("m1", "strategy", "hiring_manager"),
        ("c1", "auto", None),
        ("e1", "strategy", None),
    ]
    assert steps[2].subject == "Hi {first_name}" and steps[2].body == "B"
    assert d.message_steps(None) == []


def test_comment_target_and_post_reference() -> None:
    p = profile(
        recent_posts=[
            {"text": "An article", "kind": "article", "posted_on": "2026-01-04"},
            {"text": "A post", "kind": "post", "posted_on": "2025-12-01"},
        ]
    )
    post = d.comment_target(p)
    assert post is not None and post.text == "A post"
    ref = d.post_url_for(post, p.lead_id)
    assert ref.startswith("urn:li:activity:") and ref == d.post_url_for(post, p.lead_id)
    assert d.comment_target(profile(recent_posts=[])) is None


def test_review_mode() -> None:
    reviewed = Strategy(review=True)
    auto = Strategy(review=False)
    assert d.needs_review(d.StepSpec("m", Channel.message), reviewed)
    assert not d.needs_review(d.StepSpec("m", Channel.message), auto)
    assert d.needs_review(d.StepSpec("c", Channel.comment, review="draft"), auto)
    assert not d.needs_review(d.StepSpec("c", Channel.comment, review="auto"), reviewed)


def test_a_hook_s_age_reads_as_words() -> None:
    assert [d.days_ago(n) for n in (0, 1, 2, 30)] == ["today", "1 day ago", "2 days ago", "30 days ago"]
