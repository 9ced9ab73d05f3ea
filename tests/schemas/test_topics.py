"""The topic registry: every event belongs to a known topic, keyed by that topic's key, with a DLQ twin."""

from __future__ import annotations

import re

import pytest
from leadstream_schemas import ACCOUNT, CAMPAIGN, EVENT_TYPES, LEAD, SEARCH, TOPICS, topic

TYPE_PATTERN = re.compile(r"^leadstream\.(?P<domain>[a-z]+)\.(?P<name>[a-z][a-z_]*)\.v(?P<version>[1-9][0-9]*)$")


def test_the_four_event_topics() -> None:
    assert sorted(TOPICS) == [
        "leadstream.account.v1",
        "leadstream.campaign.v1",
        "leadstream.lead.v1",
        "leadstream.search.v1",
    ]
    assert {t.name: t.key_field for t in (LEAD, CAMPAIGN, ACCOUNT, SEARCH)} == {
        "leadstream.lead.v1": "lead_id",
        "leadstream.campaign.v1": "campaign_id",
        "leadstream.account.v1": "account_id",
        "leadstream.search.v1": "search_id",
    }


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_is_on_a_registered_topic_keyed_by_its_key(event_type: str) -> None:
    cls = EVENT_TYPES[event_type]
    assert cls.topic in TOPICS
    assert cls.key_field == TOPICS[cls.topic].key_field
    assert cls.key_field in cls.model_fields
    assert cls.model_fields[cls.key_field].is_required()


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_type_strings_are_versioned_and_match_their_topic(event_type: str) -> None:
    match = TYPE_PATTERN.match(event_type)
    assert match, f"{event_type!r} is not leadstream.<domain>.<fact>.v<N>"
    assert EVENT_TYPES[event_type].topic == f"leadstream.{match['domain']}.v1"


def test_every_topic_carries_events() -> None:
    assert {cls.topic for cls in EVENT_TYPES.values()} == set(TOPICS)


def test_dlq_names() -> None:
    for t in TOPICS.values():
        assert t.dlq == f"{t.name}.dlq"
        assert topic(t.dlq) is t
        assert topic(t.name) is t
    assert LEAD.dlq == "leadstream.lead.v1.dlq"


def test_unknown_topic_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"leadstream\.lead\.v1"):
        topic("leadstream.leads.v1")


def test_event_topics_keep_data_forever() -> None:
    assert all(t.retention_ms == -1 and t.partitions > 0 for t in TOPICS.values())


def test_the_lifecycle_named_in_the_design_is_registered() -> None:
    expected = {
        "lead": "discovered profile_enriched email_enriched email_not_found message_generated message_approved "
        "message_edited message_rejected enrolled video_requested video_generated video_failed comment_drafted "
        "comment_posted post_liked invite_sent invite_accepted message_sent email_sent action_skipped "
        "action_failed replied completed unsubscribed",
        "campaign": "created launched paused resumed finished deleted needs_review",
        "account": "connected status_changed lease_acquired lease_released",
        "search": "started page_completed finished",
    }
    wanted = {f"leadstream.{domain}.{name}.v1" for domain, names in expected.items() for name in names.split()}
    assert sorted(wanted - set(EVENT_TYPES)) == []
