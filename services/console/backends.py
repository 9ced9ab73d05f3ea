"""The console's one client of the other services' public HTTP APIs (never their databases or modules).

Every call carries the signed-in workspace's token. Answers are parsed into the typed models of
:mod:`services.console.models`. Failures become three exceptions the pages turn into screens:
:class:`SignedOut` (the token was revoked: sign in again), :class:`BackendRefused` (a 4xx problem,
with its code, detail and field) and :class:`BackendUnavailable` (timeouts, connection errors and 5xx
answers after the shared client's retries).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar
from uuid import UUID

import httpx
from pydantic import BaseModel, ValidationError

from services.runtime.http_client import ProviderHttpClient, RetryPolicy
from services.runtime.providers import ProviderError

from . import models
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
    """A backend answered with a 4xx problem (RFC 9457): ``status``, ``code``, ``detail`` and the ``field`` it names."""

    def __init__(self, status: int, code: str, detail: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.field = status, code, detail, field


class Backend:
    """One service's API: JSON calls with the retry policy of the shared client, and event streams."""

    def __init__(self, name: str, base_url: str, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None):
        self.name = name
        # Few, quick retries: a person is waiting for the page.
        retry = RetryPolicy(max_retries=2, backoff_initial_s=0.2, max_retry_after_s=2.0, jitter=0.2)
        self.http = ProviderHttpClient(name, base_url, timeout_s=timeout_s, retry=retry, transport=transport)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def call(
        self,
        token: str,
        method: str,
        path: str,
        model: type[M],
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> M:
        """``method path`` as the workspace of ``token``, parsed into ``model``."""
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            response = await self.http.request(
                method, path, params=clean, json=json, headers=headers, passthrough=_PASSTHROUGH
            )
        except ProviderError as exc:
            raise BackendUnavailable(self.name, str(exc)) from exc
        if response.status_code == 401:
            raise SignedOut(self.name)
        if response.status_code >= 400:
            raise _refusal(response)
        try:
            return model.model_validate_json(response.content)
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


def _refusal(response: httpx.Response) -> BackendRefused:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return BackendRefused(
        response.status_code,
        str(body.get("code") or "refused"),
        str(body.get("detail") or response.reason_phrase or "refused"),
        body.get("field") if isinstance(body.get("field"), str) else None,
    )


class ProjectionApi(Backend):
    """The projection's read API: everything the pages show."""

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


class Backends:
    """Every service the console talks to. Part of the app state; closed when the console stops."""

    def __init__(self, settings: ConsoleSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        timeout = settings.console_backend_timeout_s
        self.projection = ProjectionApi("projection", settings.console_projection_url, timeout, transport)
        self.outreach = Backend("outreach", settings.console_outreach_url, timeout, transport)
        self.messaging = Backend("messaging", settings.console_messaging_url, timeout, transport)
        self.discovery = Backend("discovery", settings.console_discovery_url, timeout, transport)

    async def aclose(self) -> None:
        """Close every connection pool."""
        for b in (self.projection, self.outreach, self.messaging, self.discovery):
            await b.aclose()
