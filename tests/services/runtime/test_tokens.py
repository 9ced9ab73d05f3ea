"""API tokens on a real service and database: the token API, scopes, expiry, revocation within the cache's second,
failed attempts limited per client, and the ``leadstream tokens`` commands."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from leadstream_cli.main import app as cli
from services.runtime import auth
from services.runtime.auth import FailureLimiter, TokenResolver, create_token
from services.runtime.clock import FakeClock
from services.runtime.service import Service
from tests.services.outreach.support import MakeSettings, Outreach, StartService, start_outreach

MONDAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class Ticks:
    """A monotonic clock tests move by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def o(make_settings: MakeSettings, start_service: StartService, topic_prefix: str) -> Outreach:
    return await start_outreach(make_settings, start_service, topic_prefix, start=MONDAY)


def _client(service: Service, token: str | None = None, client: tuple[str, int] = ("10.0.0.1", 5000)) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app, client=client), base_url="http://t", headers=headers
    )


@pytest.fixture
async def clients(o: Outreach) -> AsyncIterator[dict[str, Any]]:
    ws = o.workspace
    tokens = {scope: await create_token(o.service.engine, ws, scopes=[scope]) for scope in auth.SCOPES}
    made: dict[str, Any] = {scope: _client(o.service, token) for scope, token in tokens.items()}
    made["other_admin"] = _client(o.service, await create_token(o.service.engine, "ws-other", scopes=["admin"]))
    yield made
    for c in made.values():
        await c.aclose()


async def test_scopes_are_levels_checked_per_route(o: Outreach, clients: dict[str, Any]) -> None:
    read, write, admin = clients["read"], clients["write"], clients["admin"]
    account = (await admin.post("/v1/accounts", json={"provider": "linkedin", "display_name": "a"})).json()
    account_id = account["account_id"]
    assert (await read.get("/v1/accounts")).status_code == 200
    refused = await read.post("/v1/accounts", json={"provider": "linkedin", "display_name": "b"})
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    assert "'write'" in refused.json()["detail"] and refused.headers["www-authenticate"].startswith("Bearer error=")
    assert (await write.post("/v1/accounts", json={"provider": "linkedin", "display_name": "b"})).status_code == 201
    # Deleting an account needs admin.
    assert (await write.delete(f"/v1/accounts/{account_id}")).status_code == 403
    assert (await read.get("/v1/tokens")).status_code == 403
    assert (await write.post("/v1/tokens", json={"scopes": ["read"]})).status_code == 403
    assert (await admin.delete(f"/v1/accounts/{account_id}")).status_code == 204


