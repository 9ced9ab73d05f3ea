"""The backward-compatibility checker: it fails on breaking changes and passes additive ones.

Each test takes a real published schema, builds the "new" schema by editing a copy, and compares.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from leadstream_schemas import (
    EVENT_TYPES,
    ActionSkipped,
    CampaignCreated,
    CampaignCreatedV1,
    LeadDiscovered,
    LeadEmailEnriched,
    LeadEmailNotFound,
)
from leadstream_schemas.compat import Change, breaking, compare, compare_all, load_schemas, main
from leadstream_schemas.generate import JSONSCHEMA_DIR, event_schema, event_schemas

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / JSONSCHEMA_DIR
DISCOVERED = LeadDiscovered.event_type
Schema = dict[str, Any]


def old_discovered() -> Schema:
    return event_schema(LeadDiscovered)


def edited(schema: Schema) -> Schema:
    return copy.deepcopy(schema)


def problems(old: Schema, new: Schema) -> list[str]:
    """The breaking changes as 'path: message' strings."""
    return [f"{c.path}: {c.message}" for c in breaking(compare(old, new))]


def test_identical_schemas_have_no_changes() -> None:
    assert compare(old_discovered(), old_discovered()) == []


# --------------------------------------------------------------------------------------------- breaking


def test_removing_a_required_field_is_breaking() -> None:
    old = old_discovered()
    new = edited(old)
    del new["properties"]["source"]
    new["required"].remove("source")
    assert problems(old, new) == ["source: field removed"]


def test_removing_an_optional_field_is_breaking() -> None:
    old = old_discovered()
    new = edited(old)
    del new["properties"]["location"]
    assert problems(old, new) == ["location: field removed"]


def test_changing_a_field_type_is_breaking() -> None:
    old = old_discovered()
    new = edited(old)
    new["properties"]["title"]["anyOf"][0] = {"type": "integer"}
    assert problems(old, new) == ["title: type changed from string | null to integer | null"]


def test_changing_a_required_field_type_or_format_is_breaking() -> None:
    old = old_discovered()
    new = edited(old)
    new["properties"]["lead_id"] = {"type": "integer"}
    new["properties"]["search_id"]["anyOf"][0]["format"] = "date-time"
    assert problems(old, new) == [
        "lead_id: type changed from string (uuid) to integer",
        "search_id: format changed from uuid to date-time",
    ]


def test_narrowing_an_enum_is_breaking() -> None:
    old = old_discovered()
    new = edited(old)
    new["$defs"]["LeadSource"]["enum"].remove("csv")
    assert problems(old, new) == ['source: allowed value(s) removed: ["csv"]']


def test_narrowing_a_literal_is_breaking() -> None:
    old = event_schema(LeadEmailNotFound)
    new = edited(old)
    new["properties"]["reason"]["enum"] = ["not_found", "invalid"]
    assert problems(old, new) == ['reason: allowed value(s) removed: ["risky", "provider_error"]']


def test_changing_a_single_value_literal_is_breaking() -> None:
    old = event_schema(LeadEmailEnriched)
    new = edited(old)
    new["properties"]["status"]["const"] = "confirmed"
    assert problems(old, new) == [
        'status: allowed value(s) removed: ["verified"]',
    ]


def test_restricting_a_free_string_to_an_enum_is_breaking() -> None:
    old = old_discovered()
    new = edited(old)
    new["properties"]["title"]["anyOf"][0]["enum"] = ["VP Sales", "CEO"]
    assert problems(old, new) == ['title: now restricted to ["VP Sales", "CEO"]']


def test_making_an_optional_field_required_is_breaking() -> None:
    old = old_discovered()
    new = edited(old)
    new["required"].append("email")
    assert problems(old, new) == ["email: field became required (it was optional)"]


def test_a_new_required_field_without_default_is_breaking() -> None:
    old = old_discovered()
    new = edited(old)
    new["properties"]["seniority"] = {"type": "string"}
    new["required"].append("seniority")
    assert problems(old, new) == ["seniority: new required field (old events do not have it; give it a default)"]


def test_dropping_null_is_breaking() -> None:
    old = old_discovered()
    new = edited(old)
    new["properties"]["email"] = new["properties"]["email"]["anyOf"][0]  # the string alternative alone
    assert new["properties"]["email"]["maxLength"] == 320
    assert problems(old, new) == ["email: no longer accepts null (was optional/nullable)"]


def test_changes_inside_nested_models_are_found_with_their_path() -> None:
    old = old_discovered()
    new = edited(old)
    del new["$defs"]["FitSignal"]["properties"]["kind"]
    new["$defs"]["FitSignal"]["required"].remove("kind")
    new["$defs"]["FitSignal"]["properties"]["observed_on"]["anyOf"][0]["format"] = "date-time"
    assert problems(old, new) == [
        "fit_signals[].kind: field removed",
        "fit_signals[].observed_on: format changed from date to date-time",
    ]


def test_changes_inside_maps_are_found_with_their_path() -> None:
    old = event_schema(ActionSkipped)
    new = edited(old)
    new["properties"]["rendered"]["anyOf"][0]["additionalProperties"] = {"type": "integer"}
    assert problems(old, new) == ["rendered{}: type changed from string to integer"]


def test_moving_an_event_to_another_topic_or_key_is_breaking() -> None:
    old = old_discovered()
    new = edited(old)
    new["x-leadstream"]["topic"] = "leadstream.search.v1"
    new["x-leadstream"]["key_field"] = "search_id"
    assert problems(old, new) == [
        ": topic changed from 'leadstream.lead.v1' to 'leadstream.search.v1'",
        ": key field changed from 'lead_id' to 'search_id'",
    ]


def test_removing_an_event_type_is_breaking() -> None:
    old = {DISCOVERED: old_discovered(), "leadstream.lead.teleported.v1": old_discovered()}
    changes = compare_all(old, {DISCOVERED: old_discovered()})
    assert [str(c) for c in breaking(changes)] == [
        "leadstream.lead.teleported.v1: event type removed (keep the model registered; it is history)"
    ]


# --------------------------------------------------------------------------------------------- compatible


def test_adding_an_optional_field_is_compatible() -> None:
    old = old_discovered()
    new = edited(old)
    new["properties"]["seniority"] = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    changes = compare(old, new)
    assert breaking(changes) == []
    assert changes == [Change(DISCOVERED, "seniority", "optional field added", breaking=False)]


def test_widening_is_compatible() -> None:
    old = old_discovered()
    new = edited(old)
    new["$defs"]["LeadSource"]["enum"].append("event_attendees")
    new["properties"]["lead_id"] = {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]}
    new["properties"]["title"]["description"] = "Job title as shown on the profile."  # annotations are ignored
    changes = compare(old, new)
    assert breaking(changes) == []
    assert [f"{c.path}: {c.message}" for c in changes] == [
        "lead_id: now also accepts null",
        'source: allowed value(s) added: ["event_attendees"]',
    ]


def test_adding_an_event_type_is_compatible() -> None:
    changes = compare_all({}, {DISCOVERED: old_discovered()})
    assert changes == [Change(DISCOVERED, "", "new event type", breaking=False)]


def test_recursive_models_terminate() -> None:
    tree = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["name"],
            }
        },
        "$ref": "#/$defs/Node",
    }
    assert compare(tree, copy.deepcopy(tree)) == []
    narrowed: dict[str, Any] = copy.deepcopy(tree)
    narrowed["$defs"]["Node"]["properties"]["name"]["minLength"] = 10
    assert problems(tree, narrowed) == ["name: new constraint minLength=10"]


def test_writer_bounds_may_be_added_or_lowered_but_not_raised_or_removed() -> None:
    """Size bounds are checked when written, not when read (leadstream_schemas.bounds): a new or lower bound
    leaves every old record readable; a higher or missing one breaks readers that rely on it."""
    old = event_schema(LeadDiscovered)
    assert old["properties"]["full_name"]["anyOf"][0]["maxLength"] == 300
    assert old["properties"]["fit_signals"]["maxItems"] == 20
    unbounded = edited(old)
    del unbounded["properties"]["full_name"]["anyOf"][0]["maxLength"]
    del unbounded["properties"]["fit_signals"]["maxItems"]

    added = compare(unbounded, old)
    assert breaking(added) == []
    assert {f"{c.path}: {c.message}" for c in added} == {
        "full_name: writer bound maxLength=300 added (decode() accepts longer values of older records)",
        "fit_signals: writer bound maxItems=20 added (decode() accepts longer values of older records)",
    }
    lowered = edited(old)
    lowered["properties"]["full_name"]["anyOf"][0]["maxLength"] = 200
    assert breaking(compare(old, lowered)) == [] and compare(old, lowered) != []
    raised = edited(old)
    raised["properties"]["full_name"]["anyOf"][0]["maxLength"] = 400
    assert problems(old, raised) == ["full_name: size bound maxLength raised from 300 to 400"]
    assert sorted(problems(old, unbounded)) == [
        "fit_signals: size bound maxItems=20 removed (readers may rely on it)",
        "full_name: size bound maxLength=300 removed (readers may rely on it)",
    ]
    free = event_schema(CampaignCreatedV1)
    bigger = edited(free)
    bigger["properties"]["workflow"]["x-leadstream-max-bytes"] *= 2
    assert problems(free, bigger) == ["workflow: size bound x-leadstream-max-bytes raised from 65536 to 131072"]


def test_marking_a_string_personal_is_compatible_and_unmarking_it_is_breaking() -> None:
    """The personal marks document what the topics already carry: adding one changes no value a reader accepts;
    removing one would tell readers to refuse the pii1: tokens the log keeps at that field."""
    marked = event_schema(LeadDiscovered)
    unmarked = edited(marked)
    email = unmarked["properties"]["email"]["anyOf"][0]
    del email["x-leadstream-personal"], email["x-leadstream-token-max-length"]

    added = compare(unmarked, marked)
    assert breaking(added) == []
    assert [f"{c.path}: {c.message}" for c in added] == [
        "email: marked personal: on the topics a pii1: token of up to 1749 characters"
    ]
    assert problems(marked, unmarked) == [
        "email: no longer marked personal (the log keeps the pii1: tokens already written there)"
    ]
    documented = edited(marked)  # the type's x-leadstream documentation is not compared
    documented["x-leadstream"]["personal"] = []
    documented["x-leadstream"]["size_bounds"] = "something else"
    assert compare(marked, documented) == []


@pytest.mark.parametrize("release", ["1.0.0", "1.1.0"])
def test_the_releases_before_the_marks_are_compatible_with_them(release: str) -> None:
    old = load_schemas(COMMITTED.parent / "releases" / release)
    changes = compare_all(old, event_schemas())
    assert breaking(changes) == []
    marked = {
        (c.event_type, c.path.replace("[]", ".*").replace("{}", ".*"))  # compat's a[].b is the personal path a.*.b
        for c in changes
        if c.message.startswith("marked personal")
    }
    assert marked == {(t, path) for t in old for path in EVENT_TYPES[t].personal}
    # 1.1.0 added post_matched and paused, whose three personal paths 1.2.0 marks too; 1.3.0 marks the four video links
    assert len(marked) == {"1.0.0": 45, "1.1.0": 48}[release]


def test_release_1_2_0_is_compatible_with_the_video_links_marked_personal() -> None:
    """1.3.0 marks the lead's video links personal (the video is rendered for that one person): a compatible
    change, and the only one since 1.2.0."""
    changes = compare_all(load_schemas(COMMITTED.parent / "releases" / "1.2.0"), event_schemas())
    assert breaking(changes) == []
    assert sorted((c.event_type, c.path, c.message.split(":")[0]) for c in changes) == [
        ("leadstream.lead.invite_sent.v1", "video_url", "marked personal"),
        ("leadstream.lead.message_sent.v1", "video_url", "marked personal"),
        ("leadstream.lead.video_generated.v1", "thumbnail_url", "marked personal"),
        ("leadstream.lead.video_generated.v1", "video_url", "marked personal"),
    ]


def test_every_published_schema_is_compatible_with_itself() -> None:
    old = {p.stem: json.loads(p.read_text()) for p in COMMITTED.glob("*.json")}
    assert compare_all(old, copy.deepcopy(old)) == []


# --------------------------------------------------------------------------------------------- CLI


def test_cli_passes_against_the_committed_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "compatible with" in capsys.readouterr().out


def test_cli_fails_with_a_clear_list_on_a_breaking_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_dir = tmp_path / "old"
    shutil.copytree(COMMITTED, old_dir)
    path = old_dir / f"{DISCOVERED}.json"
    old = json.loads(path.read_text())
    old["properties"]["seniority"] = {"type": "string"}  # the code "removed" it
    old["$defs"]["LeadSource"]["enum"].append("event_attendees")  # the code "narrowed" the enum
    path.write_text(json.dumps(old))

    assert main(["--old", str(old_dir)]) == 1
    err = capsys.readouterr().err
    assert "2 breaking change(s)" in err
    assert "BREAKING  leadstream.lead.discovered.v1: seniority: field removed" in err
    assert 'BREAKING  leadstream.lead.discovered.v1: source: allowed value(s) removed: ["event_attendees"]' in err


def test_cli_reports_missing_old_schemas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--old", str(tmp_path / "nothing")]) == 2
    assert "no committed schemas" in capsys.readouterr().err


def test_cli_compares_against_a_git_revision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CI mode: compare the code with the schemas committed on the target branch.

    As in this repository, the schemas root is a subdirectory of the git checkout.
    """
    root = tmp_path / "schemas"
    shutil.copytree(COMMITTED, root / JSONSCHEMA_DIR)

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "contract")
    assert main(["--root", str(root), "--ref", "HEAD"]) == 0

    path = root / JSONSCHEMA_DIR / f"{DISCOVERED}.json"
    old = json.loads(path.read_text())
    old["properties"]["seniority"] = {"type": "string"}
    path.write_text(json.dumps(old))
    git("commit", "-q", "-am", "a field the code does not have")
    capsys.readouterr()
    assert main(["--root", str(root), "--ref", "HEAD"]) == 1
    assert "seniority: field removed" in capsys.readouterr().err
    assert main(["--root", str(root), "--ref", "no-such-ref"]) == 2


def test_the_typed_campaign_models_are_covered_field_by_field() -> None:
    """CampaignCreated v2 carries its workflow, delivery and video as models: a breaking change inside any of
    them (a step action removed, a delivery field retyped, an edge field renamed) is found with its path."""
    old = event_schema(CampaignCreated)
    new = edited(old)
    new["$defs"]["Step"]["properties"]["action"]["enum"].remove("like")
    new["$defs"]["Delivery"]["properties"]["start_hour"]["type"] = "string"
    edge = new["$defs"]["Edge"]
    edge["properties"]["from_step"] = edge["properties"].pop("source")
    edge["required"] = ["from_step" if r == "source" else r for r in edge["required"]]
    assert sorted(problems(old, new)) == [
        "delivery.start_hour: type changed from integer to string",
        "workflow.edges[].from_step: new required field (old events do not have it; give it a default)",
        "workflow.edges[].source: field removed",
        'workflow.steps[].action: allowed value(s) removed: ["like"]',
    ]
