"""A stopping service closes the clients it was given only once the work in hand is done.

The console's backends and the providers' HTTP clients used to be closed by a task woken by the stop: a
request in flight at SIGTERM then answered 500 ("the client has been closed") instead of finishing.
"""

from __future__ import annotations

import asyncio

from services.runtime.service import Service
from tests.conftest import SettingsFactory
from tests.support.kafka import wait_for
from tests.support.probe.app import FlakyHandler, ProbeSettings, build


class Client:
    """A client that records when it is closed, and refuses to be used after."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.closed = False

    async def call(self) -> None:
        assert not self.closed, "used after it was closed"
        self.log.append("used")

    async def aclose(self) -> None:
        self.closed = True
        self.log.append("closed")


async def test_clients_close_after_the_work_in_hand_not_when_the_stop_is_asked(
    make_settings: SettingsFactory, probe_prefix: str
) -> None:
    service: Service = build(make_settings("probe", ProbeSettings, topic_prefix=probe_prefix), FlakyHandler())
    log: list[str] = []
    client = Client(log)
    stop_seen = asyncio.Event()
    release = asyncio.Event()

    async def work_in_hand(stop: asyncio.Event) -> None:
        await stop.wait()
        stop_seen.set()
        await release.wait()  # still working after the stop was asked for, as a request in flight is
        await client.call()

    service.add_task(work_in_hand)
    not_a_client = object()  # a simulated provider: nothing to close, passed over
    service.close_on_stop(client, not_a_client)
    await service.start()
    stopping = asyncio.create_task(service.stop())
    try:
        await wait_for(stop_seen.is_set, what="the stop reaching the work in hand")
        for _ in range(50):  # every task woken by the stop gets its turn (a closer woken by it would run now)
            await asyncio.sleep(0)
        assert log == [], log
        release.set()
        await stopping
    finally:
        release.set()
        await asyncio.wait({stopping})
    assert log == ["used", "closed"]
