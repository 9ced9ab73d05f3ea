"""The console's write commands: what a user's action asks of the services, in order, over their public APIs.
The routes (pages_*.py) read the form, call one command and render its outcome; no route writes by itself.

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

from . import builder, domain, models
from .backends import BackendRefused, Backends, BackendUnavailable


class Refused(Exception):
    """A backend refused a step of a command: ``api`` names it, ``refusal`` has its problem. A backend that did
    not answer (down, timing out, a 5xx after the retries) is a refusal too, with status 503 (``unavailable``):
    the form is shown again as it was filled, with the message on it, like any other refusal."""

    def __init__(self, api: str, refusal: BackendRefused) -> None:
        super().__init__(f"{api}: {refusal}")
        self.api = api
        self.refusal = refusal

    @property
    def unavailable(self) -> bool:
        """Whether the backend did not answer (rather than refusing what was asked)."""
        return self.refusal.status >= 500

    @property
    def status(self) -> int:
        """The status of the page that shows the form again: 503 when the backend did not answer, else 422."""
        return 503 if self.unavailable else 422

    def field_errors(self) -> builder.FieldErrors:
        """The refusal as messages by form field (with the upgrade a plan_required problem names)."""
        r = self.refusal
        out = builder.errors_of(self.api, r.errors, r.detail, r.field)
        upgrade = r.extra.get("upgrade")
        if r.code == "plan_required" and isinstance(upgrade, dict):
            for name in out.messages:
                out.upgrade[name] = {str(k): str(v) for k, v in upgrade.items()}
        return out


def unavailable(exc: BackendUnavailable) -> Refused:
    """A backend that did not answer, as the refusal a form shows (no field of the form is wrong)."""
    return Refused(exc.backend, BackendRefused(503, "unavailable", domain.unavailable_message(exc.backend)))


async def _step(api: str, call: Any) -> Any:
    try:
        return await call
    except BackendRefused as exc:
        if exc.status == 404 and exc.code == "not_found" and not exc.field:
            raise
        raise Refused(api, exc) from exc
    except BackendUnavailable as exc:
        raise unavailable(exc) from exc


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
        if kind == "csv":
            raise _console_refusal("csv_group_id", "Upload a CSV file first")
        raise _console_refusal("source_group_id", "Choose a lead list")
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
    except BackendUnavailable as exc:
        raise unavailable(exc) from exc
    existing = await _step("messaging", backends.messaging.templates(token))
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


# -- finding leads ------------------------------------------------------------------------------------


async def save_search(backends: Backends, token: str, body: dict[str, Any], key: str | None) -> models.SearchCreated:
    """Save a search with its target (it runs in the background and fills a lead list); once per key."""
    return await _step("discovery", backends.discovery.create_search(token, body, key=key))


async def import_csv(
    backends: Backends, token: str, filename: str, content: bytes, name: str | None
) -> models.ImportReport:
    """Upload a CSV: the good rows become leads of a new list, each bad row comes back with its error."""
    return await _step("discovery", backends.discovery.import_csv(token, filename, content, name))


async def add_lead(backends: Backends, token: str, body: dict[str, Any]) -> models.LeadAdded:
    """Add one lead by hand (a LinkedIn profile URL or an email identifies it)."""
    return await _step("discovery", backends.discovery.add_lead(token, body))


# -- a campaign ---------------------------------------------------------------------------------------


async def pause_campaign(backends: Backends, token: str, campaign_id: UUID) -> models.CampaignDetail:
    """Pause: nothing more is sent and the account leases are released."""
    return await _step("outreach", backends.outreach.pause(token, campaign_id))


async def resume_campaign(backends: Backends, token: str, campaign_id: UUID) -> models.CampaignDetail:
    """Resume a paused campaign."""
    return await _step("outreach", backends.outreach.resume(token, campaign_id))


async def delete_campaign(backends: Backends, token: str, campaign_id: UUID) -> None:
    """Delete a campaign (its leases are released, its pending steps cancelled)."""
    await _step("outreach", backends.outreach.delete_campaign(token, campaign_id))


async def replace_accounts(
    backends: Backends, token: str, campaign_id: UUID, account_ids: list[UUID]
) -> models.CampaignDetail:
    """Resolve "needs review": the campaign sends from these accounts and runs again."""
    if not account_ids:
        raise _console_refusal("account_ids", "Choose at least one account")
    return await _step("outreach", backends.outreach.replace_accounts(token, campaign_id, account_ids))


# -- the Messaging Lab --------------------------------------------------------------------------------


async def approve_draft(backends: Backends, token: str, draft_id: UUID) -> models.Draft:
    """Approve a draft as it is (it is sent in its step's turn)."""
    return await _step("messaging", backends.messaging.approve(token, draft_id))


async def check_edit(backends: Backends, token: str, draft_id: UUID, text: str) -> None:
    """The API's own verdict on an edit as typed (its 422 as :class:`Refused`); nothing changes."""
    await _step("messaging", backends.messaging.edit(token, draft_id, text, dry_run=True))


async def edit_draft(backends: Backends, token: str, draft_id: UUID, text: str) -> models.Draft:
    """Replace a draft's text and approve it (refused over the step's character limit)."""
    return await _step("messaging", backends.messaging.edit(token, draft_id, text))


async def reject_draft(backends: Backends, token: str, draft_id: UUID, reason: str) -> models.Rejected:
    """Reject a draft with feedback; messaging writes its replacement from the feedback."""
    return await _step("messaging", backends.messaging.reject(token, draft_id, reason))


async def approve_drafts(
    backends: Backends, token: str, campaign_id: UUID, draft_ids: list[UUID] | None
) -> models.BulkApproved:
    """Approve the drafts chosen, or every pending draft of the campaign (``draft_ids`` None)."""
    if draft_ids is not None and not draft_ids:
        raise _console_refusal("draft_ids", "Tick the drafts to approve first")
    return await _step("messaging", backends.messaging.approve_many(token, campaign_id, draft_ids))


# -- accounts -----------------------------------------------------------------------------------------


async def connect_linkedin(
    backends: Backends, token: str, display_name: str | None, return_url: str
) -> models.ConnectedAccount:
    """Start a LinkedIn connection through the provider's hosted page (its ``auth_url``), which sends the user
    back to ``return_url``."""
    body = {"provider": "linkedin", "display_name": display_name, "hosted": True, "return_url": return_url}
    return await _step("outreach", backends.outreach.connect(token, body))


async def connect_sender(backends: Backends, token: str, sender_email: str) -> models.ConnectedAccount:
    """Connect an email sender (the Scale plan's, or its add-on: a 403 plan_required otherwise)."""
    return await _step(
        "outreach", backends.outreach.connect(token, {"provider": "email", "sender_email": sender_email})
    )


async def reconnect_link(backends: Backends, token: str, account_id: UUID, return_url: str) -> models.AuthLink:
    """The provider's hosted reconnect page for an account that needs it."""
    return await _step("outreach", backends.outreach.reconnect_link(token, account_id, return_url))


async def refresh_account(backends: Backends, token: str, account_id: UUID) -> models.OutreachAccount:
    """Ask the provider for the account's state again ("check again" while it is being verified)."""
    return await _step("outreach", backends.outreach.refresh(token, account_id))


async def delete_account(backends: Backends, token: str, account_id: UUID) -> None:
    """Delete an account (campaigns left without one need review)."""
    await _step("outreach", backends.outreach.delete_account(token, account_id))


# -- the blocklist ------------------------------------------------------------------------------------


async def block(backends: Backends, token: str, kind: str, value: str) -> None:
    """Put a domain, an email or a LinkedIn profile URL on the workspace blocklist (outreach checks every send
    against it; a domain covers its subdomains)."""
    if kind not in domain.BLOCK_KINDS:
        raise _console_refusal("kind", "Choose what to block: a domain, an email or a LinkedIn profile URL")
    if not value.strip():
        raise _console_refusal("value", "Enter the domain, email or LinkedIn profile URL to block")
    await _step("outreach", backends.outreach.block(token, kind, value.strip()))


async def unblock(backends: Backends, token: str, kind: str, value: str) -> None:
    """Take an entry off the blocklist (its leads can be contacted again). An entry already gone (removed in
    another tab, a second click) is not an error: what the user asked for is the case."""
    try:
        await backends.outreach.unblock(token, kind, value)
    except BackendRefused as exc:
        if exc.status != 404:
            raise Refused("outreach", exc) from exc
    except BackendUnavailable as exc:
        raise unavailable(exc) from exc


def _console_refusal(field_name: str, message: str) -> Refused:
    """A form the console itself refuses before calling anything (nothing chosen)."""
    return Refused("console", BackendRefused(422, "invalid_request", message, field_name, [(field_name, message)]))
