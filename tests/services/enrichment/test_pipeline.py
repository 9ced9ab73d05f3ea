"""Enrichment on the real broker and database: a discovered lead gets a profile and an email outcome."""

from __future__ import annotations

import uuid
from typing import Any

from leadstream_schemas import Envelope, LeadDiscovered, LeadProfileEnriched, LeadSource, decode

from services.enrichment.app import build
from services.enrichment.settings import EnrichmentSettings
from tests.support.kafka import produce_events, read_until
from tests.support.personal import decode_opened


async def test_discovered_lead_is_enriched(make_settings: Any, start_service: Any, own_topic_prefix: str) -> None:
    # Topics of its own: on the session's, enrichment (its default simulated providers: 5-40 ms a call, a rate
    # limit every 40th) first enriched every lead the session's other tests had discovered before this one's.
    topic_prefix = own_topic_prefix
    settings = make_settings("enrichment", EnrichmentSettings, topic_prefix=topic_prefix)
    await start_service(build(settings))
    lead_id = uuid.uuid4()
    env = Envelope.new(
        LeadDiscovered(lead_id=lead_id, source=LeadSource.manual, full_name="Ada Adler", company="Northwind Labs"),
        workspace_id="ws-test",
        source="test",
    )
    await produce_events(settings.kafka_bootstrap_servers, topic_prefix, [env])

    def types_for_lead(records: list) -> list[str]:
        return [decode(r.value, r.headers).type for r in records if r.key == str(lead_id).encode()]

    records = await read_until(
        settings.kafka_bootstrap_servers,
        [topic_prefix + "leadstream.lead.v1"],
        lambda recs: len(types_for_lead(recs)) >= 3,
    )
    types = types_for_lead(records)
    assert types[0] == "leadstream.lead.discovered.v1"
    assert types[1] == "leadstream.lead.profile_enriched.v1"
    assert types[2] in {"leadstream.lead.email_enriched.v1", "leadstream.lead.email_not_found.v1"}
    enriched = [decode_opened(r.value, r.headers) for r in records if r.key == str(lead_id).encode()][1]
    assert enriched.causation_id == env.id
    assert isinstance(enriched.data, LeadProfileEnriched) and enriched.data.full_name == "Ada Adler"
