"""Erasure by crypto-shredding on the real broker and database, through the projection and the ``leadstream`` CLI.

Events about two people are written as services write them (the outbox: personal fields encrypted), plus one
about the first written in plaintext before encryption existed. ``leadstream erase`` destroys the first person's
key: the live views blank them, a rebuild from offset 0, a fresh export and the logs hold nothing of them, their
counts are kept, and the other person is untouched.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from leadstream_schemas import (
    Envelope,
    InviteSent,
    LeadDiscovered,
    LeadEmailEnriched,
    LeadProfileEnriched,
    LeadSource,
    MessageSent,
    VideoGenerated,
    encode,
)

from services.projection.app import build
from services.projection.checksum import dsn
from services.runtime import personal
from services.runtime.db import create_engine
from services.runtime.migrations import upgrade
from services.runtime.personal import KeyStoreError, KeyWrapper
from services.runtime.secrets import development_key
from tests.cli.test_replay_export import cli, cli_raw
from tests.services.projection.fixtures import Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.support.kafka import produce, read_until, wait_for

WS = "ws-erase"
GONE = ("Philippa", "Shredwell", "philippa.shredwell@erase.example")
KEPT = ("Bartholomew", "Keepsake", "bart.keepsake@erase.example")
CAMPAIGN, LEGACY_CAMPAIGN = uuid.UUID(int=0xE7A5E), uuid.UUID(int=0x01D)


def _video_url(first: str, last: str, campaign: uuid.UUID = CAMPAIGN) -> str:
    """The link of the video rendered for one person: the studio names it after them, as real ones do."""
    return f"https://videos.studio.example/{campaign.hex[-4:]}/{first.lower()}-{last.lower()}.mp4"


def _events(lead: uuid.UUID, first: str, last: str, email: str) -> list[Envelope[Any]]:
    facts: list[Any] = [
        LeadDiscovered(
            lead_id=lead,
            source=LeadSource.manual,
            full_name=f"{first} {last}",
            first_name=first,
            last_name=last,
            linkedin_url=f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}",
            title="Head of Data",
            company="Erasure Labs",
        ),
        LeadProfileEnriched(lead_id=lead, full_name=f"{first} {last}", headline=f"{first} runs data", city="Leeds"),
        LeadEmailEnriched(lead_id=lead, email=email),
        VideoGenerated(
            lead_id=lead,
            campaign_id=CAMPAIGN,
            video_job_id=uuid.uuid4(),
            video_url=_video_url(first, last),
            thumbnail_url=_video_url(first, last).replace(".mp4", ".jpg"),
        ),
        InviteSent(lead_id=lead, campaign_id=CAMPAIGN, note="Shall we connect?", video_url=_video_url(first, last)),
    ]
    return [Envelope.new(f, workspace_id=WS, source="test") for f in facts]


def _hits(text: str, person: tuple[str, str, str]) -> list[str]:
    lower = text.lower()
    return [n for n in person if n.lower() in lower]


async def _tables(database_url: str, schema: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn(database_url))
    try:
        names = [
            r[0]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
            )
        ]
        return {
            t: "\n".join(r[0] for r in await conn.fetch(f'SELECT x::text FROM "{schema}"."{t}" AS x')) for t in names
        }
    finally:
        await conn.close()


async def _video_links(database_url: str, schema: str, lead: uuid.UUID) -> dict[str, Any]:
    """The lead's video link in the views: of the lead, and of each of its campaigns."""
    conn = await asyncpg.connect(dsn(database_url))
    try:
        state = await conn.fetchval(f'SELECT video_url FROM "{schema}".lead_state WHERE lead_id = $1', lead)
        rows = await conn.fetch(f'SELECT campaign_id, video_url FROM "{schema}".lead_campaign WHERE lead_id = $1', lead)
        return {"lead": state, **{str(r[0]): r[1] for r in rows}}
    finally:
        await conn.close()


