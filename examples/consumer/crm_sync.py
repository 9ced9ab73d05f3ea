"""CRM sync: one contact per lead of a workspace, kept up to date from leadstream's lead events.

Needs only the event contract and a Kafka client:  pip install ./schemas aiokafka
    python examples/consumer/crm_sync.py --workspace demo --out crm.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from leadstream_schemas import (
    LEAD,
    DecodeError,
    EmailSent,
    Envelope,
    InviteSent,
    LeadDiscovered,
    LeadEmailEnriched,
    LeadProfileEnriched,
    LeadUnsubscribed,
    MessageSent,
    Replied,
    decode,
)

log = logging.getLogger("crm-sync")
STAGES = ["new", "contacted", "replied"]  # a contact only moves forward


def apply(contacts: dict[str, dict[str, Any]], env: Envelope[Any]) -> None:
    """Fold one event into the contacts. Applying an event twice changes nothing (delivery is at-least-once)."""
    contact = contacts.setdefault(str(env.data.lead_id), {"stage": "new"})
    stage = contact["stage"]
    match env.data:
        case LeadDiscovered(full_name=name, company=company, linkedin_url=url):
            contact.update({k: v for k, v in {"name": name, "company": company, "linkedin_url": url}.items() if v})
        case LeadProfileEnriched(full_name=name, role=role, company_name=company):
            contact.update({k: v for k, v in {"name": name, "title": role, "company": company}.items() if v})
        case LeadEmailEnriched(email=email):
            contact["email"] = email
        case InviteSent() | MessageSent() | EmailSent():
            stage = "contacted"
        case Replied():
            stage = "replied"
        case LeadUnsubscribed():
            contact["do_not_contact"] = True
    contact["stage"] = max(contact["stage"], stage, key=STAGES.index)


def load(path: Path) -> dict[str, dict[str, Any]]:
    """The contacts saved so far (none before the first run)."""
    return json.loads(path.read_text()) if path.exists() else {}


def save(path: Path, contacts: dict[str, dict[str, Any]]) -> None:
    """Write the contacts atomically (a crash leaves the previous file, never half of one)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(contacts, indent=1, sort_keys=True))
    os.replace(tmp, path)


async def run(bootstrap: str, workspace: str, out: Path, *, topic_prefix: str = "", stop: asyncio.Event) -> None:
    """Consume the lead topic until ``stop``; offsets are committed only after the contacts are saved."""
    contacts = load(out)
    consumer = AIOKafkaConsumer(
        topic_prefix + LEAD.name,
        bootstrap_servers=bootstrap,
        group_id=f"crm-sync-{workspace}",
        auto_offset_reset="earliest",  # topics keep every event: a new sync starts from the first one
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for record in (r for records in batch.values() for r in records):
                try:
                    env = decode(record.value, record.headers)
                except DecodeError as err:  # e.g. a type newer than this package: skip it, say so
                    log.warning("skipped %s[%s]@%s: %s", record.topic, record.partition, record.offset, err)
                    continue
                if env.workspace_id == workspace:
                    apply(contacts, env)
            if batch:
                save(out, contacts)
                await consumer.commit()
    finally:
        await consumer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Keep a CRM contact per lead from leadstream events.")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--out", type=Path, default=Path("crm.json"))
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    parser.add_argument("--topic-prefix", default=os.environ.get("LEADSTREAM_TOPIC_PREFIX", ""))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(run(args.bootstrap, args.workspace, args.out, topic_prefix=args.topic_prefix, stop=asyncio.Event()))
    except KeyboardInterrupt:
        pass
