"""``header_of`` reads one header as ``headers_dict`` would, and ``ignorable`` built on it decides as it did when it
decoded every header: property tests over Kafka's lists of pairs (repeated names, None values, bytes that are not
UTF-8) and mappings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from leadstream_schemas import headers_dict
from leadstream_schemas.envelope import H_TIME, H_TYPE, H_WORKSPACE

from services.runtime.consumer import RecordMeta, ignorable, meta_of, record_meta, skippable_type
from services.runtime.headers import header_of, header_text, headers_of

NAMES = st.sampled_from([H_TYPE, H_WORKSPACE, "ce_id", "x"])
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


@given(HEADERS, st.lists(NAMES, max_size=3))
def test_headers_of_reads_several_headers_as_headers_dict_does(headers: Any, names: list[str]) -> None:
    decoded = headers_dict(headers)
    assert headers_of(headers, *names) == tuple(decoded.get(n) for n in names)


TIMES = st.sampled_from([b"2026-12-05T10:00:00+00:00", b"2026-12-05T10:00:00", b"yesterday", b""])


def _meta_as_before(headers: Any) -> RecordMeta | None:
    """``record_meta`` as it was, every header decoded (the values' meaning is ``meta_of``'s in both)."""
    h = headers_dict(headers)
    return meta_of(h.get(H_TYPE), h.get(H_WORKSPACE), h.get(H_TIME))


@given(PAIRS, st.lists(st.tuples(st.sampled_from([H_TIME, H_WORKSPACE]), st.one_of(TIMES, VALUES)), max_size=4))
def test_record_meta_reads_as_with_every_header_decoded(pairs: list[Any], more: list[Any]) -> None:
    headers = [*pairs, *more]
    assert record_meta(headers) == _meta_as_before(headers)


def test_record_meta_of_an_event_s_headers() -> None:
    headers = [(H_TYPE, TYPES[1]), (H_WORKSPACE, b"ws-1"), (H_TIME, b"2026-12-05T10:00:00"), ("x", None)]
    expected = RecordMeta("leadstream.lead.replied.v1", "ws-1", datetime(2026, 12, 5, 10, tzinfo=UTC))
    assert record_meta(headers) == _meta_as_before(headers) == expected


@given(HEADERS, st.sets(st.sampled_from(["leadstream.lead.replied.v1", "leadstream.lead.discovered.v1"])))
def test_ignorable_decides_as_with_every_header_decoded(headers: Any, handled: set[str]) -> None:
    event_type = headers_dict(headers).get(H_TYPE)
    assert ignorable(headers, handled) == (skippable_type(event_type) and event_type not in handled)


def test_header_text_keeps_values_decoded_and_replaces_what_is_not_utf8() -> None:
    assert header_text(b"ws-1") == "ws-1" and header_text(b"ws-1") is header_text(b"ws-1")
    assert header_text(b"\xff") == "\ufffd"
    assert header_text(None) is None and header_text(7) == "7"