async def _counts(database_url: str, lead: uuid.UUID) -> tuple[Any, int]:
    """The lead's event count and pipeline rank in the live views, and its number of timeline rows."""
    conn = await asyncpg.connect(dsn(database_url))
    try:
        state = await conn.fetchrow(
            "SELECT event_count, pipeline_rank FROM projection.lead_state WHERE lead_id = $1", lead
        )
        return state, int(await conn.fetchval("SELECT count(*) FROM projection.timeline WHERE lead_id = $1", lead))
    finally:
        await conn.close()


@pytest.mark.timeout(600)
async def test_erase_blanks_views_rebuilds_and_exports_and_keeps_counts(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = isolated.settings()
    service = await start_service(build(settings))
    consumer = service.app.state.projection
    await wait_for(lambda: consumer.assigned_once, timeout_s=60, what="assignment")
    gone, kept = uuid.uuid4(), uuid.uuid4()
    written = _events(gone, *GONE) + _events(kept, *KEPT)
    async with service.engine.begin() as conn:
        await service.emit(conn, written)  # as every service writes: through the outbox, personal fields sealed
    service.wake_relay()
    # And one event of the first person from before encryption: plaintext on the log.
    legacy = Envelope.new(MessageSent(lead_id=gone, text=f"Dear {GONE[0]} {GONE[1]}"), workspace_id=WS, source="old")
    # Their video links in another campaign, from before the links were personal (contract 1.2.0): plaintext too.
    old_video = VideoGenerated(
        lead_id=gone,
        campaign_id=LEGACY_CAMPAIGN,
        video_job_id=uuid.uuid4(),
        video_url=_video_url(*GONE[:2], LEGACY_CAMPAIGN),
    )
    legacy_video = Envelope.new(old_video, workspace_id=WS, source="old")
    await produce(
        settings.kafka_bootstrap_servers,
        settings.topic_name(legacy.topic),
        [encode(legacy), encode(legacy_video)],
    )
    total = len(written) + 2
    await wait_for(lambda: consumer.applied >= total, timeout_s=120, what="the live views caught up")

    records = await read_until(
        settings.kafka_bootstrap_servers, [settings.topic_name("leadstream.lead.v1")], lambda rs: len(rs) >= total
    )
    sealed = [r for r in records if r.value is not None and b"pii1:" in r.value]
    assert len(sealed) == len(written)  # every written event carries tokens ...
    clear = [r for r in sealed if _hits((r.value or b"").decode(), GONE) or _hits((r.value or b"").decode(), KEPT)]
    assert clear == []  # ... and nothing of either person in clear

    live = await _tables(settings.database_url, "projection")
    assert _hits(live["lead_state"], GONE) and _hits(live["lead_state"], KEPT)  # decrypted into the views
    # The video links are read in plain, sealed or not (the old plaintext record as it was).
    links = await _video_links(settings.database_url, "projection", gone)
    assert {k: v for k, v in links.items() if k != "lead"} == {
        str(CAMPAIGN): _video_url(*GONE[:2]),
        str(LEGACY_CAMPAIGN): _video_url(*GONE[:2], LEGACY_CAMPAIGN),
    }
    assert links["lead"] in {_video_url(*GONE[:2]), _video_url(*GONE[:2], LEGACY_CAMPAIGN)}  # the latest of the two
    counts_before, rows_before = await _counts(settings.database_url, gone)

    out = await cli(isolated, "erase", "--lead", str(gone), "--json")
    assert '"erased": ["ws-erase"]' in out
    assert '"already": ["ws-erase"]' in await cli(isolated, "erase", "--lead", str(gone), "--json")

    async def blanked() -> bool:
        state = (await _tables(settings.database_url, "projection"))["lead_state"]
        return not _hits(state, GONE) and "[erased]" in state

    await wait_for(blanked, timeout_s=120, what="the live views to blank the erased person")
    live = await _tables(settings.database_url, "projection")
    assert {t: _hits(text, GONE) for t, text in live.items() if _hits(text, GONE)} == {}
    assert _hits(live["lead_state"], KEPT) == list(KEPT)  # the other person is untouched
    erased_links = {"lead": "[erased]", str(CAMPAIGN): "[erased]", str(LEGACY_CAMPAIGN): "[erased]"}
    assert await _video_links(settings.database_url, "projection", gone) == erased_links
    assert (await _video_links(settings.database_url, "projection", kept))[str(CAMPAIGN)] == _video_url(*KEPT[:2])
    counts_after, rows_after = await _counts(settings.database_url, gone)
    # Counts stay (the erasure itself is one more event of the lead's history).
    assert counts_after["event_count"] == counts_before["event_count"] + 1
    assert counts_after["pipeline_rank"] == counts_before["pipeline_rank"]
    assert rows_after == rows_before + 1

    await cli(isolated, "replay", "--from-beginning", "--into", "erased")
    rebuilt = await _tables(settings.database_url, "projection_erased")
    assert {t: _hits(text, GONE) for t, text in rebuilt.items() if _hits(text, GONE)} == {}
    assert _hits(rebuilt["lead_state"], KEPT) == list(KEPT)
    assert await _video_links(settings.database_url, "projection_erased", gone) == erased_links
    assert rebuilt["timeline"].count(str(gone)) == rows_after

    path = tmp_path / "warehouse"
    await cli(isolated, "export", "--topic", "lead", "--format", "jsonl", "--out", str(path))
    exported = "\n".join(f.read_text() for f in sorted(path.rglob("*.jsonl")))
    assert exported.count(str(gone)) >= 6 and "[erased]" in exported  # every event of theirs, as [erased]
    assert _hits(exported, GONE) == [] and _hits(exported, KEPT) == list(KEPT)

    assert _hits(caplog.text, GONE) == []


async def test_keys_rewrap_moves_every_key_to_the_first_key_encryption_key(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, leads = f"ws-rewrap-{uuid.uuid4().hex[:6]}", [str(uuid.uuid4()) for _ in range(3)]
    dev = development_key("personal data keys", "key")
    new = "a-new-key-encryption-key-" + uuid.uuid4().hex
    url = isolated.settings().database_url
    await upgrade(personal.MIGRATIONS_DIR, url, personal.SCHEMA)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:  # as the services wrote them: wrapped with the development KEK
            made = await personal.ensure_keys(conn, [(ws, lead) for lead in leads], wrapper=KeyWrapper([dev]))

        # Rotation: the new key first, the old one after it; only this workspace (the database is shared).
        monkeypatch.setenv("LEADSTREAM_KEY_ENCRYPTION_KEY", f"{new},{dev}")
        rewrap = ("keys", "rewrap", "--workspace", ws, "--json", "--batch", "2")
        assert json.loads(await cli(isolated, *rewrap)) == {"rewrapped": 3, "current": 0}
        assert json.loads(await cli(isolated, *rewrap)) == {"rewrapped": 0, "current": 3}
        async with engine.connect() as conn:
            assert await personal.fetch_keys(conn, [(ws, lead) for lead in leads], wrapper=KeyWrapper([new])) == made
            with pytest.raises(KeyStoreError, match="does not hold"):  # the old KEK alone opens nothing now
                await personal.fetch_keys(conn, [(ws, leads[0])], wrapper=KeyWrapper([dev]))
    finally:
        await engine.dispose()

    # Outside development the CLI needs a real key-encryption key, and says which setting.
    monkeypatch.delenv("LEADSTREAM_KEY_ENCRYPTION_KEY")
    monkeypatch.setenv("LEADSTREAM_ENV", "production")
    code, out, err = await cli_raw(isolated, *rewrap)
    assert code == 2 and "LEADSTREAM_KEY_ENCRYPTION_KEY (personal data keys) is not set" in out + err
