"""Kafka listener security settings reach both the aiokafka clients and FastStream's broker."""

from __future__ import annotations

import pytest
from faststream.security import BaseSecurity, SASLScram512
from pydantic import ValidationError

from services.runtime.broker import broker_security
from services.runtime.kafka import client_security
from services.runtime.settings import RuntimeSettings


def test_plaintext_is_the_default() -> None:
    settings = RuntimeSettings()
    assert client_security(settings) == {"security_protocol": "PLAINTEXT"}
    assert broker_security(settings) is None


def test_sasl_ssl_scram_configures_both_clients() -> None:
    settings = RuntimeSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="leadstream",
        kafka_sasl_password="s3cret",
    )
    kwargs = client_security(settings)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "leadstream" and kwargs["sasl_plain_password"] == "s3cret"
    assert kwargs["ssl_context"] is not None
    security = broker_security(settings)
    assert isinstance(security, SASLScram512) and security.use_ssl


def test_ssl_only_gives_a_tls_context() -> None:
    settings = RuntimeSettings(kafka_security_protocol="SSL")
    assert "ssl_context" in client_security(settings)
    security = broker_security(settings)
    assert isinstance(security, BaseSecurity) and security.use_ssl


def test_sasl_without_credentials_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="needs LEADSTREAM_KAFKA_SASL_MECHANISM"):
        RuntimeSettings(kafka_security_protocol="SASL_PLAINTEXT")