async def test_token_api_creates_lists_shows_and_revokes(o: Outreach, clients: dict[str, Any]) -> None:
    admin, other = clients["admin"], clients["other_admin"]
    made = await admin.post("/v1/tokens", json={"label": "ci", "scopes": ["write"], "expires_in_days": 7})
    assert made.status_code == 201, made.text
    body = made.json()
    token, token_id = body["token"], body["token_id"]
    assert body["scopes"] == ["read", "write"] and body["label"] == "ci" and token.startswith(body["prefix"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    async with _client(o.service, token) as fresh:
        assert (await fresh.get("/v1/campaigns")).status_code == 200

    listed = (await admin.get("/v1/tokens", params={"limit": 200})).json()
    mine = [t for t in listed["items"] if t["token_id"] == token_id]
    assert mine and "token" not in mine[0] and token not in json.dumps(listed)
    assert (await admin.get(f"/v1/tokens/{token_id}")).json()["label"] == "ci"
    # Another workspace's admin sees nothing of it.
    assert (await other.get(f"/v1/tokens/{token_id}")).status_code == 404
    assert (await other.delete(f"/v1/tokens/{token_id}")).status_code == 404
    assert token_id not in json.dumps((await other.get("/v1/tokens")).json())

    assert (await admin.delete(f"/v1/tokens/{token_id}")).status_code == 204
    assert (await admin.delete(f"/v1/tokens/{token_id}")).status_code == 204  # idempotent
    revoked = (await admin.get(f"/v1/tokens/{token_id}")).json()
    assert revoked["revoked_at"] is not None
    assert token_id not in json.dumps((await admin.get("/v1/tokens")).json())
    everything = (await admin.get("/v1/tokens", params={"include_revoked": "true", "limit": 200})).json()
    assert token_id in json.dumps(everything)
    assert (await admin.post("/v1/tokens", json={"scopes": ["root"]})).status_code == 422
    assert (await admin.post("/v1/tokens", json={"scopes": ["read"], "expires_in_days": 366})).status_code == 422


async def test_token_pages_follow_their_cursor(o: Outreach, clients: dict[str, Any]) -> None:
    admin = clients["admin"]
    for i in range(5):
        assert (await admin.post("/v1/tokens", json={"label": f"p{i}", "scopes": ["read"]})).status_code == 201
    seen: list[str] = []
    after = None
    while True:
        page = (await admin.get("/v1/tokens", params={"limit": 2, **({"after": after} if after else {})})).json()
        assert len(page["items"]) <= 2
        seen += [t["token_id"] for t in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert len(seen) == len(set(seen)) == 1 + 3 + 5  # the client's, the fixture's three and these five
    assert (await admin.get("/v1/tokens", params={"after": "garbage"})).json()["code"] == "invalid_cursor"


async def test_revocation_takes_effect_within_the_cache_second(o: Outreach) -> None:
    ticks = Ticks()
    resolver = TokenResolver(o.service.engine, ttl_s=o.settings.token_cache_s, monotonic=ticks)
    assert o.settings.token_cache_s == 1.0
    made = await auth.issue_token(o.service.engine, o.workspace, scopes=["read"])
    found, _ = await resolver.resolve(made.token)
    assert found is not None and found.token_id == made.info.token_id
    await auth.revoke_token(o.service.engine, made.info.token_id, datetime.now(UTC), o.workspace)
    ticks.t += 0.999  # still inside the cache's second: the cached answer stands ...
    assert (await resolver.resolve(made.token))[0] is not None
    ticks.t += 0.002  # ... and one second after it was cached, the revocation holds
    assert await resolver.resolve(made.token) == (None, "invalid_token")


async def test_an_expired_token_is_refused(o: Outreach) -> None:
    clock = FakeClock(datetime.now(UTC))
    resolver = TokenResolver(o.service.engine, clock=clock)
    made = await auth.issue_token(
        o.service.engine, o.workspace, scopes=["read"], expires_at=clock.now() + timedelta(hours=1)
    )
    assert (await resolver.resolve(made.token))[0] is not None
    clock.advance(timedelta(hours=1))
    assert await resolver.resolve(made.token) == (None, "token_expired")
    expired = await create_token(
        o.service.engine, o.workspace, scopes=["read"], expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    async with _client(o.service, expired) as c:
        r = await c.get("/v1/campaigns")
    assert r.status_code == 401 and r.json()["code"] == "token_expired"


async def test_failed_attempts_are_limited_per_client(o: Outreach, clients: dict[str, Any]) -> None:
    ticks = Ticks()
    burst, per_minute = o.settings.auth_failures_burst, o.settings.auth_failures_per_minute
    o.service.app.state.auth_failures = FailureLimiter(per_minute, burst, now=ticks)
    good = await create_token(o.service.engine, o.workspace, scopes=["read"])
    attacker = _client(o.service, "ls_guess", client=("203.0.113.7", 4000))
    for _ in range(burst):
        assert (await attacker.get("/v1/campaigns")).status_code == 401
    limited = await attacker.get("/v1/campaigns")
    assert limited.status_code == 429 and limited.json()["code"] == "too_many_failed_attempts"
    assert int(limited.headers["retry-after"]) == round(60 / per_minute)
    # While limited, even a valid token from that client is refused: guessing cannot tell a hit.
    async with _client(o.service, good, client=("203.0.113.7", 4001)) as same_client:
        assert (await same_client.get("/v1/campaigns")).status_code == 429
        async with _client(o.service, None, client=("203.0.113.7", 4002)) as anonymous:
            assert (await anonymous.get("/v1/campaigns")).status_code == 429
        # Others are not affected.
        async with _client(o.service, good, client=("198.51.100.1", 4000)) as elsewhere:
            assert (await elsewhere.get("/v1/campaigns")).status_code == 200
        ticks.t += 60 / per_minute  # one attempt refills
        assert (await same_client.get("/v1/campaigns")).status_code == 200
    assert (await attacker.get("/v1/campaigns")).status_code == 401
    assert (await attacker.get("/v1/campaigns")).status_code == 429
    await attacker.aclose()


def test_failure_limiter_forgets_the_oldest_clients() -> None:
    ticks = Ticks()
    limiter = FailureLimiter(10, 1, max_clients=3, now=ticks)
    for n in range(5):
        limiter.failed(f"c{n}")
    assert limiter.retry_after("c4") is not None and limiter.retry_after("c0") is None
    assert len(limiter._buckets) == 3


def test_scope_levels() -> None:
    assert auth.normalise_scopes(["admin"]) == ["read", "write", "admin"]
    assert auth.normalise_scopes(["read", "write"]) == ["read", "write"]
    assert auth.grants(["read", "write"], "write") and not auth.grants(["read"], "write")
    assert auth.grants(["read", "write", "admin"], "admin") and not auth.grants([], "read")
    with pytest.raises(ValueError, match="unknown scope"):
        auth.normalise_scopes(["root"])


def test_cli_creates_lists_and_revokes(database_url: str) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "COLUMNS": "200"}
    ws = f"ws-cli-{uuid.uuid4().hex[:6]}"
    made = runner.invoke(
        cli,
        [
            "tokens",
            "create",
            "--workspace",
            ws,
            "--scope",
            "write",
            "--label",
            "ci",
            "--expires-in-days",
            "30",
            "--json",
        ],
        env=env,
    )
    assert made.exit_code == 0, made.output
    created = json.loads(made.output)
    assert created["token"].startswith("ls_") and created["scopes"] == ["read", "write"]
    listed = runner.invoke(cli, ["tokens", "list", "--workspace", ws, "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [r["token_id"] for r in rows] == [created["token_id"]] and "token" not in rows[0]
    table = runner.invoke(cli, ["tokens", "list", "--workspace", ws], env=env)
    assert created["prefix"] in table.output and created["token"] not in table.output
    revoked = runner.invoke(cli, ["tokens", "revoke", created["token_id"]], env=env)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert runner.invoke(cli, ["tokens", "list", "--workspace", ws, "--json"], env=env).output.strip() == ""
    missing = runner.invoke(cli, ["tokens", "revoke", str(uuid.uuid4())], env=env)
    assert missing.exit_code == 1 and "no token" in missing.output
    bad = runner.invoke(cli, ["tokens", "create", "--workspace", ws, "--scope", "root"], env=env)
    assert bad.exit_code != 0
