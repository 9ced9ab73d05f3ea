"""Workflow graph validation and presets (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from services.outreach.domain.workflow import (
    PRESET_TITLES,
    Graph,
    GraphError,
    resolve_workflow,
    validate_graph,
)


def test_every_preset_validates_without_warnings() -> None:
    for name in PRESET_TITLES:
        for fallback in (False, True):
            graph = resolve_workflow(name, default_note=True, email_fallback=fallback)
            assert graph.warnings == (), (name, graph.warnings)
            assert graph.unreachable == ()
            assert graph.preset == name
            assert Graph.from_dict(graph.to_dict()) == graph


def test_preset_names_accept_titles() -> None:
    graph = resolve_workflow("Message connected leads", default_note=True, email_fallback=False)
    assert graph.start == "message"
    assert [s.action for s in graph.steps.values()] == ["message", "message"]


def test_unknown_preset_is_an_error() -> None:
    with pytest.raises(GraphError, match="unknown preset"):
        resolve_workflow("spray_and_pray", default_note=True, email_fallback=False)


def test_cycle_and_invalid_edge_are_removed_with_warnings() -> None:
    graph = validate_graph(
        {
            "steps": [
                {"id": "a", "action": "invite", "note": False},
                {"id": "b", "action": "message"},
                {"id": "c", "action": "message"},
                {"id": "orphan", "action": "like"},
            ],
            "edges": [
                {"from": "a", "to": "b", "condition": "accepted", "wait_hours": 2},
                {"from": "b", "to": "c", "delay_minutes": 30},
                {"from": "c", "to": "b", "delay_minutes": 30},
                {"from": "c", "to": "ghost"},
            ],
        }
    )
    assert [(e.source, e.target) for e in graph.edges] == [("a", "b"), ("b", "c")]
    assert any("closes a cycle" in w and "c -> b" in w for w in graph.warnings)
    assert any("unknown step 'ghost'" in w for w in graph.warnings)
    assert graph.unreachable == ("orphan",)
    assert any("'orphan' is unreachable" in w for w in graph.warnings)
    assert graph.reachable() == ["a", "b", "c"]
    assert graph.edges[0].delay_minutes == 120


def test_edge_back_to_start_closes_a_cycle() -> None:
    graph = validate_graph(
        {
            "steps": [{"id": "a", "action": "like"}, {"id": "b", "action": "comment"}],
            "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}, {"from": "b", "to": "b"}],
        }
    )
    assert [(e.source, e.target) for e in graph.edges] == [("a", "b")]
    assert len(graph.warnings) == 2


def test_conditions_only_after_an_invite() -> None:
    graph = validate_graph(
        {
            "steps": [{"id": "m", "action": "message"}, {"id": "e", "action": "email", "subject": "s", "body": "b"}],
            "edges": [{"from": "m", "to": "e", "condition": "accepted"}],
        }
    )
    assert graph.edges == ()
    assert "only valid after an invite" in graph.warnings[0]


def test_message_after_invite_always_waits_for_acceptance() -> None:
    graph = validate_graph(
        {
            "steps": [{"id": "i", "action": "invite", "note": False}, {"id": "m", "action": "message"}],
            "edges": [{"from": "i", "to": "m"}],
        }
    )
    assert graph.edges[0].condition == "accepted"
    assert graph.edges[0].delay_minutes == 24 * 60
    assert "waits for acceptance" in graph.warnings[0]


@pytest.mark.parametrize(
    ("edge", "field", "text"),
    [
        ({"from": "l", "to": "c", "delay_minutes": 4}, "workflow.edges[0].delay_minutes", "between 5 and 720"),
        ({"from": "l", "to": "c", "delay_minutes": 721}, "workflow.edges[0].delay_minutes", "between 5 and 720"),
        ({"from": "l", "to": "c", "wait_hours": 13}, "workflow.edges[0].wait_hours", "between 5 and 720 minutes"),
    ],
)
def test_step_spacing_range(edge: dict, field: str, text: str) -> None:
    with pytest.raises(GraphError) as err:
        validate_graph({"steps": [{"id": "l", "action": "like"}, {"id": "c", "action": "comment"}], "edges": [edge]})
    assert err.value.field == field
    assert text in err.value.message


@pytest.mark.parametrize("hours", [0, 169])
def test_invite_to_message_wait_range(hours: int) -> None:
    with pytest.raises(GraphError) as err:
        validate_graph(
            {
                "steps": [{"id": "i", "action": "invite"}, {"id": "m", "action": "message"}],
                "edges": [{"from": "i", "to": "m", "condition": "accepted", "wait_hours": hours}],
            }
        )
    assert "between 1 and 168" in err.value.message
    assert err.value.field == "workflow.edges[0].wait_hours"


def test_invite_to_message_bounds_are_inclusive() -> None:
    for hours in (1, 168):
        graph = validate_graph(
            {
                "steps": [{"id": "i", "action": "invite"}, {"id": "m", "action": "message"}],
                "edges": [{"from": "i", "to": "m", "condition": "accepted", "wait_hours": hours}],
            }
        )
        assert graph.edges[0].delay_minutes == hours * 60


def test_email_needs_an_invite_or_message_before_it() -> None:
    with pytest.raises(GraphError, match="invite or message step before it"):
        validate_graph({"steps": [{"id": "e", "action": "email"}], "edges": []})


def test_unknown_action_and_duplicate_ids_are_errors() -> None:
    with pytest.raises(GraphError, match="unknown action 'fax'"):
        validate_graph({"steps": [{"id": "a", "action": "fax"}]})
    with pytest.raises(GraphError, match="duplicate step id"):
        validate_graph({"steps": [{"id": "a", "action": "like"}, {"id": "a", "action": "like"}]})


def test_linear_steps_without_edges_follow_each_other() -> None:
    graph = validate_graph(
        {
            "steps": [
                {"id": "s1", "action": "like"},
                {"id": "s2", "action": "invite", "note": True, "wait_hours": 2},
                {"id": "s3", "action": "message", "wait_hours": 48, "if": "accepted"},
                {"id": "s4", "action": "email", "wait_hours": 3, "if": "not_accepted", "subject": "x", "body": "y"},
            ]
        }
    )
    assert [(e.source, e.target, e.condition) for e in graph.edges] == [
        ("s1", "s2", "always"),
        ("s2", "s3", "accepted"),
        ("s2", "s4", "not_accepted"),
    ]


def test_needs_text_and_children() -> None:
    graph = resolve_workflow("warm_intro", default_note=True, email_fallback=True)
    assert not graph.step("invite").needs_text  # warm intro invites without a note
    assert graph.step("message").channel == "message"
    assert not graph.step("like").needs_text
    assert [e.target for e in graph.children("invite", ("accepted",))] == ["message"]
    assert [e.target for e in graph.children("invite", ("not_accepted",))] == ["email"]
    assert graph.invite_ancestor("follow_up")
    assert not graph.invite_ancestor("comment")


AB: dict[str, Any] = {
    "steps": [
        {"id": "invite", "action": "invite", "note": True},
        {
            "id": "message",
            "action": "message",
            "variants": [{"id": "short", "template": "hiring_manager"}, {"id": "long", "template": "hm-1"}],
        },
    ],
    "edges": [{"from": "invite", "to": "message", "condition": "accepted", "wait_hours": 1}],
}


def test_ab_variants_are_assigned_deterministically_and_evenly() -> None:
    graph = validate_graph(AB)
    assert Graph.from_dict(graph.to_dict()) == graph
    model = graph.to_model().step("message")
    assert model is not None and [(v.id, v.template) for v in model.variants] == [
        ("short", "hiring_manager"),
        ("long", "hm-1"),
    ]
    leads = [f"lead-{i}" for i in range(400)]
    first = [graph.variants_for(lead) for lead in leads]
    assert first == [validate_graph(AB).variants_for(lead) for lead in leads]  # the same lead, the same variant
    counts = {v: sum(1 for a in first if a["message"] == v) for v in ("short", "long")}
    assert min(counts.values()) > 150, counts  # about half each
    assert all(set(a) == {"message"} for a in first)  # only the step that has variants


@pytest.mark.parametrize(
    ("variants", "field"),
    [
        ([{"id": "only"}], "workflow.steps[1].variants"),
        ([{"id": "a"}, {"id": "a"}], "workflow.steps[1].variants[1].id"),
        ([{"id": "a"}, {"id": "b", "colour": "red"}], "workflow.steps[1].variants[1]"),
        ([{"id": "a"}, {"id": "b", "template": ""}], "workflow.steps[1].variants[1].template"),
    ],
)
def test_ab_variants_are_validated(variants: list[dict[str, str]], field: str) -> None:
    invite = {"id": "invite", "action": "invite", "note": True}
    raw = {"steps": [invite, {"id": "message", "action": "message", "variants": variants}]}
    with pytest.raises(GraphError) as err:
        validate_graph(raw)
    assert err.value.field == field
    plain_invite = {"steps": [{"id": "i", "action": "invite", "note": False, "variants": [{"id": "a"}, {"id": "b"}]}]}
    with pytest.raises(GraphError, match="only a step that sends a text"):
        validate_graph(plain_invite)


def test_preset_options_customise_the_graph_and_validation_reports_what_they_break() -> None:
    from services.outreach.domain.workflow import resolve_workflow

    g = resolve_workflow(
        {"preset": "warm_intro", "spacing_minutes": 30, "invite_wait_hours": 48, "comment_mode": "auto"},
        default_note=True,
        email_fallback=False,
    )
    waits = {(e.source, e.target): (e.condition, e.delay_minutes) for e in g.edges}
    assert waits == {
        ("like", "comment"): ("always", 30),
        ("comment", "invite"): ("always", 30),
        ("invite", "message"): ("accepted", 48 * 60),
        ("message", "follow_up"): ("always", 30),
    }
    assert g.step("comment").mode == "auto" and g.warnings == () and g.preset == "warm_intro"
    cut = resolve_workflow(
        {"preset": "standard_connect", "without": ["message"]}, default_note=True, email_fallback=False
    )
    assert cut.unreachable == ("follow_up",) and len(cut.warnings) == 3
    assert "refers to unknown step 'message'" in cut.warnings[0]
    first = resolve_workflow({"preset": "warm_intro", "without": ["like"]}, default_note=True, email_fallback=False)
    assert first.start == "comment" and first.unreachable == ()
    for options, field in (
        ({"spacing_minutes": 4}, "workflow.spacing_minutes"),
        ({"invite_wait_hours": 169}, "workflow.invite_wait_hours"),
        ({"without": ["nope"]}, "workflow.without[0]"),
        ({"without": ["invite", "message", "follow_up"]}, "workflow.without"),
    ):
        with pytest.raises(GraphError) as err:
            resolve_workflow({"preset": "standard_connect", **options}, default_note=True, email_fallback=False)
        assert err.value.field == field
