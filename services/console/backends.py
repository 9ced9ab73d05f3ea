"""The console's one client of the other services' public HTTP APIs (never their databases or modules).

Every call carries the signed-in workspace's token. Answers are parsed into the typed models of
:mod:`services.console.models`. Failures become three exceptions the pages turn into screens:
:class:`SignedOut` (the token was revoked: sign in again), :class:`BackendRefused` (a 4xx problem,
with its code, detail and field) and :class:`BackendUnavailable` (timeouts, connection errors and 5xx
answers after the shared client's retries).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar
from uuid import UUID

import httpx
from pydantic import BaseModel, RootModel, ValidationError

from services.runtime.clock import SCALE_HEADER, TIME_HEADER
from services.runtime.errors import field_path, validation_message
from services.runtime.http_client import ProviderHttpClient, RetryPolicy
from services.runtime.providers import ProviderError

from . import models
from .domain import TimeBase, time_base
from .settings import ConsoleSettings
from .sse import SseEvent, parse

M = TypeVar("M", bound=BaseModel)

_PASSTHROUGH = (400, 401, 403, 404, 409, 422)


class SignedOut(Exception):
    """The backend does not accept the session's token any more (revoked): the user must sign in again."""


class BackendUnavailable(Exception):
    """A backend did not answer usefully (down, timing out, 5xx) after the retries."""

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend}: {detail}")
        self.backend = backend


