"""The console's write commands: what a user's action asks of the services, in order, over their public APIs.

Each raises :class:`Refused` with the API that refused (so its field paths map to the right form fields);
the pages turn that into messages next to the fields and re-render the form as it was filled.

The campaign builder's launch runs in two stages on purpose: :func:`create_pending_campaign` (the audience's
search, the campaign's own template, the pending campaign) ends at the summary page, and
:func:`launch_campaign` launches from there after the user confirms. A later "prepare" stage (drafts
written and reviewed in the Messaging Lab before launch) slots in between the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from . import builder, models
from .backends import BackendRefused, Backends


class Refused(Exception):
    """A backend refused a step of a command: ``api`` names it, ``refusal`` has its problem."""

    def __init__(self, api: str, refusal: BackendRefused) -> None:
        super().__init__(f"{api}: {refusal}")
        self.api = api
        self.refusal = refusal

    def field_errors(self) -> builder.FieldErrors:
        """The refusal as messages by form field (with the upgrade a plan_required problem names)."""
        r = self.refusal
        out = builder.errors_of(self.api, r.errors, r.detail, r.field)
        upgrade = r.extra.get("upgrade")
        if r.code == "plan_required" and isinstance(upgrade, dict):
            for name in out.messages:
                out.upgrade[name] = {str(k): str(v) for k, v in upgrade.items()}
        return out


async def _step(api: str, call: Any) -> Any:
    try:
        return await call
    except BackendRefused as exc:
        if exc.status == 404 and exc.code == "not_found" and not exc.field:
            raise
        raise Refused(api, exc) from exc


@dataclass(frozen=True)
class Pending:
    """A campaign created and waiting for its launch (the builder's first stage)."""

    campaign: models.CampaignDetail
    search_id: UUID | None


async def audience_of(
    backends: Backends, token: str, values: dict[str, Any], key: str
) -> tuple[dict[str, str], UUID | None]:
    """The campaign's audience: a new saved search (started now), or an existing list or import."""
    kind = values.get("audience_type")
    request = builder.search_request(values)
    if request is not None:
        made = await _step(
            "discovery", backends.discovery.create_search(token, request, key=builder.search_key(key, request))
        )
        return {"type": "source_group", "ref": str(made.source_group_id)}, made.search_id
    ref = values.get("csv_group_id") if kind == "csv" else values.get("source_group_id")
    if not ref:
        what = "Upload a CSV file first" if kind == "csv" else "Choose a lead list"
        field_name = "csv_group_id" if kind == "csv" else "source_group_id"
        raise Refused(
            "console",
            BackendRefused(422, "invalid_request", what, field_name, [(field_name, what)]),
        )
    return {"type": "source_group", "ref": str(ref)}, None


async def template_of(backends: Backends, token: str, values: dict[str, Any]) -> str | None:
    """The campaign's own template when its body was edited (saved once: a retry finds it by name)."""
    body = builder.custom_template(values)
    if body is None:
        return None
    name = builder.template_name(values, body)
    category = values.get("template") or "professional_introduction"
    try:
        made = await backends.messaging.create_template(token, {"name": name, "category": category, "body": body})
        return made.template_id
    except BackendRefused as exc:
        if exc.code != "template_exists":
            raise Refused("messaging", exc) from exc
    existing = await backends.messaging.templates(token)
    found = next((t for t in existing.items if t.name == name and not t.builtin), None)
    if found is None:
        raise Refused("messaging", BackendRefused(409, "template_exists", "a template with this name exists", "name"))
    return found.template_id


async def create_pending_campaign(
    backends: Backends, token: str, values: dict[str, Any], key: str, default_tz: str
) -> Pending:
    """The builder's first stage: the audience, the template and the campaign (pending, not launched).

    ``key`` is the builder's own idempotency key: sent twice (a double click, a retry after an error in a
    later step), nothing is made twice."""
    audience, search_id = await audience_of(backends, token, values, key)
    template_ref = await template_of(backends, token, values)
    body = builder.campaign_request(values, audience, template_ref, default_tz)
    campaign = await _step("outreach", backends.outreach.create_campaign(token, body, key=f"{key}:campaign"))
    return Pending(campaign, search_id)


async def launch_campaign(
    backends: Backends, token: str, campaign_id: UUID, *, key: str, confirm_email: bool, daily_limit: str
) -> models.CampaignDetail:
    """The builder's last stage: launch a pending campaign (once per key, however often it is clicked)."""
    body: dict[str, Any] = {"confirm_email_fallback": confirm_email}
    limit = daily_limit.strip()
    if limit:
        body["daily_limit"] = int(limit) if limit.lstrip("-").isdigit() else limit
    return await _step("outreach", backends.outreach.launch(token, campaign_id, body, key=key))


async def upgrade(backends: Backends, token: str, *, plan: str | None, add_on: str | None) -> models.WorkspacePlan:
    """An explicit upgrade a user asked for (a plan, an add-on)."""
    body: dict[str, Any] = {}
    if plan:
        body["plan"] = plan
    if add_on:
        body["add_ons"] = [add_on]
    return await _step("outreach", backends.outreach.upgrade(token, body))
