"""``leadstream.campaign.created.v1`` -> ``.v2``: the free-form workflow, delivery and video become typed.

Version 1 carried ``workflow``, ``delivery`` and ``video_template`` as free-form JSON objects whose shape lived
only in the producer, so readers guessed (``steps`` or ``nodes``, ``action`` or ``type``, ``email_fallback`` or
``email``, ``preset`` or ``name``). Every such guess lives here, once: a v1 record decodes as a v2
:class:`~leadstream_schemas.CampaignCreated` whose :class:`~leadstream_schemas.Workflow`,
:class:`~leadstream_schemas.Delivery` and :class:`~leadstream_schemas.VideoSettings` readers use as they are.

What a v1 record held, and how it is read:

- workflow: steps under ``steps`` (or ``nodes``), each with ``action`` (or ``type``) and its settings at the top
  level or under ``config``; edges under ``edges`` (``from``/``to`` or ``source``/``target``, ``condition`` or
  ``if``, ``delay_minutes`` or ``wait_hours``), or none: then each step follows the previous one, and a step with
  ``if: accepted|not_accepted`` follows the latest invite after its own ``wait_hours``. No step list: no workflow
  (None). The preset is ``preset`` (or ``name``).
- delivery: outreach's keys as they are; ``start_time``/``end_time`` (``HH:MM``) for the hours; ``daily_invites``
  and ``daily_messages`` for the caps; the email fallback under ``email_fallback`` (or ``email``) when it names a
  sender.
- video: ``video_template`` (``template_id`` or ``id``; ``segments`` with ``name`` or ``variable``, or a list of
  ``variables``), else ``video_template_id`` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any

from ..upcasting import Payload, upcaster

ACTIONS = ("comment", "like", "invite", "message", "email")
CONDITIONS = ("always", "accepted", "not_accepted")
_TEXT_ACTIONS = {"invite", "message", "email", "comment"}
_DRAFT_MODES = {"draft", "draft_for_approval", "approval", "review", "manual"}


def _setting(node: Mapping[str, Any], key: str) -> Any:
    """A step setting, at the top level of the node or under its ``config``."""
    if key in node:
        return node[key]
    config = node.get("config")
    return config.get(key) if isinstance(config, Mapping) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _step(node: Mapping[str, Any], index: int, invite_note: bool) -> dict[str, Any] | None:
    action = str(node.get("action") or node.get("type") or "").lower()
    if action not in ACTIONS:
        return None
    step: dict[str, Any] = {"id": str(node.get("id") or f"{action}_{index}"), "action": action}
    if action == "invite":
        explicit = next(
            (_setting(node, k) for k in ("note", "with_note", "needs_text") if _setting(node, k) is not None), None
        )
        step["note"] = invite_note if explicit is None else bool(explicit)
        step["accept_timeout_hours"] = _int(_setting(node, "accept_timeout_hours")) or 168
        step["needs_text"] = step["note"]
    else:
        step["needs_text"] = action in _TEXT_ACTIONS and _setting(node, "needs_text") is not False
    if action == "comment":
        step["mode"] = "draft" if str(_setting(node, "mode") or "draft").lower() in _DRAFT_MODES else "auto"
    if action == "email":
        step["subject"], step["body"] = _text(_setting(node, "subject")), _text(_setting(node, "body"))
    step["template"] = _text(_setting(node, "template"))
    step["channel"] = action if step["needs_text"] else None
    return step


def _delay(raw: Mapping[str, Any]) -> int:
    minutes = _int(raw.get("delay_minutes"))
    if minutes is not None:
        return minutes
    hours = raw.get("wait_hours")
    return int(hours * 60) if isinstance(hours, int | float) and not isinstance(hours, bool) else 0


def _edges(raw: Mapping[str, Any], nodes: list[Mapping[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    known = set(ids)
    raw_edges = raw.get("edges")
    out: list[dict[str, Any]] = []
    if isinstance(raw_edges, list):
        for e in raw_edges:
            if not isinstance(e, Mapping):
                continue
            source, target = e.get("from", e.get("source")), e.get("to", e.get("target"))
            condition = e.get("condition", e.get("if", "always"))
            if source in known and target in known and condition in CONDITIONS:
                out.append({"source": source, "target": target, "condition": condition, "delay_minutes": _delay(e)})
        return out
    last_invite: str | None = None
    for (prev, prev_id), (cur, cur_id) in pairwise(zip(nodes, ids, strict=True)):
        if str(prev.get("action") or prev.get("type") or "").lower() == "invite":
            last_invite = prev_id
        condition = cur.get("if", cur.get("condition", "always"))
        condition = condition if condition in CONDITIONS else "always"
        source = last_invite if condition != "always" and last_invite else prev_id
        out.append({"source": source, "target": cur_id, "condition": condition, "delay_minutes": _delay(cur)})
    return out


def workflow_v1(raw: Any, *, invite_note: bool = True) -> dict[str, Any] | None:
    """A v1 ``workflow`` object as a v2 :class:`~leadstream_schemas.Workflow` payload (None without a step list)."""
    if not isinstance(raw, Mapping):
        return None
    nodes_raw = next((raw[k] for k in ("steps", "nodes") if isinstance(raw.get(k), list) and raw[k]), None)
    if nodes_raw is None:
        return None
    nodes: list[Mapping[str, Any]] = []
    steps: list[dict[str, Any]] = []
    for i, node in enumerate(nodes_raw):
        step = _step(node, i, invite_note) if isinstance(node, Mapping) else None
        if step is not None and all(s["id"] != step["id"] for s in steps):
            nodes.append(node)
            steps.append(step)
    if not steps:
        return None
    ids = [s["id"] for s in steps]
    start = raw.get("start") if raw.get("start") in ids else ids[0]
    preset = _text(raw.get("preset")) or _text(raw.get("name"))
    unreachable = [str(x) for x in raw.get("unreachable") or [] if str(x) in ids]
    warnings = [str(w) for w in raw.get("warnings") or [] if isinstance(w, str)]
    return {
        "preset": preset,
        "version": 1,
        "start": start,
        "steps": steps,
        "edges": _edges(raw, nodes, ids),
        "warnings": warnings,
        "unreachable": unreachable,
    }


def _hour(value: Any) -> int | None:
    if isinstance(value, str) and ":" in value:
        head = value.split(":", 1)[0]
        return int(head) if head.isdigit() else None
    return _int(value)


def delivery_v1(raw: Any) -> dict[str, Any]:
    """A v1 ``delivery`` object as a v2 :class:`~leadstream_schemas.Delivery` payload."""
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key in ("pace", "pace_label", "timezone"):
        if isinstance(raw.get(key), str):
            out[key] = raw[key]
    for key in ("daily_limit", "daily_cap", "weekly_limit", "daily_message_limit", "daily_email_limit"):
        if _int(raw.get(key)) is not None:
            out[key] = _int(raw[key])
    if "daily_cap" not in out and _int(raw.get("daily_invites")) is not None:
        out["daily_cap"] = _int(raw["daily_invites"])
    if "daily_message_limit" not in out and _int(raw.get("daily_messages")) is not None:
        out["daily_message_limit"] = _int(raw["daily_messages"])
    days = raw.get("active_days")
    if isinstance(days, list):
        out["active_days"] = [str(d) for d in days][:7]
    elif isinstance(days, str):
        out["active_days"] = [days]
    for key, alt in (("start_hour", "start_time"), ("end_hour", "end_time")):
        hour = _hour(raw.get(key, raw.get(alt)))
        if hour is not None:
            out[key] = hour
    for key in ("dry_run", "lead_timezones", "stop_company_on_reply"):
        if isinstance(raw.get(key), bool):
            out[key] = raw[key]
    for key in ("email_fallback", "email"):
        value = raw.get(key)
        if isinstance(value, Mapping) and _text(value.get("sender_email")):
            out["email_fallback"] = {
                "sender_email": value["sender_email"],
                "subject": str(value.get("subject") or ""),
                "body": str(value.get("body") or ""),
            }
            break
    return out


def video_v1(raw: Any, template_id: Any) -> dict[str, Any] | None:
    """A v1 ``video_template`` (and ``video_template_id``) as a v2 :class:`~leadstream_schemas.VideoSettings`."""
    if not isinstance(raw, Mapping):
        return {"template_id": template_id, "segments": []} if _text(template_id) else None
    tid = _text(raw.get("template_id")) or _text(raw.get("id")) or _text(template_id) or "default"
    segments: list[dict[str, Any]] = []
    for item in raw.get("segments") or []:
        if not isinstance(item, Mapping):
            continue
        field = str(item.get("field") or "").strip()
        name = str(item.get("name") or item.get("variable") or field).strip()
        if name:
            fallback = item.get("fallback")
            segments.append({"name": name, "field": field, "fallback": None if fallback is None else str(fallback)})
    if not segments:
        for variable in raw.get("variables") or []:
            if isinstance(variable, str) and variable.strip():
                segments.append({"name": variable, "field": variable, "fallback": None})
    return {"template_id": tid, "segments": segments}


@upcaster("leadstream.campaign.created.v1", "leadstream.campaign.created.v2")
def campaign_created_v1_to_v2(payload: Payload) -> Payload:
    """Read a v1 ``CampaignCreated`` as v2 (see the module's docstring for what is read how)."""
    strategy = payload.get("strategy")
    invite_note = bool(strategy.get("invite_note", True)) if isinstance(strategy, Mapping) else True
    payload["workflow"] = workflow_v1(payload.get("workflow"), invite_note=invite_note)
    payload["delivery"] = delivery_v1(payload.get("delivery"))
    payload["video"] = video_v1(payload.pop("video_template", None), payload.pop("video_template_id", None))
    return payload
