"""Discovery's HTTP API: preview, saved searches, source groups, CSV import and manual add.

Every route is scoped to the workspace of the bearer token; another workspace's search, group or
lead answers 404.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from leadstream_schemas import FitSignal
from leadstream_schemas.bounds import FreeJson, unstorable
from pydantic import BaseModel, Field, StringConstraints, ValidationError, field_validator
from sqlalchemy import func, select, tuple_

from services.runtime.auth import ReadWorkspace, WriteWorkspace
from services.runtime.errors import Problem, problems
from services.runtime.idempotency import IdempotencyKey
from services.runtime.pagination import BIGINT_MAX, After, Limit, Page, decode_cursor, encode_cursor
from services.runtime.providers import ProviderError, RateLimited
from services.runtime.service import Service
from services.runtime.uploads import StreamedUpload

from . import commands, domain
from .adapters import SearchProvider, SearchQuery
from .imports import CsvImporter, ImportReport
from .settings import DiscoverySettings
from .store import leads, post_watches, searches, source_group_members, source_groups

Criteria = Annotated[
    dict[str, Any],
    FreeJson(max_properties=20, max_bytes=16_384),
    Field(description="The criteria of the search's kind (see the kinds' models); at most 16 KiB as JSON."),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), domain.Storable]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=domain.MAX_TEXT), domain.Storable]


def _criteria(kind: str, raw: dict[str, Any]) -> domain.Criteria:
    """Validate criteria for ``kind``; errors become a 422 naming ``criteria.<field>``."""
    try:
        return domain.parse_criteria(kind, raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", "criteria", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


# -- models --------------------------------------------------------------------------------------


class PreviewIn(BaseModel):
    """A search to try without saving it."""

    kind: domain.SearchKind
    criteria: Criteria
    limit: int = Field(10, ge=1, le=50)


class Match(BaseModel):
    """One person a preview found, with why they matched."""

    full_name: str
    first_name: str | None
    last_name: str | None
    title: str | None
    company: str | None
    location: str | None
    linkedin_url: str
    lead_id: UUID
    already_known: bool
    fit_signals: list[FitSignal]


class PreviewOut(BaseModel):
    """The first matches of a search (nothing saved, no events)."""

    kind: str
    total: int | None
    matches: list[Match]
    has_more: bool


class ScheduleIn(BaseModel):
    """Makes a search recurring: each run adds at most ``per_run`` people, then waits ``interval_minutes``."""

    interval_minutes: int | None = Field(None, ge=5, le=43_200)
    per_run: int | None = Field(None, ge=1, le=10_000)


class WatchIn(BaseModel):
    """The watch of a posts search: after its first pass it checks new posts every ``interval_minutes``."""

    enabled: bool = True
    interval_minutes: int | None = Field(None, ge=5, le=1440)


class SearchIn(BaseModel):
    """A saved background search: its results become a source group; ``target_count`` is how many NEW
    leads (people the workspace did not know) it should find. ``enrichment``: the group's leads are enriched
    as they are found (automatic) or only once someone selects them (on_selection). Posts searches keep
    watching new posts (``watch``) unless it is disabled."""

    name: Name
    kind: domain.SearchKind
    criteria: Criteria
    target_count: int = Field(ge=1, le=10_000)
    schedule: ScheduleIn | None = None
    enrichment: domain.EnrichmentMode = "automatic"
    watch: WatchIn | None = None


class SuggestIn(BaseModel):
    """A discovery prompt to suggest signals for."""

    prompt: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000), domain.Storable]
    limit: int = Field(5, ge=1, le=10)


class SuggestionOut(BaseModel):
    """One suggested signal: its type (a ``signals`` criteria value), a name, a phrasing and why."""

    signal_type: str
    label: str
    phrasing: str
    why: str


class SuggestionsOut(BaseModel):
    """Signals a prompt suggests (best first), with the location hint and lookback it mentions (or null)."""

    suggestions: list[SuggestionOut]
    location: str | None
    lookback_days: int | None
    custom_signal: str | None


class SearchCreated(BaseModel):
    """The ids of a new search and of its source group."""

    search_id: UUID
    source_group_id: UUID
    status: str


class SearchOut(BaseModel):
    """A search's progress."""

    search_id: UUID
    source_group_id: UUID
    name: str
    kind: str
    criteria: dict[str, Any]
    target_count: int
    status: str
    finish_reason: str | None
    recurring: bool
    interval_minutes: int | None
    per_run: int | None
    runs: int
    pages: int
    found: int
    new_leads: int
    duplicates: int
    invalid: int
    members: int
    cursor: str | None
    exhausted: bool
    next_run_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    watch: WatchOut | None = None


