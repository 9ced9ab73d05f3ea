"""The campaign builder's pure logic: form values, the API requests they become, and where an API error shows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from services.console import builder
from services.console.models import Graph, OutreachAccount, Preset, WorkspacePlan
from services.console.web import page_templates
from services.outreach.domain.workflow import resolve_workflow


def _form(**fields: str | list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in fields.items():
        pairs += [(key, v) for v in value] if isinstance(value, list) else [(key, value)]
    return pairs


def test_an_unticked_checkbox_is_off_and_a_hidden_step_keeps_its_default() -> None:
    values = builder.values_from(_form(name="Q1", signal_types=["hiring_plans", "open_jobs"], review="on"))
    assert values["signal_types"] == ["hiring_plans", "open_jobs"]
    assert builder.on(values, "review") and not builder.on(values, "invite_note")  # absent: unticked
    assert values["preset"] == "standard_connect" and values["template"] == "professional_introduction"
    long = builder.values_from(_form(name="xy\x00" * 3000, days=["mon"] * 80))
    assert len(long["name"]) == 4000 and "\x00" not in long["name"] and len(long["days"]) == 50
    assert "unknown" not in builder.values_from(_form(unknown="1"))


def test_the_audience_becomes_a_saved_search_of_its_kind() -> None:
    values = builder.defaults() | {
        "name": "CFOs",
        "prompt": "Fintech CFOs",
        "signal_types": ["tech_stack"],
        "location": "London",
        "lookback_days": "45",
        "target_count": "30",
    }
    search = builder.search_request(values)
    assert search == {
        "name": "CFOs: audience",
        "kind": "signals",
        "criteria": {
            "prompt": "Fintech CFOs",
            "signal_types": ["tech_stack"],
            "lookback_days": 45,
            "location": "London",
        },
        "target_count": 30,
    }
    posts = builder.search_request(
        values | {"audience_type": "posts", "keywords": "SDR ramp, outbound ", "post_source": "web"}
    )
    assert posts is not None and posts["criteria"] == {
        "keywords": ["SDR ramp", "outbound"],
        "source": "web",
        "lookback_days": 14,
    }
    url = builder.search_request(values | {"audience_type": "linkedin_url", "search_url": "https://x"})
    assert url is not None and url["criteria"] == {"url": "https://x"} and url["kind"] == "linkedin_url"
    assert builder.search_request(values | {"audience_type": "source_group"}) is None
    # Text in a number field goes to the API as it is, which names the field in its 422.
    assert builder.search_request(values | {"target_count": "lots"})["target_count"] == "lots"  # type: ignore[index]


def test_the_same_audience_keeps_its_search_key_and_a_changed_one_gets_another() -> None:
    one = builder.search_request(builder.defaults() | {"prompt": "a"})
    two = builder.search_request(builder.defaults() | {"prompt": "b"})
    assert one and two
    assert builder.search_key("k", one) == builder.search_key("k", dict(one))
    assert builder.search_key("k", one) != builder.search_key("k", two)


def test_delivery_workflow_strategy_and_video_of_the_form() -> None:
    values = builder.defaults() | {
        "pace": "manual",
        "daily_limit": "25",
        "active_days": "custom",
        "days": ["mon", "wed"],
        "spacing_minutes": "30",
        "without": ["invite"],
        "email_fallback": "on",
        "sender_email": "s@x.example",
        "email_subject": "Hi",
        "video": "on",
        "segment_name_1": "",
        "segment_fallback_0": "friend",
    }
    body = builder.campaign_request(values, {"type": "source_group", "ref": "g"}, None, "Europe/Berlin")
    delivery = body["delivery"]
    assert delivery["daily_limit"] == 25 and delivery["active_days"] == ["mon", "wed"]
    assert delivery["timezone"] == "Europe/Berlin"  # none chosen: the user's own
    assert delivery["email_fallback"] == {"sender_email": "s@x.example", "subject": "Hi", "body": ""}
    assert body["workflow"] == {
        "preset": "standard_connect",
        "spacing_minutes": 30,
        "comment_mode": "draft",
        "without": ["invite"],
    }
    assert body["strategy"]["template"] == "professional_introduction" and body["strategy"]["review"] is True
    assert body["video"]["segments"] == [
        {"name": "greeting", "field": "first_name", "fallback": "friend"},
        {"name": "role", "field": "headline", "fallback": "your role"},
    ]
    assert "daily_limit" not in builder.delivery(builder.defaults(), "UTC")  # a preset pace has no manual limit
    assert "video" not in builder.campaign_request(builder.defaults(), {"type": "x", "ref": "y"}, None, "UTC")


def test_an_edited_template_is_the_campaigns_own_with_a_stable_name() -> None:
    values = builder.defaults()
    assert builder.custom_template(values) is None  # the built-in text as it is
    edited = values | {"template_body": "Hi {first_name|there}"}
    assert builder.custom_template(edited) == "Hi {first_name|there}"
    name = builder.template_name(edited | {"name": "Q1"}, "Hi {first_name|there}")
    assert name.startswith("Q1 · ") and name == builder.template_name(edited | {"name": "Q1"}, "Hi {first_name|there}")
    assert builder.preview_request(edited, [], [{}] * 9)["template"] == {"body": "Hi {first_name|there}"}
    assert len(builder.preview_request(edited, [], [{}] * 9)["leads"]) == 5


def test_each_api_error_shows_next_to_its_field_and_opens_its_step() -> None:
    assert builder.form_field("discovery", "criteria.lookback_days") == "lookback_days"
    assert builder.form_field("discovery", "criteria.signal_types[0]") == "signal_types"
    assert builder.form_field("discovery", "criteria.other") == "prompt"  # the longest prefix that fits
    assert builder.form_field("outreach", "delivery.email_fallback.sender_email") == "sender_email"
    assert builder.form_field("outreach", "delivery.email_fallback") == "email_fallback"
    assert builder.form_field("outreach", "workflow.spacing_minutes") == "spacing_minutes"
    assert (
        builder.form_field("outreach", "nothing.like.this") == "form" and builder.form_field("outreach", None) == "form"
    )
    errors = builder.errors_of("outreach", [("workflow.spacing_minutes", "must be between 5 and 720")], "bad", None)
    assert errors.messages == {"spacing_minutes": "must be between 5 and 720"} and errors.step == "workflow"
    detail_only = builder.errors_of("outreach", [], "the campaign cannot launch", "delivery.daily_limit")
    assert detail_only.messages == {"daily_limit": "the campaign cannot launch"} and detail_only.step == "delivery"
    assert not builder.FieldErrors() and builder.FieldErrors().step is None


def test_a_check_across_delivery_fields_shows_next_to_the_field_it_names_first() -> None:
    # outreach's DeliveryIn checks end_hour against start_hour on the whole object: its path is "delivery".
    hours = builder.errors_of("outreach", [("delivery", "end_hour (9) must be after start_hour (18)")], "bad", None)
    assert hours.messages == {"end_hour": "end_hour (9) must be after start_hour (18)"} and hours.step == "delivery"
    manual = builder.form_field("outreach", "delivery", "the manual pace needs daily_limit between 10 and 75")
    assert manual == "daily_limit"
    assert builder.form_field("outreach", "delivery", "something about the pace") == "pace"  # prose names no field
    assert builder.form_field("discovery", "criteria", "a location and a source are needed") == "prompt"


def test_a_workspace_s_only_healthy_linkedin_account_starts_ticked() -> None:
    def account(healthy: bool = True) -> OutreachAccount:
        return OutreachAccount(account_id=uuid.uuid4(), provider="linkedin", status="ok", healthy=healthy)

    only = account()
    assert builder.preselected_accounts([only]) == [str(only.account_id)]
    assert builder.preselected_accounts([account(), account()]) == []  # several: the user chooses
    assert builder.preselected_accounts([account(healthy=False)]) == []  # it would be skipped at launch
    assert builder.preselected_accounts([]) == []


def test_the_stepper_marks_every_step_that_shows_an_error_and_none_for_the_name_or_the_form() -> None:
    messages = {"name": "taken", "form": "down", "lookback_days": "1-30", "end_hour": "after start", "pace": "x"}
    assert builder.error_steps(messages) == {"audience", "delivery"}  # the name and the form sit above the steps
    assert builder.error_steps({}) == frozenset()
    # The step opened is still the first error's; the others are marked, not opened.
    errors = builder.errors_of("outreach", [("workflow.spacing_minutes", "5-720"), ("video", "add-on")], "bad", None)
    assert errors.step == "workflow" and builder.error_steps(errors.messages) == {"workflow", "video"}


class _Sections(HTMLParser):
    """Which builder step (``<section data-step>``) each error message (``id="err-…"``) is inside, and which tabs
    of the stepper are drawn marked (their ``[data-step-error]`` not hidden)."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str | None] = []
        self.tab: str | None = None
        self.error_at: dict[str, str | None] = {}
        self.marked: set[str] = set()
        self.classes: dict[str, str] = {}
        self.shown: list[str] = []  # every error message drawn, by its field (twice when shown twice)
        self.cleared_by: dict[str, str] = {}  # each message's data-cleared-by: the inputs whose edit clears it
        self.inputs: set[str] = set()  # the names of the page's inputs (a synced slider's: what it edits)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.open.append(a.get("data-step"))
        if tag == "button" and a.get("data-step-tab"):
            self.tab = a["data-step-tab"]
            self.classes[self.tab or ""] = a.get("class") or ""
        if "data-step-error" in a and self.tab and "hidden" not in a:
            self.marked.add(self.tab)
        name = a.get("id") or ""
        if tag in ("input", "select", "textarea") and (a.get("name") or a.get("data-sync")):
            self.inputs.add(a.get("name") or a.get("data-sync") or "")
        if name.startswith("err-"):
            self.error_at[name.removeprefix("err-")] = self.open[-1] if self.open else None
            self.cleared_by[name.removeprefix("err-")] = a.get("data-cleared-by") or ""
            self.shown.append(name.removeprefix("err-"))
        if "field-error" in (a.get("class") or "") and a.get("data-field"):  # the workflow graph's own messages
            self.error_at.setdefault(a["data-field"] or "", self.open[-1] if self.open else None)
            self.shown.append(a["data-field"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.open.pop()
        if tag == "button":
            self.tab = None


def _builder_page(messages: dict[str, str], **state: Any) -> _Sections:
    """builder.html drawn with ``messages`` at their fields, every list it reads unanswered (None) unless ``state``
    gives it. As the page does, the workflow check's messages (the graph's box shows them when no graph can be
    drawn) are among them, unless ``state`` says what the check refused (``graph_errors``)."""
    context: dict[str, Any] = {
        "presets": None,
        "plan": None,
        "graph": None,
        "drawing": None,
        "graph_errors": {k: v for k, v in messages.items() if builder.STEP_OF.get(k) == "workflow"},
        "upgrade": {},
        "linkedin": None,
        **state,
    }
    html = (
        page_templates()
        .get_template("builder.html")
        .render(
            values=builder.defaults(),
            errors=messages,
            open_step="audience",
            groups=None,
            down=[],
            senders=None,
            B=builder,
            builder_key="k",
            session=None,
            csrf_token="t",
            csrf_headers="{}",
            now=datetime(2026, 12, 1, tzinfo=UTC),
            clock_scale=1.0,
            tz="UTC",
            path="/campaigns/new",
            problem=None,
            **context,
        )
    )
    page = _Sections()
    page.feed(html)
    return page


def test_each_error_a_service_can_name_is_shown_inside_the_step_its_tab_marks() -> None:
    """The server marks a tab for the steps :data:`builder.STEP_OF` names (without JavaScript that is all there is):
    every field an API error can land on must show its message inside that very step, or the tab would point at a
    step that shows nothing (a refused tone showed nowhere at all)."""
    named = {name for fields in builder._FIELDS.values() for _, name in fields} | {"post_lookback_days"}
    named -= {"confirm_email_fallback"}  # the launch page's own field, not the builder's
    page = _builder_page(dict.fromkeys(named, "wrong"))
    for name in named:
        assert name in page.error_at, f"an error at {name} is shown nowhere"
        expected = None if name in builder.OUTSIDE_STEPS else builder.STEP_OF[name]
        assert page.error_at[name] == expected, f"{name}'s error is at step {page.error_at[name]}, not {expected}"
    assert page.marked == {key for key, _ in builder.STEPS}
    # The workflow check refused its fields too (as the page draws it): still each message once, at its field (the
    # graph's box said spacing, invite wait, comment mode and preset again).
    twice = sorted({name for name in page.shown if page.shown.count(name) > 1})
    assert not twice, f"shown twice: {twice}"

    two = _builder_page({"lookback_days": "1-30", "daily_limit": "10-75", "name": "taken"})
    assert two.marked == {"audience", "delivery"}  # every step with an error, not only the one opened
    assert {k for k, c in two.classes.items() if "has-error" in c} == {"audience", "delivery"}
    assert _builder_page({}).marked == set()


def _preset_graph(name: str) -> Graph:
    """A preset's graph as outreach validates and sends it (``GET /v1/workflows/presets``)."""
    return Graph.model_validate(resolve_workflow(name, default_note=True, email_fallback=False).to_dict())


def _drawn(name: str) -> dict[str, Any]:
    """The builder's workflow step as drawn when outreach answered: the presets, the checked graph and its drawing."""
    graph = _preset_graph(name)
    return {
        "presets": [Preset(name=name, title="Standard", description="d", graph=graph)],
        "graph": graph,
        "drawing": builder.drawing_of(graph),
    }


def _plan(*features: str) -> WorkspacePlan:
    return WorkspacePlan(
        workspace_id="w",
        plan="starter",
        plan_label="Starter",
        add_ons=[],
        features=list(features),
        plans=[],
        available_add_ons=[],
    )


def test_a_review_refused_at_a_field_is_shown_at_its_step_in_every_state_of_the_page() -> None:
    """Where an error's display sat inside a condition of the page, it must show in each of its states: "Leave
    steps out" refused by the review while the workflow check passed (no message of the check: the graph drawn
    with its preset's steps, drawn without a known preset, or not drawn because the check did not answer), and the
    email fallback's fields refused when the plan read now does not show them. Each showed nowhere."""
    preset = builder.defaults()["preset"]
    drawn = _drawn(preset)
    states: dict[str, dict[str, Any]] = {
        "graph and preset drawn": {**drawn, "graph_errors": {}},
        "graph drawn, preset unknown": {**drawn, "presets": [], "graph_errors": {}},
        "graph drawn, presets unanswered": {**drawn, "presets": None, "graph_errors": {}},
        "graph not drawn (the check did not answer)": {"presets": drawn["presets"], "graph_errors": {}},
        "nothing answered": {"graph_errors": {}},
        "the check refused it too": {"graph_errors": {"without": "not a step"}},
        "the check refused every field it judges": {
            **drawn,
            "graph_errors": dict.fromkeys(builder.CHECKED_FIELDS, "wrong"),
        },
        "email and video locked by the plan": {**drawn, "graph_errors": {}, "plan": _plan()},
        "email and video allowed by the plan": {**drawn, "graph_errors": {}, "plan": _plan("email_sender", "video")},
    }
    named = {name for fields in builder._FIELDS.values() for _, name in fields} | {"post_lookback_days"}
    named -= {"confirm_email_fallback"}
    for state, context in states.items():
        page = _builder_page(dict.fromkeys(named, "wrong"), **context)
        for name in named:
            assert name in page.error_at, f"{state}: an error at {name} is shown nowhere"
            expected = None if name in builder.OUTSIDE_STEPS else builder.STEP_OF[name]
            assert page.error_at[name] == expected, f"{state}: {name}'s error is at {page.error_at[name]}"
        assert page.marked == {key for key, _ in builder.STEPS}, state
        twice = sorted({name for name in page.shown if page.shown.count(name) > 1})
        assert not twice, f"{state}: shown twice: {twice}"  # each message once (the check's were in the box too)
        only = _builder_page({"without": "'x' is not a step of this preset"}, **context)
        assert only.error_at == {"without": "workflow"}, f"{state}: {only.error_at}"  # at its step
        assert only.shown == ["without"], f"{state}: shown {only.shown}"  # once
        assert only.marked == {"workflow"}, state


def test_each_message_names_the_inputs_whose_edit_clears_it() -> None:
    """static/app.js clears a review's message when one of the inputs its data-cleared-by names is edited. The
    custom day boxes belong to the active-days message and every input of the video step to the video's (only the
    choice and the checkbox cleared them: a user who ticked a day still saw "no day chosen"); every input named is
    one of the page's. A plan-required message (with its upgrade) goes only when its field is switched off ("video:",
    edited to no value), not when the template or a segment is edited: the way to upgrade stays."""
    plan = _plan("email_sender", "video")
    named = {name for fields in builder._FIELDS.values() for _, name in fields} | {"post_lookback_days"}
    ana = OutreachAccount(account_id=uuid.uuid4(), provider="linkedin", status="ok", healthy=True)
    page = _builder_page(
        dict.fromkeys(named - {"confirm_email_fallback"}, "wrong"),
        plan=plan,
        linkedin=[ana],
        **_drawn(builder.defaults()["preset"]),
    )
    assert page.cleared_by["active_days"].split() == ["active_days", "days"]
    assert page.cleared_by["template_body"].split() == ["template_body", "template"]  # another template, other text
    video = page.cleared_by["video"].split()
    assert video[:2] == ["video", "video_template_id"] and {"segment_field_0", "segment_fallback_2"} <= set(video)
    assert page.cleared_by["spacing_minutes"] == "spacing_minutes"  # one input: its own
    for message, rules in page.cleared_by.items():
        unknown = {rule.split(":")[0] for rule in rules.split()} - page.inputs
        assert not unknown, f"the message at {message} is cleared by inputs the page does not have: {unknown}"
    gated = _builder_page({"video": "not in your plan"}, plan=plan, upgrade={"video": {"add_on": "video"}})
    assert gated.cleared_by == {"video": "video:"}


def test_the_graph_box_shows_only_the_messages_of_the_field_it_draws() -> None:
    """Spacing, invite wait, comment mode and preset are edited above the box: their messages are at those fields
    (the box showed the check's again, so the page said each twice). "Leave steps out" is drawn in the box: its
    message is there, the review's when there is one (the check passed), else the check's."""
    checked = {"spacing_minutes": "between 5 and 720", "comment_mode": "auto or draft", "preset": "unknown"}
    page = {"without": "not a step", "tone": "unknown", "spacing_minutes": "other"}
    assert builder.graph_box_errors(checked, page) == {"without": "not a step"}
    assert builder.graph_box_errors({"without": "check"}, {"without": "review"}) == {"without": "review"}
    assert builder.graph_box_errors({"without": "check"}, {}) == {"without": "check"}
    assert builder.graph_box_errors({}, {"tone": "unknown"}) == {}
    assert set(builder.FIELD_SLOTS) == {"preset", "spacing_minutes", "invite_wait_hours", "comment_mode"}


def test_the_workflow_check_s_messages_are_each_at_a_workflow_field() -> None:
    """The check judges only the workflow: a message of it that names no field (a path outside the options) is the
    workflow's as a whole, at the preset, never the form's (shown above the steps, it opened the Accounts step)."""
    assert builder.check_errors({"spacing_minutes": "5-720", "form": "bad body"}) == {
        "spacing_minutes": "5-720",
        "preset": "bad body",
    }
    assert builder.check_errors({"preset": "unknown preset", "form": "bad body"}) == {"preset": "unknown preset"}
    assert builder.check_errors({}) == {}


def test_a_message_above_the_steps_opens_no_step_and_leaves_the_user_where_they_were() -> None:
    """The form's own message (a service that did not answer) and the campaign name sit above the stepper, seen from
    every step. The form's opened the Accounts step, the name's the Audience step, whichever step the user was on."""
    outage = builder.FieldErrors({"form": "outreach did not answer"})
    assert outage.step is None
    assert builder.open_step(outage, "messages") == "messages"  # where the user reviewed from
    assert builder.open_step(outage, None) == "audience" and builder.open_step(outage, "nonsense") == "audience"
    named = builder.FieldErrors({"name": "a campaign needs a name"})
    assert named.step is None and builder.open_step(named, "accounts") == "accounts"
    # With a field error too, its step opens, wherever the messages above the steps come in the order.
    both = builder.FieldErrors({"form": "down", "name": "taken", "end_hour": "after start", "lookback_days": "1-30"})
    assert both.step == "delivery" and builder.open_step(both, "video") == "delivery"
    assert builder.open_step(builder.FieldErrors(), "workflow") == "workflow"  # a link's ?step=, no error
    assert "name" not in builder.STEP_OF and "form" not in builder.STEP_OF


class _Slots(HTMLParser):
    """The workflow check's answer: the messages in the graph's box and those sent out of band, by field."""

    def __init__(self) -> None:
        super().__init__()
        self.slot: str | None = None
        self.oob: dict[str, str | None] = {}  # slot -> the message's field in it (None: sent empty)
        self.in_box: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id") == "workflow-graph":
            self.depth = 1
        elif self.depth and tag == "div":
            self.depth += 1
        if a.get("data-error-slot"):
            assert a.get("hx-swap-oob") == "true", a
            self.slot = a["data-error-slot"]
            self.oob[self.slot or ""] = None
        if "field-error" in (a.get("class") or ""):
            name = (a.get("id") or "").removeprefix("err-") or a.get("data-field") or "?"
            if self.slot:
                self.oob[self.slot] = name
            elif self.depth:
                self.in_box.append(name)

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self.slot:
            self.slot = None
        elif tag == "div" and self.depth:
            self.depth -= 1


def _workflow_check(errors: dict[str, str]) -> _Slots:
    html = (
        page_templates()
        .get_template("partials/workflow_check.html")
        .render(values=builder.defaults(), errors=errors, presets=None, graph=None, drawing=None, down=(), B=builder)
    )
    parsed = _Slots()
    parsed.feed(html)
    return parsed


def test_the_redrawn_workflow_puts_each_check_message_at_its_field_and_clears_the_others() -> None:
    """A change of the workflow asks the check again: its message at the spacing goes to the spacing's slot, out of
    band (it was in the box, away from the field, and twice once the page was drawn again); every other slot is sent
    empty, so a message the check no longer gives goes; "Leave steps out" stays in the box it draws."""
    refused = _workflow_check({"spacing_minutes": "must be between 5 and 720, got 4", "without": "not a step"})
    assert refused.oob == {
        "preset": None,
        "spacing_minutes": "spacing_minutes",
        "invite_wait_hours": None,
        "comment_mode": None,
    }
    assert refused.in_box == ["without"]
    passed = _workflow_check({})
    assert passed.oob == dict.fromkeys(builder.FIELD_SLOTS) and passed.in_box == []


class _Inputs(HTMLParser):
    """The ``without`` inputs a drawn workflow box sends: checkboxes (value, checked) and hidden ones."""

    def __init__(self) -> None:
        super().__init__()
        self.boxes: dict[str, bool] = {}
        self.hidden: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag != "input" or a.get("name") != "without":
            return
        if a.get("type") == "checkbox":
            self.boxes[a.get("value") or ""] = "checked" in a
        elif a.get("type") == "hidden":
            self.hidden.append(a.get("value") or "")


def _graph_box(values: dict[str, Any], **state: Any) -> _Inputs:
    context: dict[str, Any] = {"graph": None, "drawing": None, "errors": {}, "presets": None, **state}
    html = (
        page_templates()
        .get_template("partials/workflow_graph.html")
        .render(values=values, down=(), B=builder, session=None, csrf_token="t", path="/", **context)
    )
    inputs = _Inputs()
    inputs.feed(html)
    return inputs


def test_a_step_left_out_of_another_preset_can_be_unticked_when_the_check_refuses_it() -> None:
    """ "Like" left out of Warm intro, then Standard connect chosen: the check refuses ("'like' is not a step of this
    preset") and draws no graph. The box drew no checkboxes then and sent 'like' back as a hidden input, so every
    later redraw and review was refused until the user went back to Warm intro. Now the chosen preset's steps are
    drawn whenever it is known, what the user left out of them stays ticked, and the foreign id is not sent again."""
    preset = builder.defaults()["preset"]
    drawn = _drawn(preset)
    steps = [s.id for s in drawn["graph"].steps]
    assert "like" not in steps
    values = {**builder.defaults(), "preset": preset, "without": ["like", steps[-1]]}
    refused = _graph_box(values, presets=drawn["presets"], errors={"without": "'like' is not a step of this preset"})
    assert list(refused.boxes) == steps
    assert [s for s, ticked in refused.boxes.items() if ticked] == [steps[-1]]
    assert refused.hidden == []
    # Presets unanswered: the steps are not known, so what was left out is kept as it was, to be sent again.
    unknown = _graph_box(values, errors={"without": "'like' is not a step of this preset"})
    assert unknown.boxes == {} and unknown.hidden == ["like", steps[-1]]
    # The graph drawn: as before, the preset's steps.
    ok = _graph_box({**values, "without": [steps[-1]]}, **drawn)
    assert [s for s, ticked in ok.boxes.items() if ticked] == [steps[-1]] and ok.hidden == []
