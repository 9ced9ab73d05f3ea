"""Workflow graphs: actions, edges with conditions and waits, presets, and validation. Pure.

A workflow is a directed graph of steps. Each step is one action (comment, like, invite, message,
email); each edge says which step follows which, after how long, and under which condition:

- ``always``: the child is scheduled ``delay_minutes`` after the parent completed (step spacing,
  5-720 minutes);
- ``accepted``: only from an invite; the child is scheduled ``delay_minutes`` after the lead accepted
  (the invite-to-message wait, 1-168 hours);
- ``not_accepted``: only from an invite; the child runs when the invite was not accepted within the
  invite's ``accept_timeout_hours`` (e.g. the email fallback).

Validation keeps what can run: invalid edges and edges that close a cycle are removed with a
warning, unreachable steps are reported, and values outside their ranges are errors (HTTP 422).
A step runs at most once per lead, the first time one of its parents completes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from leadstream_schemas import Edge as EdgeModel
from leadstream_schemas import Step as StepModel
from leadstream_schemas import Variant as VariantModel
from leadstream_schemas import Workflow

ACTIONS = ("comment", "like", "invite", "message", "email")
VIDEO_ACTIONS = ("invite", "message")
"""Actions that carry a video campaign's personalised video (and so wait for it, up to the failsafe deadline)."""
TEXT_CHANNELS = {"invite": "invite", "message": "message", "email": "email", "comment": "comment"}
CONDITIONS = ("always", "accepted", "not_accepted")
SPACING_MINUTES = (5, 720)
INVITE_WAIT_HOURS = (1, 168)
ACCEPT_TIMEOUT_HOURS = (1, 720)
DEFAULT_SPACING_MINUTES = 60
DEFAULT_INVITE_WAIT_HOURS = 24
DEFAULT_ACCEPT_TIMEOUT_HOURS = 168


class GraphError(ValueError):
    """A workflow that cannot be accepted; ``field`` is the path of the offending value."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


VARIANTS = (2, 10)
"""How many A/B variants a step with variants has."""


@dataclass(frozen=True)
class Variant:
    """One A/B variant of a step's text: its own template (and an email's subject and body)."""

    id: str
    template: str | None = None
    subject: str | None = None
    body: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return {"id": self.id, "template": self.template, "subject": self.subject, "body": self.body}


def assign_variant(lead_id: str, step_id: str, variant_ids: Sequence[str]) -> str:
    """The variant of a step a lead gets: deterministic (the same lead and step always get the same one, on
    every replica and after every restart) and even across leads (a hash of the lead and step ids)."""
    digest = hashlib.sha256(f"{lead_id}|{step_id}".encode()).digest()
    return variant_ids[int.from_bytes(digest[:8], "big") % len(variant_ids)]


@dataclass(frozen=True)
class Step:
    """One action of the workflow."""

    id: str
    action: str
    note: bool = False
    mode: str = "auto"
    subject: str | None = None
    body: str | None = None
    accept_timeout_hours: int = DEFAULT_ACCEPT_TIMEOUT_HOURS
    template: str | None = None
    variants: tuple[Variant, ...] = ()

    def variant_for(self, lead_id: str) -> Variant | None:
        """The A/B variant of this step the lead gets (None when the step has no variants)."""
        if not self.variants:
            return None
        chosen = assign_variant(lead_id, self.id, [v.id for v in self.variants])
        return next(v for v in self.variants if v.id == chosen)

    @property
    def needs_text(self) -> bool:
        """True when the step sends a text that must be approved first (an invite only with a note)."""
        if self.action == "invite":
            return self.note
        return self.action in TEXT_CHANNELS

    @property
    def channel(self) -> str | None:
        """The message channel of the step's text, if it has one."""
        return TEXT_CHANNELS.get(self.action) if self.needs_text else None

    def to_dict(self) -> dict[str, Any]:
        """The stored and published form."""
        out: dict[str, Any] = {
            "id": self.id,
            "action": self.action,
            "needs_text": self.needs_text,
            "channel": self.channel,
        }
        if self.action == "invite":
            out.update(note=self.note, accept_timeout_hours=self.accept_timeout_hours)
        if self.action == "comment":
            out["mode"] = self.mode
        if self.action == "email":
            out.update(subject=self.subject, body=self.body)
        if self.template:
            out["template"] = self.template
        if self.variants:
            out["variants"] = [v.to_dict() for v in self.variants]
        return out

    def to_model(self) -> StepModel:
        """The contract's form (``leadstream_schemas.Step``), carried by campaign events."""
        return StepModel(
            id=self.id,
            action=self.action,  # one of ACTIONS (validate_graph)
            needs_text=self.needs_text,
            channel=self.channel,
            note=self.note if self.action == "invite" else False,
            mode="draft" if self.action == "comment" and self.mode == "draft" else "auto",
            accept_timeout_hours=self.accept_timeout_hours if self.action == "invite" else None,
            subject=self.subject if self.action == "email" else None,
            body=self.body if self.action == "email" else None,
            template=self.template,
            variants=[
                VariantModel(id=v.id, template=v.template, subject=v.subject, body=v.body) for v in self.variants
            ],
        )


