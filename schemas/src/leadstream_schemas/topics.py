"""The topic registry: every event topic, its key, partitions and retention, and its dead-letter twin."""

from __future__ import annotations

from dataclasses import dataclass

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topic:
    """One Kafka topic of the contract.

    ``retention_ms`` of -1 keeps data forever so any consumer can replay from offset 0.
    """

    name: str
    key_field: str
    description: str
    partitions: int = 6
    retention_ms: int = -1

    @property
    def dlq(self) -> str:
        """Name of this topic's dead-letter topic."""
        return self.name + DLQ_SUFFIX


LEAD = Topic("leadstream.lead.v1", "lead_id", "Every lead lifecycle event, ordered per lead.")
CAMPAIGN = Topic("leadstream.campaign.v1", "campaign_id", "Campaign lifecycle.")
ACCOUNT = Topic("leadstream.account.v1", "account_id", "Connected-account lifecycle and health.")
SEARCH = Topic("leadstream.search.v1", "search_id", "Discovery search progress.")

TOPICS: dict[str, Topic] = {t.name: t for t in (LEAD, CAMPAIGN, ACCOUNT, SEARCH)}


def topic(name: str) -> Topic:
    """Look a topic up by name (a DLQ name resolves to its source topic)."""
    base = name.removesuffix(DLQ_SUFFIX)
    try:
        return TOPICS[base]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {sorted(TOPICS)}") from None
