"""``header_of`` reads one header as ``headers_dict`` would, and ``ignorable`` built on it decides as it did when it
decoded every header: property tests over Kafka's lists of pairs (repeated names, None values, bytes that are not
UTF-8) and mappings."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from leadstream_schemas import headers_dict
from leadstream_schemas.envelope import H_TYPE

from services.runtime.consumer import ignorable, skippable_type
from services.runtime.headers import header_of, header_text

NAMES = st.sampled_from([H_TYPE, "workspace_id", "ce_id", "x"])
TYPES = [b"leadstream.lead.discovered.v1", b"leadstream.lead.replied.v1", b"leadstream.lead.erased.v1", b"no.such.v1"]
VALUES = st.one_of(
    st.sampled_from(TYPES),
    st.binary(max_size=12),  # not UTF-8, too
    st.none(),
    st.text(max_size=12),
    st.builds(bytearray, st.sampled_from(TYPES)),
)
PAIRS = st.lists(st.tuples(NAMES, VALUES), max_size=8)
HEADERS = st.one_of(PAIRS, PAIRS.map(dict))


@given(HEADERS, NAMES)
def test_header_of_reads_a_header_as_headers_dict_does(headers: Any, name: str) -> None:
    assert header_of(headers, name) == headers_dict(headers).get(name)


@given(HEADERS, st.sets(st.sampled_from(["leadstream.lead.replied.v1", "leadstream.lead.discovered.v1"])))
def test_ignorable_decides_as_with_every_header_decoded(headers: Any, handled: set[str]) -> None:
    event_type = headers_dict(headers).get(H_TYPE)
    assert ignorable(headers, handled) == (skippable_type(event_type) and event_type not in handled)


def test_header_text_keeps_values_decoded_and_replaces_what_is_not_utf8() -> None:
    assert header_text(b"ws-1") == "ws-1" and header_text(b"ws-1") is header_text(b"ws-1")
    assert header_text(b"\xff") == "\ufffd"
    assert header_text(None) is None and header_text(7) == "7"