class WatchOut(BaseModel):
    """A posts search's watch: its state, schedule and what it found so far."""

    state: str
    stop_reason: str | None
    interval_minutes: int
    next_check_at: datetime
    last_checked_at: datetime | None
    checks: int
    posts_seen: int
    matches: int
    new_leads: int
    last_error: str | None


class SearchList(BaseModel):
    """Searches of the workspace, newest first; pass ``next`` as ``after`` for the following page."""

    items: list[SearchOut]
    next: str | None = None


class SourceGroupOut(BaseModel):
    """A source group: an audience a campaign can use."""

    source_group_id: UUID
    name: str
    kind: str
    search_id: UUID | None
    enrichment: domain.EnrichmentMode
    size: int
    new_leads: int
    awaiting_enrichment: int
    created_at: datetime


class SourceGroupList(BaseModel):
    """Source groups of the workspace, newest first; pass ``next`` as ``after`` for the following page."""

    items: list[SourceGroupOut]
    next: str | None = None


class MemberOut(BaseModel):
    """A lead of a source group; ``new`` is false when the workspace already knew the person."""

    lead_id: UUID
    linkedin_url: str | None
    email: str | None
    full_name: str | None
    title: str | None
    company: str | None
    location: str | None
    new: bool
    enrichment: str = Field(description="automatic | pending (waits for a selection) | requested")
    fit_signals: list[FitSignal]
    added_at: datetime


class MemberPage(BaseModel):
    """One page of a source group's leads; pass ``next_after`` as ``after`` for the next page."""

    items: list[MemberOut]
    next_after: int | None


class GroupPatch(BaseModel):
    """Change a source group: its enrichment setting (switching to automatic enriches its waiting leads)."""

    enrichment: domain.EnrichmentMode


class EnrichIn(BaseModel):
    """Leads of the group to enrich now (each lead is enriched at most once)."""

    lead_ids: list[UUID] = Field(min_length=1, max_length=1000)


class EnrichOut(BaseModel):
    """What a selection did: enrichment requested now, already enriched or requested, or not in the group."""

    requested: list[UUID]
    already: list[UUID]
    not_members: list[UUID]


