"""Killing a service with SIGKILL in the middle of a stream and restarting it loses no event and
duplicates no effect. Runs the real enrichment service as an OS process on the real broker and database.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
from leadstream_schemas import (
    Envelope,
    LeadDiscovered,
    LeadEmailEnriched,
    LeadEmailNotFound,
    LeadEnrichmentFailed,
    LeadProfileEnriched,
    LeadSource,
    derive_id,
    headers_dict,
)
from sqlalchemy import text

from services.runtime.db import create_engine
from tests.conftest import SettingsFactory
from tests.support.kafka import produce_events, wait_for
from tests.support.probe.fixtures import probe_topics
from tests.support.probe.process import ServiceProcess, free_port
from tests.support.probe.tail import Records, Tail

LEADS = 200
KILL_AFTER = 25  # leads with a profile outcome on Kafka when the process is killed
PROFILE = LeadProfileEnriched.event_type
FAILED = LeadEnrichmentFailed.event_type
EMAIL = {LeadEmailEnriched.event_type, LeadEmailNotFound.event_type}


def _outcomes(records: Records) -> dict[str, dict[str, set[str]]]:
    """Per lead (record key), the distinct event ids of each stage's outcome: ``profile`` and ``email``.

    A stage ends in its success event or in ``LeadEnrichmentFailed`` for that stage. Kafka copies of
    one id (a re-published outbox row) count once; an effect applied twice would show as two ids.
    """
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        h = headers_dict(r.headers)
        kind = h.get("ce_type")
        if kind == FAILED:
            stage = json.loads(r.value)["stage"]
        elif kind == PROFILE:
            stage = "profile"
        elif kind in EMAIL:
            stage = "email"
        else:
            continue
        out[r.key.decode()][stage].add(h["ce_id"])
    return out


def _with(stage: str, records: Records) -> int:
    """How many leads have an outcome for ``stage``."""
    return sum(1 for stages in _outcomes(records).values() if stages.get(stage))


async def _metric(port: int, name: str, **labels: str) -> float:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        body = (await http.get("/metrics")).text
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _ready(port: int) -> bool:
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            return (await http.get("/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def test_sigkill_mid_stream_loses_nothing_and_duplicates_no_effect(
    subprocess_env: dict[str, str],
    topic_prefix: str,
    make_settings: SettingsFactory,
    database_url: str,
    tmp_path: Path,
) -> None:
    probe_prefix = await probe_topics(topic_prefix, make_settings, "sigkill")
    bootstrap = subprocess_env["KAFKA_BOOTSTRAP_SERVERS"]
    port, metrics_port = free_port(), free_port()
    env = {
        **subprocess_env,
        # Topics of its own: no other test of the session sees these 200 leads, nor this service theirs.
        "LEADSTREAM_TOPIC_PREFIX": probe_prefix,
        "LEADSTREAM_SERVICE_NAME": "enrichment",
        "LEADSTREAM_HTTP_PORT": str(port),
        "LEADSTREAM_METRICS_PORT": str(metrics_port),
        "LEADSTREAM_LOG_JSON": "true",
        "LEADSTREAM_LOG_LEVEL": "WARNING",
    }
    service = ServiceProcess("services.enrichment", env, tmp_path / "enrichment.log")

    discovered = [
        Envelope.new(
            LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.manual, full_name=f"Lead {i}", company="Acme"),
            workspace_id="ws-sigkill",
            source="test",
        )
        for i in range(LEADS)
    ]
    keys = {str(e.data.lead_id).encode() for e in discovered}
    # All produced before the service starts: its first batch holds every record, so the kill lands
    # while processed records are not yet committed and emitted events may still sit in the outbox.
    await produce_events(bootstrap, probe_prefix, discovered)

    lead_topic = probe_prefix + "leadstream.lead.v1"
    async with Tail(bootstrap, [lead_topic], keep=lambda r: r.key in keys) as tail:
        await service.start()
        try:
            await tail.until(
                lambda rs: _with("profile", rs) >= KILL_AFTER,
                timeout_s=120,
                what=f"{KILL_AFTER} enriched leads before the kill",
            )
            assert await service.kill() == -9
            await tail.poll()
            at_kill = _with("email", tail.records)
            assert at_kill < LEADS, "the stream was already done: the kill was not mid-stream"

            await service.start()
            await tail.until(
                lambda rs: _with("profile", rs) == LEADS and _with("email", rs) == LEADS,
                timeout_s=180,
                what="every lead enriched after the restart",
            )
            await wait_for(lambda: _ready(port), timeout_s=60, what="the restarted service to be ready")
            # Redelivered records were really re-read after the restart, and recognised as duplicates.
            duplicates = await _metric(
                metrics_port,
                "leadstream_events_handled_total",
                outcome="duplicate",
                event_type=LeadDiscovered.event_type,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- enrichment output ---\n{service.log_tail()}") from None
        finally:
            await service.stop()
        records = tail.records

    assert duplicates >= 1, "no record was redelivered: the kill did not exercise the at-least-once path"

    outcomes = _outcomes(records)
    profiled = 0
    for e in discovered:
        lead = str(e.data.lead_id)
        # Exactly one outcome per stage: a re-handled event makes the same ids (they derive from the
        # event's id), so a second id would be an effect applied twice.
        assert len(outcomes[lead]["profile"]) == 1, (lead, outcomes[lead])
        assert len(outcomes[lead]["email"]) == 1, (lead, outcomes[lead])
        if outcomes[lead]["profile"] == {str(derive_id(e.id, PROFILE))}:
            profiled += 1
    assert profiled > LEADS // 2  # most profiles succeed in simulation; failures are allowed, not duplicates

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            ids = [e.id for e in discovered]
            processed = await conn.scalar(
                text("SELECT count(*) FROM enrichment.processed_events WHERE event_id = ANY(:ids)"), {"ids": ids}
            )
            cached = await conn.scalar(
                text("SELECT count(*) FROM enrichment.profile_cache WHERE profile_key = ANY(:keys)"),
                {"keys": [f"lead:{e.data.lead_id}" for e in discovered]},
            )
            left_in_outbox = await conn.scalar(text("SELECT count(*) FROM enrichment.outbox"))
    finally:
        await engine.dispose()
    assert processed == LEADS
    assert cached == profiled  # one cache row per enriched profile
    assert left_in_outbox == 0
