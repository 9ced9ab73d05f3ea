"""Webhooks: signed outbound webhooks (Standard Webhooks) for systems that cannot read Kafka."""