class BackendRefused(Exception):
    """A backend answered with a 4xx problem (RFC 9457): ``status``, ``code``, ``detail``, the ``field`` it names
    (its own, else its first ``errors[].field``), every ``errors[]`` entry as (field, message), and the
    problem's other members in ``extra`` (e.g. the ``upgrade`` of a ``plan_required``)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        field: str | None = None,
        errors: list[tuple[str, str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.field = status, code, detail, field
        self.errors = errors or ([(field, detail)] if field else [])
        self.extra = extra or {}


class Backend:
    """One service's API: JSON calls with the retry policy of the shared client, and event streams."""

    def __init__(self, name: str, base_url: str, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None):
        self.name = name
        # Few, quick retries: a person is waiting for the page.
        retry = RetryPolicy(max_retries=2, backoff_initial_s=0.2, max_retry_after_s=2.0, jitter=0.2)
        self.http = ProviderHttpClient(name, base_url, timeout_s=timeout_s, retry=retry, transport=transport)
        # A write is sent once unless it is idempotent (an Idempotency-Key, or a GET): a lost answer is reported,
        # never silently repeated (a second approve, a second upload).
        self.once = ProviderHttpClient(
            name, base_url, timeout_s=timeout_s, retry=RetryPolicy(max_retries=0), transport=transport
        )

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self.http.aclose()
        await self.once.aclose()

    async def call(
        self,
        token: str,
        method: str,
        path: str,
        model: type[M],
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        files: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> M:
        """``method path`` as the workspace of ``token``, parsed into ``model`` (``files``: a multipart upload)."""
        sent = {"Authorization": f"Bearer {token}", "Accept": "application/json", **(headers or {})}
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            if files is not None:  # a multipart upload: once, as it is (the shared client sends JSON)
                response = await self.once.client.request(
                    method, path, params=clean, headers=sent, files=files, data=data
                )
                if response.status_code >= 500:
                    raise ProviderError(f"{self.name} answered {response.status_code}", transient=True)
            else:
                idempotent = method == "GET" or any(k.lower() == "idempotency-key" for k in sent)
                client = self.http if idempotent else self.once
                response = await client.request(
                    method, path, params=clean, json=json, headers=sent, passthrough=_PASSTHROUGH
                )
        except httpx.HTTPError as exc:
            raise BackendUnavailable(self.name, repr(exc)) from exc
        except ProviderError as exc:
            raise BackendUnavailable(self.name, str(exc)) from exc
        self.observe(response)
        if response.status_code == 401:
            raise SignedOut(self.name)
        if response.status_code >= 400:
            raise _refusal(response)
        try:
            if not response.content:  # 204: nothing to parse
                return model.model_validate({})
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise BackendUnavailable(self.name, f"unexpected answer to {method} {path}: {exc}") from exc

    def observe(self, response: httpx.Response) -> None:
        """What a backend's answer tells beyond its body (the projection's clock); nothing by default."""

    async def items(self, token: str, method: str, path: str, model: type[M], **options: Any) -> M:
        """Like :meth:`call` for an answer that is a JSON list, parsed as ``model(items=[...])``."""
        wrapped = await self.call(token, method, path, _ListOf, **options)
        try:
            return model.model_validate({"items": wrapped.root})
        except ValidationError as exc:
            raise BackendUnavailable(self.name, f"unexpected answer to {method} {path}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def stream(self, token: str, path: str, last_event_id: str | None) -> AsyncIterator[AsyncIterator[SseEvent]]:
        """An open Server-Sent Events stream of ``path`` (resuming after ``last_event_id``)."""
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(10.0, read=60.0)  # the stream pings every 15 s
        try:
            async with self.http.client.stream("GET", path, headers=headers, timeout=timeout) as response:
                if response.status_code == 401:
                    raise SignedOut(self.name)
                if response.status_code >= 400:
                    await response.aread()
                    raise _refusal(response)
                yield parse(response.aiter_lines())
        except httpx.HTTPError as exc:
            raise BackendUnavailable(self.name, repr(exc)) from exc


class _ListOf(RootModel[list[Any]]):
    """A JSON list answer, before its items are parsed."""


def _refusal(response: httpx.Response) -> BackendRefused:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    errors = [
        (str(e["field"]), str(e.get("message") or ""))
        for e in body.get("errors") or []
        if isinstance(e, dict) and isinstance(e.get("field"), str)
    ]
    detail = body.get("detail")
    if isinstance(detail, list):
        # FastAPI's own validation shape ({"detail": [{"loc", "msg", "type"}]}), from a route that answers without
        # the services' problem handler: each entry in words at its field, never the list's Python repr.
        said = _validation_errors(detail)
        errors = errors or [(f, m) for f, m in said if f]
        detail = "; ".join(f"{f}: {m}" if f else m for f, m in said) or None
    elif not isinstance(detail, str):
        detail = None  # a detail that is not words (an object) says nothing a person can read
    field = body.get("field") if isinstance(body.get("field"), str) else (errors[0][0] if errors else None)
    known = {"type", "title", "status", "code", "detail", "field", "errors"}
    return BackendRefused(
        response.status_code,
        str(body.get("code") or "refused"),
        detail or response.reason_phrase or "refused",
        field,
        errors,
        {k: v for k, v in body.items() if k not in known},
    )


def _validation_errors(entries: list[Any]) -> list[tuple[str, str]]:
    """FastAPI's default validation errors as (field, message), in the words the services' own problems use."""
    out: list[tuple[str, str]] = []
    for e in entries[:50]:  # bounded: a page shows a few
        if not isinstance(e, dict) or not isinstance(e.get("msg"), str):
            continue
        loc = e.get("loc")
        where = field_path(loc) if isinstance(loc, list) and all(isinstance(p, str | int) for p in loc) else ""
        ctx = e.get("ctx") if isinstance(e.get("ctx"), dict) else {}
        out.append((where[:200], validation_message({**e, "ctx": ctx})[:500]))
    return out


class ProjectionApi(Backend):
    """The projection's read API: everything the pages show, and the clock its times are measured on."""

    time_base: TimeBase | None = None
    """The projection's clock as its last answer told it (None until it has answered)."""

    def observe(self, response: httpx.Response) -> None:
        found = time_base(response.headers.get(TIME_HEADER), response.headers.get(SCALE_HEADER), time.monotonic())
        if found is not None:
            self.time_base = found

    async def onboarding(self, token: str) -> models.Onboarding:
        return await self.call(token, "GET", "/v1/onboarding", models.Onboarding)

    async def home(self, token: str) -> models.Home:
        return await self.call(token, "GET", "/v1/home", models.Home)

    async def inbox(self, token: str) -> models.Inbox:
        return await self.call(token, "GET", "/v1/inbox", models.Inbox)

    async def campaigns(
        self, token: str, *, q: str | None = None, state: str | None = None, after: str | None = None, limit: int = 50
    ) -> models.CampaignPage:
        params = {"q": q, "state": state, "after": after, "limit": limit}
        return await self.call(token, "GET", "/v1/campaigns", models.CampaignPage, params=params)

    async def campaign(self, token: str, campaign_id: UUID) -> models.Campaign:
        return await self.call(token, "GET", f"/v1/campaigns/{campaign_id}", models.Campaign)

    async def summary(self, token: str, campaign_id: UUID) -> models.Summary:
        return await self.call(token, "GET", f"/v1/campaigns/{campaign_id}/summary", models.Summary)

    async def series(self, token: str, campaign_id: UUID, *, days: int, tz: str) -> models.Series:
        params = {"days": days, "tz": tz}
        return await self.call(token, "GET", f"/v1/campaigns/{campaign_id}/series", models.Series, params=params)

    async def stages(self, token: str, campaign_id: UUID) -> models.Stages:
        return await self.call(token, "GET", f"/v1/campaigns/{campaign_id}/stages", models.Stages)

    async def results(
        self,
        token: str,
        campaign_id: UUID,
        *,
        q: str | None = None,
        stage: str | None = None,
        after: str | None = None,
        limit: int = 25,
    ) -> models.ResultPage:
        params = {"q": q, "stage": stage, "after": after, "limit": limit}
        return await self.call(token, "GET", f"/v1/campaigns/{campaign_id}/results", models.ResultPage, params=params)

    async def lead(self, token: str, lead_id: UUID) -> models.Lead:
        return await self.call(token, "GET", f"/v1/leads/{lead_id}", models.Lead)

    async def timeline(self, token: str, lead_id: UUID) -> models.Timeline:
        params = {"limit": 200}  # the most a page holds (a lead's timeline is a few dozen events)
        return await self.call(token, "GET", f"/v1/leads/{lead_id}/timeline", models.Timeline, params=params)

    async def accounts(self, token: str) -> models.Accounts:
        return await self.call(token, "GET", "/v1/accounts", models.Accounts, params={"limit": 200})

    def changes(self, token: str, last_event_id: str | None) -> contextlib.AbstractAsyncContextManager[Any]:
        """The workspace's change stream (see the projection's ``/v1/changes/stream``)."""
        return self.stream(token, "/v1/changes/stream", last_event_id)


class DiscoveryApi(Backend):
    """Discovery: previews, saved searches, lead lists (source groups), CSV imports, manual adds, suggestions."""

    async def preview(self, token: str, kind: str, criteria: dict[str, Any], limit: int = 10) -> models.SearchPreview:
        body = {"kind": kind, "criteria": criteria, "limit": limit}
        return await self.call(token, "POST", "/v1/searches/preview", models.SearchPreview, json=body)

    async def create_search(self, token: str, body: dict[str, Any], key: str | None = None) -> models.SearchCreated:
        headers = {"Idempotency-Key": key} if key else None
        return await self.call(token, "POST", "/v1/searches", models.SearchCreated, json=body, headers=headers)

    async def search(self, token: str, search_id: UUID) -> models.Search:
        return await self.call(token, "GET", f"/v1/searches/{search_id}", models.Search)

    async def searches(self, token: str, limit: int = 50) -> models.SearchList:
        return await self.call(token, "GET", "/v1/searches", models.SearchList, params={"limit": limit})

    async def groups(self, token: str) -> models.SourceGroupList:
        return await self.call(token, "GET", "/v1/source-groups", models.SourceGroupList)

    async def members(
        self, token: str, group_id: UUID, *, limit: int = 50, after: int | None = None
    ) -> models.MemberPage:
        params = {"limit": limit, "after": after}
        return await self.call(token, "GET", f"/v1/source-groups/{group_id}/leads", models.MemberPage, params=params)

    async def import_csv(self, token: str, filename: str, content: bytes, name: str | None) -> models.ImportReport:
        files = {"file": (filename or "leads.csv", content, "text/csv")}
        data = {"name": name} if name else {}
        return await self.call(token, "POST", "/v1/imports/csv", models.ImportReport, files=files, data=data)

    async def add_lead(self, token: str, body: dict[str, Any]) -> models.LeadAdded:
        return await self.call(token, "POST", "/v1/leads", models.LeadAdded, json=body)

    async def suggestions(self, token: str, prompt: str) -> models.Suggestions:
        return await self.call(token, "POST", "/v1/signal-suggestions", models.Suggestions, json={"prompt": prompt})


class MessagingApi(Backend):
    """Messaging: the review queue (approve, edit, reject, bulk approve), previews and templates."""

    async def drafts(self, token: str, campaign_id: UUID, status: str = "pending", limit: int = 200) -> models.Drafts:
        params = {"status": status, "limit": limit}
        return await self.call(token, "GET", f"/v1/campaigns/{campaign_id}/drafts", models.Drafts, params=params)

    async def draft(self, token: str, draft_id: UUID) -> models.Draft:
        return await self.call(token, "GET", f"/v1/drafts/{draft_id}", models.Draft)

    async def approve(self, token: str, draft_id: UUID) -> models.Draft:
        return await self.call(token, "POST", f"/v1/drafts/{draft_id}/approve", models.Draft)

    async def approve_many(self, token: str, campaign_id: UUID, draft_ids: list[UUID] | None) -> models.BulkApproved:
        body = {"draft_ids": [str(d) for d in draft_ids]} if draft_ids else {}
        path = f"/v1/campaigns/{campaign_id}/drafts/approve"
        return await self.call(token, "POST", path, models.BulkApproved, json=body)

    async def edit(self, token: str, draft_id: UUID, text: str, *, dry_run: bool = False) -> models.Draft:
        params = {"dry_run": "true"} if dry_run else None
        path = f"/v1/drafts/{draft_id}/edit"
        return await self.call(token, "POST", path, models.Draft, json={"text": text}, params=params)

    async def reject(self, token: str, draft_id: UUID, reason: str) -> models.Rejected:
        path = f"/v1/drafts/{draft_id}/reject"
        return await self.call(token, "POST", path, models.Rejected, json={"reason": reason})

    async def previews(self, token: str, body: dict[str, Any]) -> models.MessagePreviews:
        return await self.call(token, "POST", "/v1/previews", models.MessagePreviews, json=body)

    async def templates(self, token: str) -> models.Templates:
        return await self.call(token, "GET", "/v1/templates", models.Templates, params={"limit": 200})

    async def create_template(self, token: str, body: dict[str, Any]) -> models.Template:
        return await self.call(token, "POST", "/v1/templates", models.Template, json=body)


class OutreachApi(Backend):
    """Outreach: accounts and their hosted flows, campaigns and their commands, workflows, the blocklist and the
    suppression list, the plan."""

    async def accounts(self, token: str) -> models.OutreachAccounts:
        return await self.call(token, "GET", "/v1/accounts", models.OutreachAccounts, params={"limit": 200})

    async def connect(self, token: str, body: dict[str, Any]) -> models.ConnectedAccount:
        return await self.call(token, "POST", "/v1/accounts", models.ConnectedAccount, json=body)

    async def reconnect_link(self, token: str, account_id: UUID, return_url: str) -> models.AuthLink:
        path = f"/v1/accounts/{account_id}/reconnect-link"
        return await self.call(token, "POST", path, models.AuthLink, json={"return_url": return_url})

    async def refresh(self, token: str, account_id: UUID) -> models.OutreachAccount:
        return await self.call(token, "POST", f"/v1/accounts/{account_id}/refresh", models.OutreachAccount)

    async def delete_account(self, token: str, account_id: UUID) -> None:
        await self.call(token, "DELETE", f"/v1/accounts/{account_id}", _Nothing)

    async def presets(self, token: str) -> models.Presets:
        return await self.items(token, "GET", "/v1/workflow-presets", models.Presets)

    async def check_workflow(self, token: str, body: dict[str, Any]) -> models.CheckedWorkflow:
        return await self.call(token, "POST", "/v1/workflows/validate", models.CheckedWorkflow, json=body)

    async def create_campaign(self, token: str, body: dict[str, Any], key: str) -> models.CampaignDetail:
        headers = {"Idempotency-Key": key}
        return await self.call(token, "POST", "/v1/campaigns", models.CampaignDetail, json=body, headers=headers)

    async def campaign(self, token: str, campaign_id: UUID) -> models.CampaignDetail:
        return await self.call(token, "GET", f"/v1/campaigns/{campaign_id}", models.CampaignDetail)

    async def launch_plan(self, token: str, campaign_id: UUID) -> models.LaunchPlan:
        return await self.call(token, "GET", f"/v1/campaigns/{campaign_id}/launch-plan", models.LaunchPlan)

    async def launch(self, token: str, campaign_id: UUID, body: dict[str, Any], key: str) -> models.CampaignDetail:
        path, headers = f"/v1/campaigns/{campaign_id}/launch", {"Idempotency-Key": key}
        return await self.call(token, "POST", path, models.CampaignDetail, json=body, headers=headers)

    async def pause(self, token: str, campaign_id: UUID) -> models.CampaignDetail:
        return await self.call(token, "POST", f"/v1/campaigns/{campaign_id}/pause", models.CampaignDetail)

    async def resume(self, token: str, campaign_id: UUID) -> models.CampaignDetail:
        return await self.call(token, "POST", f"/v1/campaigns/{campaign_id}/resume", models.CampaignDetail)

    async def delete_campaign(self, token: str, campaign_id: UUID) -> None:
        await self.call(token, "DELETE", f"/v1/campaigns/{campaign_id}", _Nothing)

    async def replace_accounts(self, token: str, campaign_id: UUID, account_ids: list[UUID]) -> models.CampaignDetail:
        body = {"account_ids": [str(a) for a in account_ids]}
        path = f"/v1/campaigns/{campaign_id}/accounts"
        return await self.call(token, "PUT", path, models.CampaignDetail, json=body)

    async def blocklist(self, token: str, after: str | None = None) -> models.Blocklist:
        params = {"limit": 200, "after": after}
        return await self.call(token, "GET", "/v1/blocklist", models.Blocklist, params=params)

    async def block(self, token: str, kind: str, value: str) -> None:
        await self.call(token, "POST", "/v1/blocklist", _Nothing, json={"kind": kind, "value": value})

    async def unblock(self, token: str, kind: str, value: str) -> None:
        await self.call(token, "DELETE", "/v1/blocklist", _Nothing, params={"kind": kind, "value": value})

    async def suppressions(self, token: str) -> models.Suppressions:
        return await self.call(token, "GET", "/v1/suppressions", models.Suppressions, params={"limit": 200})

    async def plan(self, token: str) -> models.WorkspacePlan:
        return await self.call(token, "GET", "/v1/plan", models.WorkspacePlan)

    async def upgrade(self, token: str, body: dict[str, Any]) -> models.WorkspacePlan:
        return await self.call(token, "POST", "/v1/plan/upgrade", models.WorkspacePlan, json=body)


class _Nothing(BaseModel):
    """An empty answer (204)."""


class Backends:
    """Every service the console talks to. Part of the app state; closed when the console stops."""

    def __init__(self, settings: ConsoleSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        timeout = settings.console_backend_timeout_s
        self.projection = ProjectionApi("projection", settings.console_projection_url, timeout, transport)
        self.outreach = OutreachApi("outreach", settings.console_outreach_url, timeout, transport)
        self.messaging = MessagingApi("messaging", settings.console_messaging_url, timeout, transport)
        self.discovery = DiscoveryApi("discovery", settings.console_discovery_url, timeout, transport)

    async def aclose(self) -> None:
        """Close every connection pool."""
        for b in (self.projection, self.outreach, self.messaging, self.discovery):
            await b.aclose()
