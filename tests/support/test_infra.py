"""tests/support/infra.py: the choice between local scripts and containers, and the container path's pieces.

No Docker engine runs here, so the containers themselves are not started; what decides whether they work is: the
broker advertises the mapped host port, and readiness is polled on the real protocols (both checked on the real
servers of this session).
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from leadstream_cli.processes import free_port
from tests.support.infra import (
    INFRA_ENV,
    Infra,
    _kafka_answers,
    _postgres_answers,
    infra_mode,
    kafka_container_env,
)


def test_the_infra_mode_is_explicit_and_defaults_to_the_local_scripts() -> None:
    assert infra_mode({}) == "local"
    assert infra_mode({INFRA_ENV: "containers"}) == "containers"
    with pytest.raises(ValueError, match=r"LEADSTREAM_TEST_INFRA='docker': choose one of local, containers"):
        infra_mode({INFRA_ENV: "docker"})


def test_the_kafka_container_advertises_the_mapped_host_port() -> None:
    env = kafka_container_env("127.0.0.1", 40123)
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert advertised["HOST"] == "127.0.0.1:40123"
    assert set(advertised) <= set(listeners) <= set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    (voter,) = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert voter.split("@")[0] == env["KAFKA_NODE_ID"] and voter.endswith(listeners["CONTROLLER"])


async def test_readiness_checks_speak_kafka_and_postgres(infra: Infra) -> None:
    assert await _kafka_answers(infra.kafka_bootstrap_servers)
    assert not await _kafka_answers(f"127.0.0.1:{free_port()}")
    dsn = make_url(infra.database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    assert await _postgres_answers(dsn)
    assert not await _postgres_answers(make_url(dsn).set(port=free_port()).render_as_string(hide_password=False))