class LeadIn(BaseModel):
    """A lead added by hand: a LinkedIn profile URL or an email is required."""

    linkedin_url: Text | None = None
    email: Text | None = None
    full_name: Text | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    title: Text | None = None
    company: Text | None = None
    location: Text | None = None
    source_group_id: UUID | None = None

    @field_validator("linkedin_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return domain.normalise_linkedin_url(value) if value else None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return domain.normalise_email(value) if value else None


class LeadAdded(BaseModel):
    """The outcome of a manual add: the lead's id and whether it was new to the workspace."""

    lead_id: UUID
    source_group_id: UUID
    created: bool
    duplicate: bool


class LeadOut(BaseModel):
    """A lead as discovery knows it."""

    lead_id: UUID
    linkedin_url: str | None
    email: str | None
    full_name: str | None
    first_name: str | None
    last_name: str | None
    title: str | None
    company: str | None
    location: str | None
    source: str
    search_id: UUID | None
    source_group_ids: list[UUID]
    created_at: datetime


class RowErrorOut(BaseModel):
    """Why one row was rejected (``row`` counts the header as row 1, as a spreadsheet shows it)."""

    row: int
    column: str
    message: str


class DuplicateRowOut(BaseModel):
    """A row whose person the workspace already had: the lead it is, and how it was recognised."""

    row: int
    lead_id: UUID
    reason: str


class ImportOut(BaseModel):
    """Result of a CSV import: counts are exact; ``errors`` and ``duplicate_rows`` name the rows."""

    import_id: UUID
    search_id: UUID
    source_group_id: UUID
    rows: int
    imported: int
    rejected: int
    duplicates: int
    errors: list[RowErrorOut]
    duplicate_rows: list[DuplicateRowOut]
    ignored_columns: list[str]
    errors_truncated: bool
    truncated_at_row: int | None


# -- routes --------------------------------------------------------------------------------------


def build_router(
    service: Service, settings: DiscoverySettings, provider: SearchProvider, wake: Callable[[], None]
) -> APIRouter:
    """The discovery routes, bound to the service's engine and provider; ``wake`` tells the search and watch
    loops a search was created."""
    router = APIRouter(prefix="/v1", tags=["discovery"])
    engine = service.engine
    service.limit_body("/v1/imports/csv", settings.csv_max_bytes)  # an upload may be larger than a JSON body

    async def search_row(ws: str, search_id: UUID) -> Any:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(searches).where(searches.c.search_id == search_id, searches.c.workspace_id == ws)
                )
            ).first()
        if row is None:
            raise Problem(404, "not_found", f"search {search_id} not found")
        return row

    @router.post("/searches/preview", response_model=PreviewOut)
    async def preview(body: PreviewIn, ws: WriteWorkspace) -> PreviewOut:
        """The first matches of a search, with fit signals; nothing is saved and no event is emitted."""
        criteria = _criteria(body.kind, body.criteria)
        query = SearchQuery(body.kind, criteria.model_dump(mode="json"))
        try:
            page = await provider.search(query, None, body.limit)
        except RateLimited as exc:
            raise Problem(
                429,
                "provider_rate_limited",
                f"the search provider asks to wait {exc.retry_after_s:.1f}s",
                retry_after_s=exc.retry_after_s,
            ) from None
        except ProviderError as exc:
            status, code = (503, "provider_unavailable") if exc.transient else (502, "provider_error")
            raise Problem(status, code, f"the search provider failed: {exc}") from None
        today: date = service.clock.now().date()
        matches: list[Match] = []
        for candidate in page.items:
            try:
                lead = domain.lead_from_candidate(candidate)
            except ValueError:
                continue
            assert lead.linkedin_url is not None
            matches.append(
                Match(
                    full_name=lead.full_name or candidate.full_name,
                    first_name=lead.first_name,
                    last_name=lead.last_name,
                    title=lead.title,
                    company=lead.company,
                    location=lead.location,
                    linkedin_url=lead.linkedin_url,
                    lead_id=lead.lead_id(ws),
                    already_known=False,
                    fit_signals=domain.fit_signals(criteria, candidate, today),
                )
            )
        if matches:
            async with engine.connect() as conn:
                known = set(
                    await conn.scalars(
                        select(leads.c.lead_id).where(
                            leads.c.workspace_id == ws, leads.c.lead_id.in_([m.lead_id for m in matches])
                        )
                    )
                )
            matches = [m.model_copy(update={"already_known": m.lead_id in known}) for m in matches]
        return PreviewOut(kind=body.kind, total=page.total, matches=matches, has_more=page.next_cursor is not None)

    async def watches_of(conn: Any, ids: list[UUID]) -> dict[UUID, WatchOut]:
        rows = await conn.execute(select(post_watches).where(post_watches.c.search_id.in_(ids))) if ids else []
        return {r.search_id: WatchOut.model_validate({**r._mapping, "next_check_at": r.due_at}) for r in rows}

    async def searches_out(rows: list[Any]) -> list[SearchOut]:
        async with engine.connect() as conn:
            watches = await watches_of(conn, [r.search_id for r in rows])
        return [SearchOut.model_validate({**r._mapping, "watch": watches.get(r.search_id)}) for r in rows]

    @router.post("/searches", status_code=201, response_model=SearchCreated)
    async def create_search(
        body: SearchIn, ws: WriteWorkspace, response: Response, key: IdempotencyKey = None
    ) -> SearchCreated:
        """Save a search and start it in the background; it emits ``SearchStarted`` now. A posts search then
        keeps watching new posts (see ``watch``). Sent again with the same ``Idempotency-Key``, it answers with
        the first request's search (``Idempotent-Replayed: true``)."""
        criteria = _criteria(body.kind, body.criteria).model_dump(mode="json")
        if body.watch is not None and body.watch.enabled and body.kind != "posts":
            raise RequestValidationError(
                [{"loc": ("body", "watch"), "type": "value_error", "msg": "only a posts search has a watch"}]
            )
        watch_minutes = None
        if body.kind == "posts" and (body.watch is None or body.watch.enabled):
            watch_minutes = (
                body.watch.interval_minutes if body.watch else None
            ) or settings.posts_watch_interval_minutes
        search_id, group_id, created = await commands.create_search(
            service,
            settings,
            wake,
            ws,
            name=body.name,
            kind=body.kind,
            criteria=criteria,
            target_count=body.target_count,
            schedule=body.schedule,
            enrichment=body.enrichment,
            watch_minutes=watch_minutes,
            watch=body.watch.model_dump(mode="json") if body.watch is not None else None,
            idempotency_key=key,
        )
        if not created:
            response.headers["Idempotent-Replayed"] = "true"
        return SearchCreated(search_id=search_id, source_group_id=group_id, status="running")

    @router.post("/signal-suggestions", response_model=SuggestionsOut)
    async def signal_suggestions(body: SuggestIn, ws: WriteWorkspace) -> SuggestionsOut:
        """Signal types a discovery prompt asks for, each with a phrasing, plus the location and lookback the
        prompt mentions: what to pick in a signal search. Nothing is saved and no provider is asked."""
        found = domain.suggest_signals(body.prompt, body.limit)
        return SuggestionsOut(
            suggestions=[SuggestionOut(**s.__dict__) for s in found.suggestions],
            location=found.location,
            lookback_days=found.lookback_days,
            custom_signal=found.custom_signal,
        )

    @router.get("/searches", response_model=SearchList)
    async def list_searches(ws: ReadWorkspace, limit: Limit = 50, after: After = None) -> SearchList:
        """The workspace's searches and imports, newest first."""
        stmt = select(searches).where(searches.c.workspace_id == ws)
        if after:
            created, search_id = decode_cursor(after, 2, [datetime.fromisoformat, UUID])
            stmt = stmt.where(tuple_(searches.c.created_at, searches.c.search_id) < tuple_(created, search_id))
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    stmt.order_by(searches.c.created_at.desc(), searches.c.search_id.desc()).limit(limit + 1)
                )
            ).all()
        page = Page.of(rows, limit, lambda r: encode_cursor([r.created_at.isoformat(), str(r.search_id)]))
        return SearchList(items=await searches_out(list(page.items)), next=page.next)

    @router.get("/searches/{search_id}", response_model=SearchOut)
    async def get_search(search_id: UUID, ws: ReadWorkspace) -> SearchOut:
        """A search's progress (counts, cursor, status, next run, its posts watch)."""
        return (await searches_out([await search_row(ws, search_id)]))[0]

    @router.post("/searches/{search_id}/cancel", response_model=SearchOut)
    async def cancel_search(search_id: UUID, ws: WriteWorkspace) -> SearchOut:
        """Stop a running or scheduled search (``SearchFinished`` with reason cancelled)."""
        await commands.cancel_search(service, ws, search_id)
        return await get_search(search_id, ws)

    async def groups_out(conn: Any, ws: str, rows: list[Any]) -> list[SourceGroupOut]:
        """Groups with their sizes: members, new leads and leads awaiting a selection to be enriched."""
        m, lt = source_group_members, leads
        ids = [r.source_group_id for r in rows]
        counts = {
            c.source_group_id: c
            for c in await conn.execute(
                select(
                    m.c.source_group_id,
                    func.count().label("size"),
                    func.count().filter(m.c.is_new).label("new_leads"),
                    func.count().filter(lt.c.enrichment == "pending").label("awaiting"),
                )
                .select_from(m.join(lt, (lt.c.workspace_id == m.c.workspace_id) & (lt.c.lead_id == m.c.lead_id)))
                .where(m.c.workspace_id == ws, m.c.source_group_id.in_(ids))
                .group_by(m.c.source_group_id)
            )
        }
        return [
            SourceGroupOut.model_validate(
                {
                    **r._mapping,
                    "size": counts[r.source_group_id].size if r.source_group_id in counts else 0,
                    "new_leads": counts[r.source_group_id].new_leads if r.source_group_id in counts else 0,
                    "awaiting_enrichment": counts[r.source_group_id].awaiting if r.source_group_id in counts else 0,
                }
            )
            for r in rows
        ]

    @router.get("/source-groups", response_model=SourceGroupList)
    async def list_groups(ws: ReadWorkspace, limit: Limit = 50, after: After = None) -> SourceGroupList:
        """The workspace's source groups with their sizes, newest first."""
        g = source_groups
        stmt = select(g).where(g.c.workspace_id == ws)
        if after:
            created, group_id = decode_cursor(after, 2, [datetime.fromisoformat, UUID])
            stmt = stmt.where(tuple_(g.c.created_at, g.c.source_group_id) < tuple_(created, group_id))
        async with engine.connect() as conn:
            rows = (
                await conn.execute(stmt.order_by(g.c.created_at.desc(), g.c.source_group_id.desc()).limit(limit + 1))
            ).all()
            page = Page.of(rows, limit, lambda r: encode_cursor([r.created_at.isoformat(), str(r.source_group_id)]))
            items = await groups_out(conn, ws, list(page.items))
        return SourceGroupList(items=items, next=page.next)

    @router.get("/source-groups/{group_id}/leads", response_model=MemberPage)
    async def group_leads(
        group_id: UUID,
        ws: ReadWorkspace,
        limit: Limit = 100,
        after: Annotated[
            int | None, Query(ge=0, le=BIGINT_MAX, description="`next_after` of the previous page.")
        ] = None,
    ) -> MemberPage:
        """The leads of a source group in the order they joined it."""
        m, lt = source_group_members, leads
        stmt = (
            select(
                m.c.seq,
                m.c.lead_id,
                m.c.is_new.label("new"),
                lt.c.enrichment,
                m.c.fit_signals,
                m.c.added_at,
                lt.c.linkedin_url,
                lt.c.email,
                lt.c.full_name,
                lt.c.title,
                lt.c.company,
                lt.c.location,
            )
            .select_from(m.join(lt, (lt.c.workspace_id == m.c.workspace_id) & (lt.c.lead_id == m.c.lead_id)))
            .where(m.c.source_group_id == group_id, m.c.workspace_id == ws)
            .order_by(m.c.seq)
            .limit(limit + 1)
        )
        if after is not None:
            stmt = stmt.where(m.c.seq > after)
        async with engine.connect() as conn:
            await commands.source_group(conn, ws, group_id)  # 404 for a group the workspace does not have
            rows = (await conn.execute(stmt)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return MemberPage(
            items=[MemberOut.model_validate(r._mapping) for r in rows], next_after=rows[-1].seq if more else None
        )

    @router.patch("/source-groups/{group_id}", response_model=SourceGroupOut)
    async def patch_group(group_id: UUID, body: GroupPatch, ws: WriteWorkspace) -> SourceGroupOut:
        """Change a group's enrichment setting; switching to automatic enriches the leads waiting for a selection."""
        await commands.set_enrichment(service, ws, group_id, body.enrichment)
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(source_groups).where(
                        source_groups.c.workspace_id == ws, source_groups.c.source_group_id == group_id
                    )
                )
            ).one()
            return (await groups_out(conn, ws, [row]))[0]

    @router.post("/source-groups/{group_id}/enrich", response_model=EnrichOut)
    async def enrich_selected(group_id: UUID, body: EnrichIn, ws: WriteWorkspace) -> EnrichOut:
        """Enrich the selected leads of a group now (``LeadEnrichmentRequested`` once per lead); leads already
        enriched (or requested) and leads not in the group are reported, not requested."""
        done = await commands.enrich_selected(service, ws, group_id, body.lead_ids)
        return EnrichOut(requested=done.requested, already=done.already, not_members=done.not_members)

    @router.post(
        "/imports/csv",
        status_code=201,
        response_model=ImportOut,
        responses=problems(413),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary", "description": "The CSV file."},
                                "name": {
                                    "type": "string",
                                    "maxLength": 200,
                                    "description": "The import's name (send it before the file part).",
                                },
                                "enrichment": {
                                    "type": "string",
                                    "enum": ["automatic", "on_selection"],
                                    "default": "automatic",
                                    "description": "on_selection keeps the leads unenriched until selected "
                                    "(send it before the file part).",
                                },
                            },
                        }
                    }
                },
            }
        },
    )
    async def import_csv(request: Request, ws: WriteWorkspace) -> ImportOut:
        """Import leads from a CSV file (columns linkedin_url and/or email, names, title, company, location).

        The file is read as it arrives, never stored: at most ``LEADSTREAM_CSV_MAX_BYTES`` bytes (the edge's cap
        for this route: 413 when the declared length is larger; a body that turns out larger while it streams is
        imported up to there and the answer says so) and ``LEADSTREAM_CSV_MAX_ROWS`` rows.
        ``enrichment=on_selection`` keeps the leads unenriched until selected."""
        upload = StreamedUpload(request)
        try:
            file = await upload.open()
            name = upload.fields.get("name")
            problem = None if name is None else "at most 200 characters" if len(name) > 200 else unstorable(name)
            if problem:
                raise Problem(
                    422, "invalid_request", f"name: {problem}", errors=[{"field": "name", "message": problem}]
                )
            enrichment: domain.EnrichmentMode
            match upload.fields.get("enrichment") or "automatic":
                case "automatic":
                    enrichment = "automatic"
                case "on_selection":
                    enrichment = "on_selection"
                case _:
                    raise Problem(
                        422,
                        "invalid_request",
                        "enrichment: automatic or on_selection",
                        errors=[{"field": "enrichment", "message": "automatic or on_selection"}],
                    )
            filename = "".join(c for c in upload.filename or "" if not unstorable(c))
            label = (name or "").strip() or filename[:200] or "CSV import"
            report: ImportReport = await CsvImporter(service, settings, enrichment).run(ws, file, name=label)
        finally:
            await upload.close()
        return ImportOut(search_id=report.import_id, **report.__dict__)

    @router.post("/leads", status_code=201, response_model=LeadAdded)
    async def add_manual(body: LeadIn, ws: WriteWorkspace, response: Response) -> LeadAdded:
        """Add one lead by hand (to the given source group, else the workspace's "Manual" group).

        A person the workspace already knows is reported as a duplicate (200) and not re-emitted.
        """
        if not body.linkedin_url and not body.email:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", "linkedin_url"),
                        "type": "missing",
                        "msg": "linkedin_url or email is required to identify the lead",
                    }
                ]
            )
        lead = domain.LeadInput(
            linkedin_url=body.linkedin_url,
            email=body.email,
            full_name=body.full_name,
            first_name=body.first_name,
            last_name=body.last_name,
            title=body.title,
            company=body.company,
            location=body.location,
        )
        added = await commands.add_manual(service, ws, lead, body.source_group_id)
        if not added.created:
            response.status_code = 200
        return LeadAdded(
            lead_id=added.lead_id,
            source_group_id=added.source_group_id,
            created=added.created,
            duplicate=not added.created,
        )

    @router.get("/leads/{lead_id}", response_model=LeadOut)
    async def get_lead(lead_id: UUID, ws: ReadWorkspace) -> LeadOut:
        """A lead and the source groups it belongs to."""
        async with engine.connect() as conn:
            row = (
                await conn.execute(select(leads).where(leads.c.workspace_id == ws, leads.c.lead_id == lead_id))
            ).first()
            if row is None:
                raise Problem(404, "not_found", f"lead {lead_id} not found")
            groups = list(
                await conn.scalars(
                    select(source_group_members.c.source_group_id)
                    .where(source_group_members.c.workspace_id == ws, source_group_members.c.lead_id == lead_id)
                    .order_by(source_group_members.c.seq)
                )
            )
        return LeadOut.model_validate({**row._mapping, "source_group_ids": groups})

    return router