def carries_video(action: str) -> bool:
    """Whether a step of this action carries the lead's personalised video in a video campaign."""
    return action in VIDEO_ACTIONS


@dataclass(frozen=True)
class Edge:
    """``target`` follows ``source`` under ``condition`` after ``delay_minutes``."""

    source: str
    target: str
    condition: str = "always"
    delay_minutes: int = DEFAULT_SPACING_MINUTES

    def to_dict(self) -> dict[str, Any]:
        """The stored and published form."""
        return {
            "from": self.source,
            "to": self.target,
            "condition": self.condition,
            "delay_minutes": self.delay_minutes,
        }

    def to_model(self) -> EdgeModel:
        """The contract's form (``leadstream_schemas.Edge``)."""
        return EdgeModel(
            source=self.source,
            target=self.target,
            condition=self.condition,  # one of CONDITIONS (validate_graph)
            delay_minutes=self.delay_minutes,
        )


@dataclass(frozen=True)
class Graph:
    """A validated workflow: only valid, acyclic edges; ``unreachable`` steps never run."""

    start: str
    steps: dict[str, Step]
    edges: tuple[Edge, ...]
    warnings: tuple[str, ...] = ()
    unreachable: tuple[str, ...] = ()
    preset: str | None = None

    def step(self, step_id: str) -> Step:
        """The step with this id (KeyError when unknown)."""
        return self.steps[step_id]

    def children(self, step_id: str, conditions: tuple[str, ...] = ("always",)) -> list[Edge]:
        """Edges leaving ``step_id`` whose condition is one of ``conditions``."""
        return [e for e in self.edges if e.source == step_id and e.condition in conditions]

    def reachable(self) -> list[str]:
        """Step ids that can run, in definition order."""
        return [s for s in self.steps if s not in self.unreachable]

    def has_ancestor(self, step_id: str, actions: set[str]) -> bool:
        """True when some step leading to ``step_id`` is one of ``actions``."""
        seen: set[str] = set()
        todo = [e.source for e in self.edges if e.target == step_id]
        while todo:
            sid = todo.pop()
            if sid in seen:
                continue
            seen.add(sid)
            if self.steps[sid].action in actions:
                return True
            todo.extend(e.source for e in self.edges if e.target == sid)
        return False

    def invite_ancestor(self, step_id: str) -> bool:
        """True when the step runs after an invite (so the lead is a connection by then)."""
        return self.has_ancestor(step_id, {"invite"})

    def to_dict(self) -> dict[str, Any]:
        """The stored form, also carried by ``CampaignCreated.workflow``."""
        return {
            "preset": self.preset,
            "start": self.start,
            "steps": [self.steps[s].to_dict() for s in self.steps],
            "edges": [e.to_dict() for e in self.edges],
            "warnings": list(self.warnings),
            "unreachable": list(self.unreachable),
        }

    def variants_for(self, lead_id: str) -> dict[str, str]:
        """The lead's A/B variant of every reachable step that has variants (step id -> variant id)."""
        out: dict[str, str] = {}
        for sid in self.reachable():
            chosen = self.steps[sid].variant_for(lead_id)
            if chosen is not None:
                out[sid] = chosen.id
        return out

    def to_model(self) -> Workflow:
        """The contract's form (``leadstream_schemas.Workflow``), carried by ``CampaignCreated.workflow``."""
        return Workflow(
            preset=self.preset,
            start=self.start,
            steps=[self.steps[s].to_model() for s in self.steps],
            edges=[e.to_model() for e in self.edges],
            warnings=list(self.warnings),
            unreachable=list(self.unreachable),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Graph:
        """Read a graph stored by :meth:`to_dict` (already validated: no checks here)."""
        steps = {}
        for s in data["steps"]:
            steps[s["id"]] = Step(
                id=s["id"],
                action=s["action"],
                note=bool(s.get("note", False)),
                mode=s.get("mode", "auto"),
                subject=s.get("subject"),
                body=s.get("body"),
                accept_timeout_hours=int(s.get("accept_timeout_hours", DEFAULT_ACCEPT_TIMEOUT_HOURS)),
                template=s.get("template"),
                variants=tuple(Variant(**v) for v in s.get("variants") or ()),
            )
        edges = tuple(Edge(e["from"], e["to"], e["condition"], int(e["delay_minutes"])) for e in data["edges"])
        return cls(
            start=data["start"],
            steps=steps,
            edges=edges,
            warnings=tuple(data.get("warnings", ())),
            unreachable=tuple(data.get("unreachable", ())),
            preset=data.get("preset"),
        )


# -- versions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveStep:
    """A lead's live timer, as the edit rule sees it: its kind (``step`` or ``accept_wait``), its step and what
    it waits for (``send``: a send is under way)."""

    kind: str
    step_id: str | None
    waiting_for: str | None = None


def moves_to_new_version(
    state: str, steps_done: int, accepted: bool, acted: bool, live: list[LiveStep], start: str
) -> bool:
    """Whether a lead moves to a campaign's newly edited sequence (its *safe point*) or finishes on its own.

    A lead moves when it has not started: it was prepared for review, or it is active with only its first
    step ahead of it (no step performed or skipped, no send under way or made, no acceptance recorded, and no
    live timer but its first step's). Any lead past that point finishes the version it runs, so an edit never
    repeats, skips or reorders a step a lead has already been through.
    """
    if state == "prepared":
        return True
    if state != "active" or steps_done or accepted or acted:
        return False
    return all(t.kind == "step" and t.step_id == start and t.waiting_for != "send" for t in live)


# -- presets -------------------------------------------------------------------------------------

PRESET_TITLES = {
    "warm_intro": "Warm intro",
    "standard_connect": "Standard connect",
    "direct_connect": "Direct connect",
    "message_connected": "Message connected leads",
}

PRESET_DESCRIPTIONS = {
    "warm_intro": "Like a recent post, comment on it an hour later (draft for approval), send an invite "
    "without a note 12 hours later; 24 hours after acceptance send a message, and a follow-up "
    "12 hours after that.",
    "standard_connect": "Invite (with a personalised note unless the strategy turns invite notes off); 24 hours "
    "after acceptance send a message, and a follow-up 12 hours after that.",
    "direct_connect": "Invite (note as the strategy says); message one hour after acceptance.",
    "message_connected": "For leads who are already connections: a message, and a follow-up 12 hours later. "
    "Leads who are not connections are skipped (not_accepted).",
}


def preset_graph(name: str, *, email_fallback: bool = False) -> dict[str, Any]:
    """The raw graph of a preset (see :data:`PRESET_DESCRIPTIONS`); ``email_fallback`` adds an email step
    on the invite's ``not_accepted`` branch (or after the last message for ``message_connected``)."""
    key = normalise_preset(name)
    if key == "warm_intro":
        raw: dict[str, Any] = {
            "steps": [
                {"id": "like", "action": "like"},
                {"id": "comment", "action": "comment", "mode": "draft"},
                {"id": "invite", "action": "invite", "note": False},
                {"id": "message", "action": "message"},
                {"id": "follow_up", "action": "message"},
            ],
            "edges": [
                {"from": "like", "to": "comment", "delay_minutes": 60},
                {"from": "comment", "to": "invite", "delay_minutes": 720},
                {"from": "invite", "to": "message", "condition": "accepted", "wait_hours": 24},
                {"from": "message", "to": "follow_up", "delay_minutes": 720},
            ],
        }
    elif key == "standard_connect":
        raw = {
            "steps": [
                {"id": "invite", "action": "invite"},
                {"id": "message", "action": "message"},
                {"id": "follow_up", "action": "message"},
            ],
            "edges": [
                {"from": "invite", "to": "message", "condition": "accepted", "wait_hours": 24},
                {"from": "message", "to": "follow_up", "delay_minutes": 720},
            ],
        }
    elif key == "direct_connect":
        raw = {
            "steps": [{"id": "invite", "action": "invite"}, {"id": "message", "action": "message"}],
            "edges": [{"from": "invite", "to": "message", "condition": "accepted", "wait_hours": 1}],
        }
    else:
        raw = {
            "steps": [{"id": "message", "action": "message"}, {"id": "follow_up", "action": "message"}],
            "edges": [{"from": "message", "to": "follow_up", "delay_minutes": 720}],
        }
    if email_fallback:
        raw["steps"].append({"id": "email", "action": "email"})
        if key == "message_connected":
            raw["edges"].append({"from": "follow_up", "to": "email", "delay_minutes": 720})
        else:
            raw["edges"].append({"from": "invite", "to": "email", "condition": "not_accepted", "delay_minutes": 60})
    raw["preset"] = key
    return raw


def normalise_preset(name: str) -> str:
    """``"Warm intro"`` / ``"warm-intro"`` -> ``"warm_intro"``; GraphError for an unknown preset."""
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    aliases = {"message_connected_leads": "message_connected"}
    key = aliases.get(key, key)
    if key not in PRESET_TITLES:
        raise GraphError("workflow", f"unknown preset {name!r}; one of: {', '.join(PRESET_TITLES)}")
    return key


# -- validation ----------------------------------------------------------------------------------


def _int_in(value: Any, path: str, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise GraphError(path, f"{what} must be a whole number between {lo} and {hi}")
    if not lo <= int(value) <= hi:
        raise GraphError(path, f"{what} must be between {lo} and {hi}, got {int(value)}")
    return int(value)


def _parse_steps(raw_steps: Any, default_note: bool) -> dict[str, Step]:
    if not isinstance(raw_steps, list) or not raw_steps:
        raise GraphError("workflow.steps", "a workflow needs at least one step")
    steps: dict[str, Step] = {}
    for i, s in enumerate(raw_steps):
        path = f"workflow.steps[{i}]"
        if not isinstance(s, dict):
            raise GraphError(path, "a step is an object with 'id' and 'action'")
        sid, action = s.get("id"), s.get("action")
        if not isinstance(sid, str) or not sid.strip():
            raise GraphError(f"{path}.id", "a step needs a non-empty string id")
        if sid in steps:
            raise GraphError(f"{path}.id", f"duplicate step id {sid!r}")
        if action not in ACTIONS:
            raise GraphError(f"{path}.action", f"unknown action {action!r}; one of: {', '.join(ACTIONS)}")
        mode = s.get("mode", "draft" if action == "comment" else "auto")
        if mode not in ("auto", "draft"):
            raise GraphError(f"{path}.mode", "mode must be 'auto' or 'draft'")
        timeout = s.get("accept_timeout_hours", DEFAULT_ACCEPT_TIMEOUT_HOURS)
        timeout = _int_in(timeout, f"{path}.accept_timeout_hours", *ACCEPT_TIMEOUT_HOURS, "accept timeout (hours)")
        note = bool(s.get("note", default_note)) and action == "invite"
        template = s.get("template")
        if template is not None and (not isinstance(template, str) or not 0 < len(template) <= 200):
            raise GraphError(f"{path}.template", "template is a template name or id of 1-200 characters")
        variants = _parse_variants(s.get("variants"), path, action, note)
        steps[sid] = Step(
            id=sid,
            action=action,
            note=note,
            mode=mode,
            subject=s.get("subject"),
            body=s.get("body"),
            accept_timeout_hours=timeout,
            template=template,
            variants=variants,
        )
    return steps


def _text(value: Any, path: str, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise GraphError(path, f"{what} is a string of 1-{limit} characters")
    return value


def _parse_variants(raw: Any, path: str, action: str, note: bool) -> tuple[Variant, ...]:
    """A step's A/B variants: 2-10 objects with a unique ``id`` and their ``template`` (an email's ``subject`` and
    ``body`` too), only on a step that sends a text."""
    if raw is None:
        return ()
    lo, hi = VARIANTS
    if not isinstance(raw, list) or not lo <= len(raw) <= hi:
        raise GraphError(f"{path}.variants", f"variants is a list of {lo} to {hi} variants")
    if action not in TEXT_CHANNELS or (action == "invite" and not note):
        raise GraphError(f"{path}.variants", "only a step that sends a text (an invite with a note) has variants")
    out: list[Variant] = []
    for i, v in enumerate(raw):
        where = f"{path}.variants[{i}]"
        if not isinstance(v, dict) or set(v) - {"id", "template", "subject", "body"}:
            raise GraphError(where, "a variant is an object with id and template (subject, body for an email)")
        vid = _text(v.get("id"), f"{where}.id", "a variant id", 100)
        if vid is None or any(o.id == vid for o in out):
            raise GraphError(f"{where}.id", "every variant needs its own id")
        out.append(
            Variant(
                id=vid,
                template=_text(v.get("template"), f"{where}.template", "template", 200),
                subject=_text(v.get("subject"), f"{where}.subject", "subject", 1000),
                body=_text(v.get("body"), f"{where}.body", "body", 20_000),
            )
        )
    return tuple(out)


def _linear_edges(raw_steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Edges of a sequential step list without ``edges``: each step follows the previous one; a step with
    ``if: accepted|not_accepted`` follows the most recent invite instead."""
    edges: list[dict[str, Any]] = []
    last_invite: str | None = None
    for prev, cur in pairwise(raw_steps):
        if prev.get("action") == "invite":
            last_invite = prev.get("id")
        cond = cur.get("if", "always")
        source = last_invite if cond in ("accepted", "not_accepted") and last_invite else prev.get("id")
        edge: dict[str, Any] = {"from": source, "to": cur.get("id"), "condition": cond}
        if "wait_hours" in cur:
            edge["wait_hours"] = cur["wait_hours"]
        if "delay_minutes" in cur:
            edge["delay_minutes"] = cur["delay_minutes"]
        edges.append(edge)
    return edges


def _edge_delay(e: dict[str, Any], path: str, invite_to_message: bool) -> int:
    """The edge's wait in minutes, checked against its range (GraphError names the range)."""
    if invite_to_message:
        if "wait_hours" in e:
            return 60 * _int_in(
                e["wait_hours"], f"{path}.wait_hours", *INVITE_WAIT_HOURS, "invite-to-message wait (hours)"
            )
        if "delay_minutes" in e:
            minutes = e["delay_minutes"]
            lo, hi = INVITE_WAIT_HOURS
            if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not lo * 60 <= minutes <= hi * 60:
                raise GraphError(
                    f"{path}.delay_minutes",
                    f"invite-to-message wait must be between {lo} and {hi} hours, got {minutes} minutes",
                )
            return int(minutes)
        return DEFAULT_INVITE_WAIT_HOURS * 60
    if "delay_minutes" in e:
        return _int_in(e["delay_minutes"], f"{path}.delay_minutes", *SPACING_MINUTES, "step spacing (minutes)")
    if "wait_hours" in e:
        hours = e["wait_hours"]
        lo, hi = SPACING_MINUTES
        if isinstance(hours, bool) or not isinstance(hours, int | float) or not lo <= hours * 60 <= hi:
            raise GraphError(
                f"{path}.wait_hours", f"step spacing must be between {lo} and {hi} minutes, got {hours} hours"
            )
        return int(hours * 60)
    return DEFAULT_SPACING_MINUTES


def validate_graph(raw: dict[str, Any], *, default_note: bool = True) -> Graph:
    """Validate a raw workflow graph. Range errors raise :class:`GraphError`; invalid and cycle-closing
    edges are dropped with warnings; unreachable steps are reported."""
    if not isinstance(raw, dict):
        raise GraphError("workflow", "a workflow is a preset name or an object with 'steps' and 'edges'")
    raw_steps = raw.get("steps")
    steps = _parse_steps(raw_steps, default_note)
    assert isinstance(raw_steps, list)
    raw_edges = raw.get("edges")
    if raw_edges is None:
        raw_edges = _linear_edges(raw_steps)
    if not isinstance(raw_edges, list):
        raise GraphError("workflow.edges", "edges is a list of {from, to, condition, delay_minutes|wait_hours}")
    start = raw.get("start", next(iter(steps)))
    if start not in steps:
        raise GraphError("workflow.start", f"start step {start!r} is not one of the steps")

    warnings: list[str] = []
    edges: list[Edge] = []
    seen_pairs: set[tuple[str, str]] = set()
    for i, e in enumerate(raw_edges):
        path = f"workflow.edges[{i}]"
        if not isinstance(e, dict):
            warnings.append(f"edge {i} is not an object; removed")
            continue
        src, dst, cond = e.get("from"), e.get("to"), e.get("condition", e.get("if", "always"))
        label = f"edge {i} ({src} -> {dst})"
        if src not in steps or dst not in steps:
            missing = src if src not in steps else dst
            warnings.append(f"{label} refers to unknown step {missing!r}; removed")
            continue
        assert isinstance(src, str) and isinstance(dst, str)
        if src == dst:
            warnings.append(f"{label} points to itself (closes a cycle); removed")
            continue
        if cond not in CONDITIONS:
            warnings.append(f"{label} has unknown condition {cond!r}; removed")
            continue
        src_action, dst_action = steps[src].action, steps[dst].action
        if cond != "always" and src_action != "invite":
            warnings.append(f"{label}: condition {cond!r} is only valid after an invite; removed")
            continue
        if (src, dst) in seen_pairs:
            warnings.append(f"{label} duplicates an earlier edge; removed")
            continue
        invite_to_message = src_action == "invite" and dst_action == "message"
        if invite_to_message and cond == "not_accepted":
            warnings.append(f"{label}: a message cannot reach a lead who did not accept the invite; removed")
            continue
        if invite_to_message and cond == "always":
            warnings.append(f"{label}: a message after an invite waits for acceptance (condition set to 'accepted')")
            cond = "accepted"
        delay = _edge_delay(e, path, invite_to_message and cond == "accepted")
        seen_pairs.add((src, dst))
        edges.append(Edge(src, dst, cond, delay))

    edges, cycle_warnings = _remove_cycles(start, list(steps), edges)
    warnings.extend(cycle_warnings)
    reached = _reachable(start, edges)
    unreachable = tuple(s for s in steps if s not in reached)
    for s in unreachable:
        warnings.append(f"step {s!r} is unreachable from the start step {start!r}; it will not run")
    graph = Graph(
        start=start,
        steps=steps,
        edges=tuple(edges),
        warnings=tuple(warnings),
        unreachable=unreachable,
        preset=raw.get("preset"),
    )
    for i, step in enumerate(steps.values()):
        if (
            step.action == "email"
            and step.id not in unreachable
            and not graph.has_ancestor(step.id, {"invite", "message"})
        ):
            raise GraphError(
                f"workflow.steps[{i}]",
                f"email step {step.id!r} needs an invite or message step before it (email fallback)",
            )
    return graph


def _remove_cycles(start: str, order: list[str], edges: list[Edge]) -> tuple[list[Edge], list[str]]:
    """Depth-first from the start (then from any step not yet visited); an edge to a step on the current
    path closes a cycle and is removed."""
    out_edges: dict[str, list[Edge]] = {s: [] for s in order}
    for e in edges:
        out_edges[e.source].append(e)
    removed: list[Edge] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(root: str) -> None:
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            if i >= len(out_edges[node]):
                state[node] = 2
                stack.pop()
                continue
            stack[-1] = (node, i + 1)
            e = out_edges[node][i]
            st = state.get(e.target)
            if st == 1:
                removed.append(e)
            elif st is None:
                state[e.target] = 1
                stack.append((e.target, 0))

    for root in [start, *order]:
        if root not in state:
            visit(root)
    warnings = [f"edge {e.source} -> {e.target} closes a cycle; removed" for e in removed]
    return [e for e in edges if e not in removed], warnings


def _reachable(start: str, edges: list[Edge]) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        node = todo.pop()
        for e in edges:
            if e.source == node and e.target not in seen:
                seen.add(e.target)
                todo.append(e.target)
    return seen


PRESET_OPTIONS = ("spacing_minutes", "invite_wait_hours", "comment_mode", "without")


def customise_preset(raw: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """A preset's raw graph with the builder's options applied (still to be validated):

    - ``spacing_minutes`` (5-720): the wait of every ``always`` edge (the step spacing);
    - ``invite_wait_hours`` (1-168): the wait after acceptance before the message (``accepted`` edges);
    - ``comment_mode`` (``auto`` | ``draft``): how comment steps post;
    - ``without``: step ids left out; the edges that needed them are then removed by validation, with warnings.
    """
    out = {**raw, "steps": [dict(s) for s in raw["steps"]], "edges": [dict(e) for e in raw["edges"]]}
    spacing = options.get("spacing_minutes")
    if spacing is not None:
        minutes = _int_in(spacing, "workflow.spacing_minutes", *SPACING_MINUTES, "step spacing (minutes)")
        for e in out["edges"]:
            if e.get("condition", "always") == "always":
                e.pop("wait_hours", None)
                e["delay_minutes"] = minutes
    wait = options.get("invite_wait_hours")
    if wait is not None:
        hours = _int_in(wait, "workflow.invite_wait_hours", *INVITE_WAIT_HOURS, "invite-to-message wait (hours)")
        for e in out["edges"]:
            if e.get("condition") == "accepted":
                e.pop("delay_minutes", None)
                e["wait_hours"] = hours
    mode = options.get("comment_mode")
    if mode is not None:
        if mode not in ("auto", "draft"):
            raise GraphError("workflow.comment_mode", "comment mode must be 'auto' or 'draft'")
        for s in out["steps"]:
            if s["action"] == "comment":
                s["mode"] = mode
    without = options.get("without") or []
    if not isinstance(without, list):
        raise GraphError("workflow.without", "without is a list of step ids")
    ids = [s["id"] for s in out["steps"]]
    for i, sid in enumerate(without):
        if sid not in ids:
            raise GraphError(f"workflow.without[{i}]", f"{sid!r} is not a step of this preset ({', '.join(ids)})")
    out["steps"] = [s for s in out["steps"] if s["id"] not in without]
    if not out["steps"]:
        raise GraphError("workflow.without", "a workflow needs at least one step")
    if out.get("start") is None and without and ids[0] in without:
        out["start"] = out["steps"][0]["id"]
    return out


def resolve_workflow(spec: str | dict[str, Any], *, default_note: bool, email_fallback: bool) -> Graph:
    """A preset name, ``{"preset": name, <options of customise_preset>}`` or a full graph -> the validated graph."""
    if isinstance(spec, str):
        return validate_graph(preset_graph(spec, email_fallback=email_fallback), default_note=default_note)
    if isinstance(spec, dict) and "steps" not in spec and isinstance(spec.get("preset"), str):
        raw = preset_graph(spec["preset"], email_fallback=email_fallback or bool(spec.get("email_fallback")))
        return validate_graph(customise_preset(raw, spec), default_note=default_note)
    return validate_graph(spec, default_note=default_note)
