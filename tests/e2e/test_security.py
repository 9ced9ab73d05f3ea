"""Security on the running stack: every service as a process on the real broker and database.

- Tenant isolation, walked from the OpenAPI documents: for every route with an id in its path, workspace B's
  token gets 404 on workspace A's object (and A gets it). A route with an id this walk cannot fill fails.
- Every list route, walked page by page (limit 1): pages end, hold at most ``limit`` items, repeat none.
- Schemathesis against every service: no 5xx, every response and problem as its document declares.
- No personal data in logs, Kafka keys or headers (all topics, DLQs included): a campaign runs with a lead of a
  distinctive name and email, and records carrying them are dead-lettered; then the logs and every record's key
  and headers are searched for them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from leadstream_schemas import LEAD, Envelope, LeadDiscovered, LeadSource, encode
from sqlalchemy.engine import make_url

from leadstream_cli.demo import CLOCK_SCALE
from leadstream_cli.processes import SERVICES, ServiceFleet, free_port
from services.runtime import auth
from services.runtime.auth import PUBLIC_EXTENSION
from services.runtime.db import create_engine
from services.runtime.kafka import apply_topics
from services.runtime.migrations import upgrade
from services.runtime.plans import set_plan
from services.runtime.settings import RuntimeSettings
from tests.conftest import TEST_PARTITIONS
from tests.support.infra import ROOT, Infra, create_database, drop_database, plain_dsn
from tests.support.kafka import produce, wait_for
from tests.support.webhook_receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NAME = ("Zebulon", "Quaxworth")
EMAIL = "zebulon.quaxworth@quaxmail.example"
PROFILE = "https://www.linkedin.com/in/zebulon-quaxworth-q7x"
NEEDLES = ("zebulon", "quaxworth", EMAIL)
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class Stack:
    """The running services, two workspaces' tokens and workspace A's objects by path parameter name."""

    fleet: ServiceFleet
    token_a: str
    token_b: str
    token_fuzz: str
    ids: dict[str, str] = field(default_factory=dict)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_dir: Path = Path()
    prefix: str = ""

    def client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def url(self, service: str, path: str) -> str:
        return self.fleet.procs[service].url + path


async def _call(c: httpx.AsyncClient, stack: Stack, method: str, service: str, path: str, **kw: Any) -> Any:
    r = await c.request(method, stack.url(service, path), **kw)
    assert r.status_code < 400, f"{method} {service}{path} -> {r.status_code}: {r.text}"
    return r.json() if r.content else None


async def _token(database_url: str, workspace: str) -> str:
    engine = create_engine(database_url)
    try:
        # Scale with the video add-on: the walk creates a video campaign (a new workspace starts on Starter).
        await set_plan(engine, workspace, "scale", ["video"])
        return await auth.create_token(engine, workspace, label="security e2e")
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
async def stack(
    subprocess_env: dict[str, str], infra: Infra, topic_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    # A database and topics of its own: what the fuzzer creates (searches that run, campaigns, poison) must not
    # reach the other tests' services, which share the session's database and topics.
    run = uuid.uuid4().hex[:6]
    database_url = await create_database(infra.database_url, "leadstream_sec_")
    prefix = f"{topic_prefix}sec{run}."
    await apply_topics(
        RuntimeSettings(kafka_bootstrap_servers=infra.kafka_bootstrap_servers, topic_prefix=prefix),
        partitions=TEST_PARTITIONS,
    )
    await upgrade(auth.MIGRATIONS_DIR, database_url, auth.IDENTITY_SCHEMA)
    log_dir = tmp_path_factory.mktemp("security-logs")
    fleet = ServiceFleet(
        env={
            **subprocess_env,
            "DATABASE_URL": database_url,
            "LEADSTREAM_TOPIC_PREFIX": prefix,
            "LEADSTREAM_CLOCK_SCALE": str(CLOCK_SCALE),
            "LEADSTREAM_CLOCK_EPOCH": datetime.now(UTC).isoformat(),
            "LEADSTREAM_LOG_JSON": "true",
            "LEADSTREAM_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",  # the receiver is on this machine
            "LEADSTREAM_WEBHOOKS_ALLOW_HTTP": "true",
            # The fuzzer sends requests without a token on purpose: do not lock this machine's client out.
            "LEADSTREAM_AUTH_FAILURES_BURST": "1000000",
        },
        log_dir=log_dir,
        ports={name: free_port() for name in SERVICES},
    )
    stack = Stack(
        fleet,
        await _token(database_url, f"ws-sec-a-{run}"),
        await _token(database_url, f"ws-sec-b-{run}"),
        await _token(database_url, f"ws-sec-fuzz-{run}"),
        log_dir=log_dir,
        prefix=prefix,
    )
    try:
        for name in SERVICES:
            fleet.start(name)
        await asyncio.to_thread(fleet.wait_ready, 180)
        async with Receiver().running() as receiver:
            await _seed(stack, receiver)
            yield stack
    finally:
        await asyncio.to_thread(fleet.stop)
        await drop_database(plain_dsn(infra.database_url), make_url(database_url).database or "")


async def _seed(stack: Stack, receiver: Receiver) -> None:
    """Workspace A: an account, a search, a lead of a distinctive name in a campaign with a video, a template, a
    webhook subscription; then wait until every service holds its part."""
    async with stack.client(stack.token_a) as a:
        for name in SERVICES:
            r = await a.get(stack.url(name, "/openapi.json"))
            assert r.status_code == 200, name
            stack.docs[name] = r.json()
        sub = await _call(
            a,
            stack,
            "POST",
            "webhooks",
            "/v1/webhooks/subscriptions",
            json={"url": receiver.url, "event_types": ["leadstream.lead.*"]},
        )
        receiver.secrets = [sub["secret"]]
        account = await _call(a, stack, "POST", "outreach", "/v1/accounts", json={"provider": "linkedin"})
        search = await _call(
            a,
            stack,
            "POST",
            "discovery",
            "/v1/searches",
            json={
                "name": "sec",
                "kind": "signals",
                "criteria": {"prompt": "SaaS hiring SDRs", "signal_types": ["hiring_plans"]},
                "target_count": 2,
            },
        )
        lead = await _call(
            a,
            stack,
            "POST",
            "discovery",
            "/v1/leads",
            json={
                "linkedin_url": PROFILE,
                "email": EMAIL,
                "first_name": NAME[0],
                "last_name": NAME[1],
                "company": "Quax Industries",
                "title": "Head of Sales",
            },
        )
        campaign = await _call(
            a,
            stack,
            "POST",
            "outreach",
            "/v1/campaigns",
            json={
                "name": "Security e2e",
                "audience": {"type": "source_group", "ref": lead["source_group_id"]},
                "workflow": "direct_connect",
                "strategy": {"offer": "an audit", "review": False},
                "delivery": {"pace": "high_volume", "active_days": "every_day", "start_hour": 0, "end_hour": 24},
                "account_ids": [account["account_id"]],
                "video": {"template_id": "vt-intro", "segments": [{"field": "city", "fallback": "your city"}]},
            },
        )
        await _call(a, stack, "POST", "outreach", f"/v1/campaigns/{campaign['campaign_id']}/launch", json={})
        template = await _call(
            a,
            stack,
            "POST",
            "messaging",
            "/v1/templates",
            json={"name": f"sec-{uuid.uuid4().hex[:6]}", "category": "hiring_manager", "body": "Hi {first_name}"},
        )
        tokens = await _call(a, stack, "GET", "outreach", "/v1/tokens")
        stack.ids.update(
            campaign_id=campaign["campaign_id"],
            lead_id=lead["lead_id"],
            account_id=account["account_id"],
            search_id=search["search_id"],
            group_id=lead["source_group_id"],
            ref=template["template_id"],
            token_id=tokens["items"][0]["token_id"],
            subscription_id=sub["subscription_id"],
        )

        async def ready() -> bool:
            cid, lid, sid = stack.ids["campaign_id"], stack.ids["lead_id"], stack.ids["subscription_id"]
            checks = {
                "projection": f"/v1/leads/{lid}",
                "video": f"/v1/video/jobs/{lid}",
                "messaging": f"/v1/campaigns/{cid}/strategy",
            }
            for service, path in checks.items():
                if (await a.get(stack.url(service, path))).status_code != 200:
                    return False
            summary = await a.get(stack.url("projection", f"/v1/campaigns/{cid}/summary"))
            drafts = await a.get(stack.url("messaging", f"/v1/campaigns/{cid}/drafts"), params={"status": "all"})
            deliveries = await a.get(stack.url("webhooks", f"/v1/webhooks/subscriptions/{sid}/deliveries"))
            if summary.status_code != 200 or not drafts.json()["items"] or not deliveries.json()["items"]:
                return False
            stack.ids["draft_id"] = drafts.json()["items"][0]["draft_id"]
            stack.ids["delivery_id"] = deliveries.json()["items"][0]["delivery_id"]
            return True

        await wait_for(ready, timeout_s=240, interval_s=1.0, what="workspace A's objects in every service")


# -- tenant isolation -------------------------------------------------------------------------------------------


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def example(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A small value valid for ``schema`` (required properties only; the first choice of every union)."""
    schema = _resolve(doc, schema)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for union in ("anyOf", "oneOf", "allOf"):
        if union in schema:
            options = [s for s in schema[union] if _resolve(doc, s).get("type") != "null"]
            return example(doc, options[0])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: example(doc, props[k]) for k in schema.get("required", [])}
    if kind == "array":
        return [example(doc, schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return False
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if schema.get("format") == "date-time":
        return datetime.now(UTC).isoformat()
    return "x" * max(1, schema.get("minLength", 1))


def _operations(stack: Stack) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    for service, doc in stack.docs.items():
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if method in METHODS:
                    yield service, method, path, op


def _fill(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


async def test_another_workspaces_object_is_not_found_on_every_route_with_an_id(stack: Stack) -> None:
    unfilled, leaked, missing = [], [], []
    walked = 0
    async with stack.client(stack.token_a) as a, stack.client(stack.token_b) as b:
        gets: list[tuple[str, str]] = []
        for service, method, path, op in _operations(stack):
            if "{" not in path:
                continue
            concrete = _fill(path, stack.ids)
            if "{" in concrete:
                unfilled.append(f"{service} {method.upper()} {path}")
                continue
            kwargs: dict[str, Any] = {}
            body = op.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                kwargs["json"] = example(stack.docs[service], body["application/json"]["schema"])
            walked += 1
            r = await b.request(method.upper(), stack.url(service, concrete), **kwargs)
            # A public route (a signed link or callback) ignores the bearer token: without its signature it must
            # refuse (it may say what is missing); a bearer route must not even admit the object exists.
            refused = {400, 401, 403, 404, 422} if op.get(PUBLIC_EXTENSION) else {404}
            if r.status_code not in refused:
                leaked.append(f"{service} {method.upper()} {path} as B -> {r.status_code}: {r.text[:200]}")
            if method == "get" and not op.get(PUBLIC_EXTENSION):
                gets.append((service, concrete))
        # After every B request (deletes included), A still has every object.
        for service, concrete in gets:
            r = await a.get(stack.url(service, concrete))
            if r.status_code != 200:
                missing.append(f"{service} GET {concrete} as A -> {r.status_code}: {r.text[:200]}")
    assert not unfilled, "routes whose ids this walk cannot fill (add the object to _seed):\n" + "\n".join(unfilled)
    assert not leaked, "\n".join(leaked)
    assert not missing, "\n".join(missing)
    assert walked >= 30


def _is_list(doc: dict[str, Any], op: dict[str, Any]) -> bool:
    schema = op["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("schema")
    if not schema:
        return False
    items = _resolve(doc, schema).get("properties", {}).get("items")
    return bool(items) and _resolve(doc, items).get("type") == "array"


async def test_every_list_pages_to_its_end_without_repeating_an_item(stack: Stack) -> None:
    walked = 0
    async with stack.client(stack.token_a) as a:
        for service, method, path, op in _operations(stack):
            params = {p["name"] for p in op.get("parameters", [])}
            if method != "get" or not _is_list(stack.docs[service], op) or not {"limit", "after"} <= params:
                continue
            url = stack.url(service, _fill(path, stack.ids))
            seen: list[str] = []
            after = None
            for _ in range(500):
                page = await a.get(url, params={"limit": 1, **({"after": after} if after else {})})
                assert page.status_code == 200, (service, path, page.text)
                body = page.json()
                assert len(body["items"]) <= 1, (service, path)
                seen += [json.dumps(i, sort_keys=True) for i in body["items"]]
                after = body.get("next") or body.get("next_after")
                if after is None:
                    break
            else:
                pytest.fail(f"{service} {path}: more than 500 pages of one")
            assert len(seen) == len(set(seen)), (service, path)
            walked += 1
            assert (await a.get(url, params={"limit": 201})).status_code == 422, (service, path)
    assert walked >= 15


# -- fuzzing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_schemathesis_finds_no_server_error_and_every_answer_matches_the_document(
    stack: Stack, service: str, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "tests.support.fuzz",  # st, with the interpreter bug below turned back into a description
        "run",
        stack.url(service, "/openapi.json"),
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        os.environ.get("LEADSTREAM_FUZZ_EXAMPLES", "8"),
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "2",
        "--seed",
        "20261204",
        "--request-timeout",
        "30",
        "--no-shrink",
        "--suppress-health-check",
        "all",
        # A workspace of its own: what the fuzzer creates stays out of the other tests' way.
        "-H",
        f"Authorization: Bearer {stack.token_fuzz}",
        # Revoking its own token would end the run; /readyz answers 503 by design while a dependency is slow to
        # answer (a loaded machine), which is a state, not a server error. The projection's change stream never
        # ends (Server-Sent Events), so each generated call waited out the request timeout (most of the 5.5
        # minutes this walk took on the projection); its inputs are covered by a property test of their parser
        # (tests/services/projection/test_console_views.py) and its answers by test_change_stream.py.
        "--exclude-path-regex",
        "^/v1/tokens/|^/readyz$|^/v1/changes/stream$",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    for seed in SEEDS:
        cmd[cmd.index("--seed") + 1] = seed
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"}, cwd=ROOT
        )
        if done.returncode == 0 or not _only_the_interpreter_crashed(done.stdout):
            break
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-8000:]}\n{done.stderr[-2000:]}"


SEEDS = ("20261204", "20261205")
"""The fuzzer's seeds: the second only when the first run ended on the interpreter's own crash (see below)."""

INTERPRETER_CRASH = "SystemError: AST constructor recursion depth mismatch"
"""An ast bug of this machine's CPython 3.11 (the recursion-depth check of python/cpython#106905), hit inside
Schemathesis/Hypothesis while it generates data: a crash of the tool, not an answer of ours. Where Hypothesis
describes a lambda (where it was seen, twice in a row on the projection's document) tests/support/fuzz.py turns it
back into a description; anywhere else the run is retried once with another seed, and only when it found no
failure; a second crash fails the test."""


def _only_the_interpreter_crashed(output: str) -> bool:
    return INTERPRETER_CRASH in output and re.search(r"\b\d+ failures?\b", output) is None


# -- no personal data in logs, keys, headers --------------------------------------------------------------------


def _hits(text: str) -> list[str]:
    lower = text.lower()
    return [n for n in NEEDLES if n in lower]


async def _all_records(bootstrap: str, prefix: str) -> list[Any]:
    """Every record of every topic of this session (events and DLQs), from the beginning to the current end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    parts = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    assert parts, topics
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        out: list[Any] = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            for recs in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend(recs)
        return out
    finally:
        await consumer.stop()


async def test_no_personal_data_in_logs_keys_or_headers(stack: Stack, infra: Infra) -> None:
    topic_prefix = stack.prefix
    lead_id = stack.ids["lead_id"]
    # Records the consumers cannot take, carrying the person's data in the places libraries quote: a value that
    # fails validation (pydantic shows it), a profile URL, an email: they are dead-lettered with an error message.
    valid = Envelope.new(
        LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.manual, full_name=" ".join(NAME)),
        workspace_id="ws-sec-poison",
        source="test",
    )
    key, value, headers = encode(valid)
    data = json.loads(value)
    poison = [
        json.dumps({**data, "lead_id": " ".join(NAME)}).encode(),
        json.dumps({**data, "source": EMAIL}).encode(),
        json.dumps({**data, "linkedin_url": {"nested": PROFILE}, "email": EMAIL}).encode(),
    ]
    await produce(infra.kafka_bootstrap_servers, topic_prefix + LEAD.name, [(key, p, headers) for p in poison])

    async with stack.client(stack.token_a) as a:
        seen: set[str] = set()
        acted = {f"leadstream.lead.{t}.v1" for t in ("invite_sent", "message_sent", "action_skipped", "action_failed")}

        async def progressed() -> bool:
            r = await a.get(stack.url("projection", f"/v1/leads/{lead_id}/timeline"))
            seen.update(i["type"] for i in r.json().get("items", []) if r.status_code == 200)
            return bool(seen & acted)

        try:
            await wait_for(progressed, timeout_s=240, interval_s=1.0, what="outreach's first action on the lead")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the lead's timeline: {sorted(seen)}") from None

    async def dead_lettered() -> list[Any]:
        records = await _all_records(infra.kafka_bootstrap_servers, topic_prefix)
        ours = [r for r in records if r.topic.endswith(".dlq") and r.key == key]
        groups = {dict(r.headers).get("dlq_consumer_group", b"") for r in ours}
        return records if len(groups) >= 3 else []  # several services' consumers dead-lettered them

    records = await wait_for(dead_lettered, timeout_s=120, interval_s=1.0, what="the poison records dead-lettered")
    # The data did flow (the checks below are not vacuous): the poison values carry the person in clear ...
    dlq = [r for r in records if r.topic.endswith(".dlq") and r.key == key]
    assert dlq and all(dict(r.headers).get("dlq_error_message") for r in dlq)
    assert all(_hits((r.value or b"").decode("utf-8", "replace")) for r in dlq)
    # ... while what the services wrote about the lead carries it only encrypted (services.runtime.personal).
    written = [r for r in records if r.key == lead_id.encode() and not r.topic.endswith(".dlq")]
    assert len(written) >= 5 and any(b'"pii1:' in (r.value or b"") for r in written)
    assert [r.offset for r in written if _hits((r.value or b"").decode("utf-8", "replace"))] == []
    # ... and no key, no header (DLQ error messages included) does.
    leaks = [
        f"{r.topic}:{r.partition}:{r.offset} {name}"
        for r in records
        for name, raw in [("key", r.key or b""), *r.headers]
        if _hits(bytes(raw).decode("utf-8", "replace"))
    ]
    assert leaks == []

    logs = sorted(stack.log_dir.glob("*.log"))
    assert len(logs) == len(SERVICES)
    text = {p.name: p.read_text(errors="replace") for p in logs}
    assert any("dead-lettered" in t for t in text.values())  # the logs saw the poison too
    assert {name: _hits(t) for name, t in text.items() if _hits(t)} == {}


# -- erasure ----------------------------------------------------------------------------------------------------


async def _cli(stack: Stack, *args: str) -> str:
    env = {**stack.fleet.env, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("leadstream")),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, (
        f"leadstream {' '.join(args)} exited {proc.returncode}:\n{out.decode()}\n{err.decode()}"
    )
    return out.decode() + err.decode()


async def _schema_text(stack: Stack, schema: str) -> dict[str, str]:
    """Every row of every table of ``schema``, as text, by table (byte columns, e.g. webhook bodies, as text too)."""
    import asyncpg

    conn = await asyncpg.connect(plain_dsn(stack.fleet.env["DATABASE_URL"]))
    try:
        tables = [
            r[0]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
            )
        ]
        out = {}
        for t in tables:
            binary = [
                r[0]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = $1 AND table_name = $2 AND data_type = 'bytea'",
                    schema,
                    t,
                )
            ]
            columns = ", ".join(["x::text", *(f"encode(x.\"{c}\", 'escape')" for c in binary)])
            rows = await conn.fetch(f'SELECT concat_ws(\' \', {columns}) FROM "{schema}"."{t}" AS x')
            out[t] = "\n".join(r[0] for r in rows)
        return out
    finally:
        await conn.close()


OWN_SCHEMAS = ("discovery", "enrichment", "messaging", "outreach", "video", "webhooks", "console")
"""The services' own schemas (each keeps copies of what it read: leads, profiles, drafts, jobs, deliveries)."""


async def _holding(stack: Stack) -> dict[str, list[str]]:
    """The tables of the services' own schemas that hold the person (schema.table -> what was found)."""
    found = {}
    for schema in OWN_SCHEMAS:
        for table, text in (await _schema_text(stack, schema)).items():
            if hits := _hits(text):
                found[f"{schema}.{table}"] = hits
    return found


async def test_an_erased_person_is_gone_from_views_rebuilds_exports_dead_letters_and_logs(
    stack: Stack, tmp_path: Path
) -> None:
    lead_id, cid = stack.ids["lead_id"], stack.ids["campaign_id"]
    async with stack.client(stack.token_a) as a, stack.client(stack.token_b) as b:
        before = (await a.get(stack.url("projection", f"/v1/campaigns/{cid}/summary"))).json()
        shown = (await a.get(stack.url("projection", f"/v1/leads/{lead_id}"))).text
        assert _hits(shown)  # the view showed the person until now (the checks below are not vacuous)
        live_before = await _schema_text(stack, "projection")
        assert any(_hits(text) for text in live_before.values())
        # Every service kept its copy of the person (the check after the erasure is not vacuous).
        held = {name.split(".")[0] for name in await _holding(stack)}
        assert {"discovery", "messaging", "webhooks"} <= held, held

        # Workspace B cannot erase A's lead; A's admin token can, once.
        assert (await b.post(stack.url("outreach", f"/v1/leads/{lead_id}/erasure"))).status_code == 404
        first = await a.post(stack.url("outreach", f"/v1/leads/{lead_id}/erasure"))
        assert first.status_code == 202 and first.json() == {"lead_id": lead_id, "erased": True, "already": False}
        again = await a.post(stack.url("outreach", f"/v1/leads/{lead_id}/erasure"))
        assert again.status_code == 202 and again.json()["already"] is True

        async def blanked() -> bool:
            lead = await a.get(stack.url("projection", f"/v1/leads/{lead_id}"))
            timeline = await a.get(stack.url("projection", f"/v1/leads/{lead_id}/timeline"))
            types = [i["type"] for i in timeline.json().get("items", [])]
            return "leadstream.lead.erased.v1" in types and not _hits(lead.text + timeline.text)

        await wait_for(blanked, timeout_s=120, interval_s=1.0, what="the live views to blank the person")
        after = (await a.get(stack.url("projection", f"/v1/campaigns/{cid}/summary"))).json()
    # Counts stay right: the lead is still counted, and nothing done is undone.
    assert after["leads"] == before["leads"] >= 1
    for counter in ("invites_sent", "messages_sent", "emails_sent", "videos_generated", "skipped_actions"):
        assert after[counter] >= before[counter], counter
    live = await _schema_text(stack, "projection")
    assert {t: _hits(text) for t, text in live.items() if _hits(text)} == {}
    # Every service blanks or deletes its own copy when LeadErased reaches its consumer.
    left: dict[str, list[str]] = {}

    async def own_copies_blanked() -> bool:
        left.clear()
        left.update(await _holding(stack))
        return not left

    try:
        await wait_for(own_copies_blanked, timeout_s=120, interval_s=1.0, what="every service's copy blanked")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still holding the person: {left}") from None

    # A rebuild from offset 0 reads every record again through the key store: nothing of the person.
    out = await _cli(stack, "replay", "--from-beginning", "--into", "erased")
    assert "rebuilt projection_erased" in out
    rebuilt = await _schema_text(stack, "projection_erased")
    assert rebuilt["timeline"].count(lead_id) >= live["timeline"].count(lead_id) > 3  # every row, no data
    assert {t: _hits(text) for t, text in rebuilt.items() if _hits(text)} == {}

    # A fresh export of the lead topic: every event, none with the person's data.
    path = tmp_path / "warehouse"
    # (--allow-skipped: the poison records of the test above do not decode; the export names them and goes on.)
    told = await _cli(stack, "export", "--topic", "lead", "--format", "jsonl", "--out", str(path), "--allow-skipped")
    assert "skipped" in told and _hits(told) == []  # what it says of the poison records names no one either
    exported = "\n".join(f.read_text() for f in sorted(path.rglob("*.jsonl")))
    assert exported.count(lead_id) > 3 and '"[erased]"' in exported
    assert _hits(exported) == []

    # The dead letters (the poison records of the test above carried the person in clear; the listing shows
    # where they came from and why, never a value) and every service's log.
    listing = await _cli(stack, "dlq", "list", "--topic", "lead")
    assert " dead letters" in listing and "invalid_field" in listing
    assert _hits(listing) == []
    logs = {p.name: p.read_text(errors="replace") for p in sorted(stack.log_dir.glob("*.log"))}
    assert len(logs) == len(SERVICES)
    assert {name: _hits(t) for name, t in logs.items() if _hits(t)} == {}
