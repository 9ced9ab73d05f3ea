"""Helpers of the discovery tests: an API client per workspace and event filters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from aiokafka import ConsumerRecord
from leadstream_schemas import Envelope

from services.runtime.auth import create_token
from services.runtime.service import Service
from tests.support.kafka import read_until
from tests.support.personal import decode_opened


async def client_for(service: Service, workspace: str) -> httpx.AsyncClient:
    """An HTTP client of the service's app authenticated as ``workspace``."""
    token = await create_token(service.engine, workspace)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {token}"},
    )


def envelopes(records: list[ConsumerRecord[Any, Any]], workspace: str, type_suffix: str = "") -> list[Envelope[Any]]:
    """Decoded events of ``workspace`` whose type ends with ``type_suffix``."""
    out = []
    for r in records:
        env = decode_opened(r.value, r.headers)
        if env.workspace_id == workspace and env.type.endswith(type_suffix):
            out.append(env)
    return out


async def read_events(
    service: Service, done: Callable[[list[ConsumerRecord[Any, Any]]], bool], timeout_s: float = 60
) -> list[ConsumerRecord[Any, Any]]:
    """Read the lead and search topics from the start until ``done``."""
    s = service.settings
    topics = [s.topic_name("leadstream.lead.v1"), s.topic_name("leadstream.search.v1")]
    return await read_until(s.kafka_bootstrap_servers, topics, done, timeout_s=timeout_s)


def settled(workspace: str, *, finished: int, discovered: int) -> Callable[[list[ConsumerRecord[Any, Any]]], bool]:
    """A ``read_until`` condition: ``finished`` searches and ``discovered`` leads of ``workspace`` were read.

    Both are needed: search and lead events travel on different topics and partitions.
    """

    def done(records: list[ConsumerRecord[Any, Any]]) -> bool:
        return (
            len(envelopes(records, workspace, "search.finished.v1")) >= finished
            and len(envelopes(records, workspace, "lead.discovered.v1")) >= discovered
        )

    return done
