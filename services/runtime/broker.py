"""The service's FastStream ``KafkaBroker``: what a service publishes with (and the dead-letter publisher).

A module of its own so that importing the aiokafka clients (:mod:`services.runtime.kafka`) does not import
FastStream: the CLI commands and the log reader need only those. The broker's security is the clients'
(:func:`services.runtime.kafka.ssl_context`), in FastStream's terms.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from .kafka import ssl_context
from .settings import RuntimeSettings


def broker_security(settings: RuntimeSettings) -> BaseSecurity | None:
    """The configured listener security (TLS and/or SASL) for FastStream's broker."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    assert settings.kafka_sasl_username is not None and settings.kafka_sasl_password is not None
    cls = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[
        settings.kafka_sasl_mechanism or "PLAIN"
    ]
    return cls(
        settings.kafka_sasl_username,
        settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=protocol == "SASL_SSL",
    )


def create_broker(settings: RuntimeSettings) -> KafkaBroker:
    """A FastStream KafkaBroker configured as a safe producer (acks=all, idempotent, compressed)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=broker_security(settings),
        client_id=f"leadstream-{settings.service_name}",
        acks="all",
        enable_idempotence=True,
        compression_type="gzip",
        linger_ms=5,
        request_timeout_ms=30_000,
        logger=None,
    )
