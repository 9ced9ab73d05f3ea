"""A record holding text Postgres cannot store (a NUL, a lone surrogate) is a decode error: the consumer
dead-letters it at once, with the field named, and handles the record behind it."""

from __future__ import annotations

from tests.services.runtime.conftest import Probe
from tests.support.kafka import read_until, wait_for
from tests.support.probe.helpers import caused_by, dead_letters_of, discovered, effect_origins, headers_of, raw, send


async def test_a_record_with_a_nul_or_a_lone_surrogate_is_dead_lettered_and_the_next_is_handled(probe: Probe) -> None:
    good = discovered(full_name="Katherine Johnson")
    key, value, headers = raw(good)
    poison = discovered(good.data.lead_id, full_name="PLACEHOLDER")
    _, poison_value, poison_headers = raw(poison)
    nul = poison_value.replace(b"PLACEHOLDER", b"Ada\\u0000Lovelace")
    lone = poison_value.replace(b"PLACEHOLDER", b"Ada \\ud800")
    sent = await send(probe.bootstrap, probe.lead_topic, [(key, nul, poison_headers), (key, lone, poison_headers)])
    sent += await send(probe.bootstrap, probe.lead_topic, [(key, value, headers)])
    assert len({md.partition for md in sent}) == 1  # one key: the valid record is behind both

    dlq = await read_until(
        probe.bootstrap,
        [probe.dlq_topic],
        lambda rs: all(dead_letters_of(rs, o, probe.settings.group_id) for o in sent[:2]),
        timeout_s=60,
    )
    for origin, what in zip(sent[:2], ("NUL", "lone surrogate"), strict=True):
        [letter] = dead_letters_of(dlq, origin, probe.settings.group_id)
        h = headers_of(letter)
        assert h["dlq_error_code"] == "invalid_field" and h["dlq_attempts"] == "0"
        assert "full_name: must not contain" in h["dlq_error_message"] and what in h["dlq_error_message"]
    await wait_for(lambda: effect_origins(probe.service.engine, good.id), timeout_s=60, what="the valid record")
    out = await read_until(probe.bootstrap, [probe.lead_topic], lambda rs: bool(caused_by(rs, good.id)))
    assert len(caused_by(out, good.id)) == 1
    assert await effect_origins(probe.service.engine, poison.id) == []
