"""The saved-search worker: recurring runs on an injected clock, restart from the cursor, provider errors; an idle
runner naps until a scheduled search is due (claimable exactly from ``CLAIMABLE_AT``)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import insert, select

from services.discovery import domain
from services.discovery.adapters import Candidate, SearchPage, SearchQuery
from services.discovery.adapters.simulated import SimulatedSearchProvider
from services.discovery.handlers import CLAIMABLE_AT, claimable
from services.discovery.store import searches, source_groups
from services.runtime.clock import Clock, FakeClock, ScaledClock
from services.runtime.providers import ProviderError, SimulationProfile
from tests.services.discovery.conftest import StartDiscovery
from tests.services.discovery.support import (
    ScriptedProvider,
    client_for,
    due,
    envelopes,
    mentions,
    person,
    read_events,
    settled,
)
from tests.support.kafka import wait_for
from tests.support.statements import Statements, counting_statements

SIGNALS = {"prompt": "fintech companies preparing for compliance audits", "signal_types": ["compliance", "news"]}


async def _search(client: Any, search_id: str) -> dict[str, Any]:
    return (await client.get(f"/v1/searches/{search_id}")).json()


async def test_recurring_search_runs_on_its_schedule_until_the_target(start_discovery: StartDiscovery) -> None:
    clock = FakeClock()
    service = await start_discovery(clock=clock)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        r = await client.post(
            "/v1/searches",
            json={
                "name": "compliance watch",
                "kind": "signals",
                "criteria": SIGNALS,
                "target_count": 12,
                "schedule": {"interval_minutes": 60, "per_run": 5},
            },
        )
        sid = r.json()["search_id"]

        async def state(status: str, members: int) -> dict[str, Any] | None:
            body = await _search(client, sid)
            return body if (body["status"], body["members"]) == (status, members) else None

        first = await wait_for(lambda: state("scheduled", 5), timeout_s=30, what="first run")
        start = clock.now()
        assert first["next_run_at"] == (start + timedelta(minutes=60)).isoformat().replace("+00:00", "Z")
        assert (first["runs"], first["pages"], first["recurring"]) == (1, 1, True)
        assert not await due(service, sid)  # not due yet
        clock.advance(timedelta(minutes=59))
        assert not await due(service, sid)
        clock.advance(timedelta(minutes=1))
        second = await wait_for(lambda: state("scheduled", 10), timeout_s=30, what="second run")
        assert second["runs"] == 2
        # Page size 7: the second run finished page 1 (2 left) and took 3 of page 2.
        assert second["pages"] == 3
        clock.advance(timedelta(minutes=60))
        third = await wait_for(lambda: state("finished", 12), timeout_s=30, what="third run")
        assert (third["finish_reason"], third["runs"], third["next_run_at"]) == ("target_reached", 3, None)

        records = await read_events(service, settled(ws, finished=1, discovered=12))
        discovered = envelopes(records, ws, "lead.discovered.v1")
        assert len(discovered) == 12 and len({e.data.lead_id for e in discovered}) == 12
        pages = envelopes(records, ws, "search.page_completed.v1")
        assert sorted(p.data.page for p in pages) == [1, 2, 3, 4]
        assert sum(p.data.new_leads for p in pages) == 12
        assert all(p.data.duplicates == 0 for p in pages)


class GatedProvider:
    """The simulation, but the page after ``pages`` of the test's own search (criteria mentioning ``token``) hangs
    (a service stopped mid-search). Other tests' leftover searches, which the runner also claims, pass through
    uncounted."""

    name = "gated"

    def __init__(self, inner: SimulatedSearchProvider, pages: int | None, token: str) -> None:
        self.inner = inner
        self.pages = pages
        self.token = token
        self.cursors: list[str | None] = []
        self.people: list[int] = []  # usable results of each page returned to the test's search
        self.blocked = asyncio.Event()

    async def search(self, query: SearchQuery, cursor: str | None, limit: int) -> SearchPage:
        if not mentions(query, self.token):
            return await self.inner.search(query, cursor, limit)
        self.cursors.append(cursor)
        if self.pages is not None and len(self.cursors) > self.pages:
            self.blocked.set()
            await asyncio.Event().wait()
        page = await self.inner.search(query, cursor, limit)
        # The simulation, like a real provider, sometimes returns a company page: the search counts it as invalid.
        self.people.append(sum(1 for c in page.items if _usable(c)))
        return page


def _usable(candidate: Candidate) -> bool:
    try:
        domain.lead_from_candidate(candidate)
    except ValueError:
        return False
    return True


async def test_restart_mid_search_resumes_from_the_stored_cursor(start_discovery: StartDiscovery) -> None:
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    criteria = {**SIGNALS, "prompt": f"{SIGNALS['prompt']} ({ws})"}  # marks this test's calls (GatedProvider)

    def provider(pages: int | None) -> GatedProvider:
        return GatedProvider(
            SimulatedSearchProvider(SimulationProfile(latency_ms=(0, 1), transient_error_rate=0), FakeClock()),
            pages,
            ws,
        )

    gated = provider(2)
    first = await start_discovery(provider=gated)
    async with await client_for(first, ws) as client:
        sid = (
            await client.post(
                "/v1/searches", json={"name": "restart", "kind": "signals", "criteria": criteria, "target_count": 30}
            )
        ).json()["search_id"]
        await asyncio.wait_for(gated.blocked.wait(), timeout=30)
    await first.stop()  # the third page is in flight: it is abandoned, nothing of it is stored
    async with first.engine.connect() as conn:
        row = (await conn.execute(select(searches).where(searches.c.search_id == uuid.UUID(sid)))).one()
    assert len(gated.people) == 2
    assert (row.status, row.pages, row.members, row.cursor is not None) == ("running", 2, sum(gated.people), True)

    resumed = provider(None)
    second = await start_discovery(provider=resumed)
    async with await client_for(second, ws) as client:
        done = await wait_for(lambda: _finished(client, sid), timeout_s=30, what="the resumed search")
    # The pages it takes to reach 30 people from what the first process stored (7 a page, less any company page).
    needed = next(n for n in range(1, len(resumed.people) + 1) if row.members + sum(resumed.people[:n]) >= 30)
    assert (done["members"], done["new_leads"], done["duplicates"], done["pages"]) == (30, 30, 0, 2 + needed)
    assert resumed.cursors[0] == row.cursor, "the second process starts at the stored cursor"
    assert len(resumed.cursors) == needed

    records = await read_events(second, settled(ws, finished=1, discovered=30))
    discovered = envelopes(records, ws, "lead.discovered.v1")
    assert len(discovered) == 30 and len({e.data.lead_id for e in discovered}) == 30
    pages = envelopes(records, ws, "search.page_completed.v1")
    assert sorted(p.data.page for p in pages) == list(range(1, 3 + needed))
    assert len(envelopes(records, ws, "search.started.v1")) == 1


async def _finished(client: Any, sid: str) -> dict[str, Any] | None:
    body = await _search(client, sid)
    return body if body["status"] == "finished" else None


async def test_rate_limits_and_transient_errors_are_retried(start_discovery: StartDiscovery) -> None:
    service = await start_discovery(
        sim_transient_error_rate=0.3, sim_rate_limit_every=3, sim_retry_after_s=0.01, search_max_consecutive_errors=10
    )
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    async with await client_for(service, ws) as client:
        sid = (
            await client.post(
                "/v1/searches", json={"name": "flaky", "kind": "signals", "criteria": SIGNALS, "target_count": 20}
            )
        ).json()["search_id"]
        done = await wait_for(lambda: _finished(client, sid), timeout_s=60, what="the flaky search")
    provider = service.app.state.provider
    assert provider.total_calls > done["pages"], "some calls failed and were retried"
    assert (done["finish_reason"], done["members"], done["last_error"]) == ("target_reached", 20, None)
    records = await read_events(service, settled(ws, finished=1, discovered=20))
    discovered = envelopes(records, ws, "lead.discovered.v1")
    assert len(discovered) == 20 and len({e.data.lead_id for e in discovered}) == 20


class FailingProvider:
    """A provider that always fails the same way."""

    name = "failing"

    def __init__(self, transient: bool) -> None:
        self.transient = transient
        self.queries: list[SearchQuery] = []

    def calls_for(self, token: str) -> int:
        """The calls for queries mentioning ``token`` (the runner also claims other tests' leftover searches)."""
        return sum(mentions(q, token) for q in self.queries)

    async def search(self, query: SearchQuery, cursor: str | None, limit: int) -> SearchPage:
        self.queries.append(query)
        raise ProviderError(
            "403 account restricted" if not self.transient else "502 bad gateway",
            transient=self.transient,
            status=502 if self.transient else 403,
        )


async def test_provider_errors_fail_the_search_with_the_reason(start_discovery: StartDiscovery) -> None:
    for transient, calls in [(True, 3), (False, 1)]:
        failing = FailingProvider(transient)
        service = await start_discovery(provider=failing, search_max_consecutive_errors=3)
        ws = f"ws-{uuid.uuid4().hex[:8]}"
        # The workspace id in the prompt marks the provider's calls for this test's search and preview.
        criteria = {**SIGNALS, "prompt": f"{SIGNALS['prompt']} ({ws})"}
        async with await client_for(service, ws) as client:
            sid = (
                await client.post(
                    "/v1/searches", json={"name": "doomed", "kind": "signals", "criteria": criteria, "target_count": 5}
                )
            ).json()["search_id"]
            done = await wait_for(partial(_finished, client, sid), timeout_s=30, what="the failing search")
            preview = await client.post("/v1/searches/preview", json={"kind": "signals", "criteria": criteria})
        assert (done["finish_reason"], failing.calls_for(ws) - 1) == ("failed", calls)
        assert done["last_error"] == ("502 bad gateway" if transient else "403 account restricted")
        assert preview.status_code == (503 if transient else 502)
        records = await read_events(service, settled(ws, finished=1, discovered=0))
        [finished] = envelopes(records, ws, "search.finished.v1")
        assert (finished.data.reason, finished.data.total_new) == ("failed", 0)
        await service.stop()


class ClockedProvider(ScriptedProvider):
    """A scripted provider that notes, for each query, the service's time and the claims of searches counted so far
    (``seen``, set once counting starts)."""

    def __init__(self, results: list[Candidate], clock: Clock) -> None:
        super().__init__(results)
        self.clock = clock
        self.seen: Statements | None = None
        self.asked: list[tuple[datetime, int]] = []

    async def search(self, query: SearchQuery, cursor: str | None, limit: int) -> SearchPage:
        self.asked.append((self.clock.now(), self.seen.claims if self.seen is not None else 0))
        return await super().search(query, cursor, limit)


async def test_an_idle_runner_naps_until_a_scheduled_search_is_due(
    own_database: str, start_discovery: StartDiscovery
) -> None:  # own_database first: dropped after the service stopped
    # A recurring search waits 5 campaign minutes between runs: 2 real seconds at 150x, well within the idle loop's
    # look ahead (timer_idle_max_s 60 s: 2.5 campaign hours). Its own database: no other test's search is due.
    clock = ScaledClock(datetime.now(UTC), 150.0)
    provider = ClockedProvider([person(f"r-{i}") for i in range(50)], clock)
    service = await start_discovery(clock=clock, provider=provider, timer_idle_max_s=60.0, database_url=own_database)
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    body = {
        "name": "every five minutes",
        "kind": "signals",
        "criteria": SIGNALS,
        "target_count": 50,
        "schedule": {"interval_minutes": 5, "per_run": 7},  # a run is one page (of 7): one query
    }
    async with counting_statements(service.engine, "searches") as seen, await client_for(service, ws) as client:
        provider.seen = seen
        r = await client.post("/v1/searches", json=body)
        assert r.status_code == 201, r.text
        sid = r.json()["search_id"]

        async def scheduled(runs: int) -> dict[str, Any] | None:
            got = await _search(client, sid)
            return got if (got["status"], got["runs"]) == ("scheduled", runs) else None

        # The window is between the second run and the third: the first follows the creation's wake.
        second = await wait_for(lambda: scheduled(2), timeout_s=30, what="the second run, without a wake")
        # Within half the idle maximum: the loop napped until the run was due, it did not sleep its longest nap.
        await wait_for(lambda: len(provider.asked) >= 3, timeout_s=30, what="the third run, without a wake")
    (_, before), (ran_at, after) = provider.asked[1], provider.asked[2]
    assert ran_at >= datetime.fromisoformat(second["next_run_at"])  # not early
    # Before: the loop looked every poll interval (0.05 s) while the next run was within its look ahead, some 40
    # claims in the 2 s; now an empty claim after the run, one look, a nap until due, the claim that runs it.
    assert after - before <= 6, (before, after)


async def test_a_search_is_claimable_exactly_from_its_claimable_at(start_discovery: StartDiscovery) -> None:
    # The idle runner naps until the earliest CLAIMABLE_AT: never later than a search becomes claimable (it would
    # run late), nor earlier (it would look in vain). Rows written in a transaction rolled back: the runner never
    # sees them.
    service = await start_discovery(clock=FakeClock())
    t = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    cases = {  # (status, next_run_at, retry_at) -> when claimable (None: at any time)
        ("running", None, None): None,
        ("running", None, t + timedelta(seconds=10)): t + timedelta(seconds=10),
        ("scheduled", t + timedelta(minutes=1), None): t + timedelta(minutes=1),
        ("scheduled", t + timedelta(minutes=1), t + timedelta(minutes=2)): t + timedelta(minutes=2),
        ("scheduled", t + timedelta(minutes=1), t + timedelta(seconds=30)): t + timedelta(minutes=1),
    }
    tick = timedelta(microseconds=1)
    async with service.engine.connect() as conn, conn.begin() as tx:
        group = uuid.uuid4()
        await conn.execute(
            insert(source_groups).values(
                source_group_id=group, workspace_id="ws-exact", name="g", kind="search", created_at=t
            )
        )
        for (status, next_run_at, retry_at), expected in cases.items():
            sid = uuid.uuid4()
            await conn.execute(
                insert(searches).values(
                    search_id=sid,
                    workspace_id="ws-exact",
                    source_group_id=group,
                    name="s",
                    kind="signals",
                    criteria=SIGNALS,
                    target_count=10,
                    status=status,
                    next_run_at=next_run_at,
                    retry_at=retry_at,
                    started_event_id=uuid.uuid4(),
                    created_at=t,
                    updated_at=t,
                )
            )
            this = searches.c.search_id == sid
            at = await conn.scalar(select(CLAIMABLE_AT).where(this))

            async def takes(now: datetime, this: Any = this) -> bool:
                return (await conn.execute(claimable(now).where(this))).first() is not None

            case = (status, next_run_at, retry_at)
            assert at == expected, case
            if expected is None:
                assert await takes(t - timedelta(days=365)), case
            else:
                assert (await takes(expected - tick), await takes(expected)) == (False, True), case
        await tx.rollback()
