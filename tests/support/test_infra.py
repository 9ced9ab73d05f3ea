"""tests/support/infra.py: the choice between local scripts and containers, and the container path's pieces.

No Docker engine runs here, so the containers themselves are not started; what decides whether they work is: the
broker advertises the mapped host port, and readiness is polled on the real protocols (both checked on the real
servers of this session).
"""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy.engine import make_url

from tests.support.infra import (
    INFRA_ENV,
    Infra,
    _kafka_answers,
    _postgres_answers,
    free_port,
    infra_mode,
    kafka_container_env,
    poll_until_ready,
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


def test_readiness_is_polled_with_a_deadline() -> None:
    calls = itertools.count(1)
    poll_until_ready(lambda: next(calls) >= 3, "thing", timeout_s=30, interval_s=0.01)
    assert next(calls) == 4
    with pytest.raises(TimeoutError, match="never-ready not ready after 0s"):
        poll_until_ready(lambda: False, "never-ready", timeout_s=0, interval_s=0.01)


def test_readiness_checks_speak_kafka_and_postgres(infra: Infra) -> None:
    assert _kafka_answers(infra.kafka_bootstrap_servers)
    assert not _kafka_answers(f"127.0.0.1:{free_port()}")
    dsn = make_url(infra.database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    assert _postgres_answers(dsn)
    assert not _postgres_answers(make_url(dsn).set(port=free_port()).render_as_string(hide_password=False))


def test_testcontainers_is_a_declared_dependency() -> None:
    from importlib.metadata import version

    from testcontainers.core.container import DockerContainer  # constructing one needs a Docker engine

    assert version("testcontainers") == "4.15.0"
    assert callable(DockerContainer.with_bind_ports) and callable(DockerContainer.with_env)
