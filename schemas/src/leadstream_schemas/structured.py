"""CloudEvents 1.0 in *structured* JSON mode: the body of leadstream's outbound webhooks.

On Kafka an event is in binary mode (attributes in headers, the event's JSON as the value). A webhook
carries the same event as one JSON object, the CloudEvents JSON format: the attributes as members
(``specversion``, ``id``, ``type``, ``source``, ``time``, ``subject``, ``datacontenttype`` and the
extensions ``workspaceid``, ``campaignid``, ``correlationid``, ``causationid``, ``traceparent``) and the
event's JSON under ``data``. Both forms are built from, and read back into, the same :class:`Envelope`,
so the two cannot disagree: :func:`decode_structured` maps the members back to headers and calls
:func:`leadstream_schemas.decode` (validation and upcasting included).

A receiver, after checking the Standard Webhooks signature over the raw body::

    env = decode_structured(body)   # env.data is the typed event, env.id the webhook-id
"""

from __future__ import annotations

import json
from typing import Any

from .base import Event
from .envelope import H_CONTENT_TYPE, DecodeError, Envelope, _payload_object, decode, encode, headers_dict

CONTENT_TYPE = "application/cloudevents+json"
"""The media type of a structured-mode CloudEvent."""

_CE_PREFIX = "ce_"


def _attribute(header: str) -> str:
    """The structured-mode member name of a binary-mode header (``ce_type`` -> ``type``)."""
    if header == H_CONTENT_TYPE:
        return "datacontenttype"
    return header.removeprefix(_CE_PREFIX)


def to_structured(env: Envelope[Any]) -> dict[str, Any]:
    """The envelope as a structured-mode CloudEvent (a JSON object with the event under ``data``)."""
    _, value, headers = encode(env)
    out: dict[str, Any] = {_attribute(name): raw.decode() for name, raw in headers}
    out["data"] = json.loads(value)
    return out


def encode_structured(env: Envelope[Any]) -> bytes:
    """The bytes of :func:`to_structured` (compact JSON, UTF-8): what a webhook's body is and what it signs."""
    return json.dumps(to_structured(env), separators=(",", ":"), ensure_ascii=False).encode()


_HEADER_OF = {
    "datacontenttype": H_CONTENT_TYPE,
    "workspaceid": "workspaceid",
    "campaignid": "campaignid",
    "correlationid": "correlationid",
    "causationid": "causationid",
    "traceparent": "traceparent",
}


def decode_structured(body: bytes | str) -> Envelope[Event]:
    """Decode a structured-mode CloudEvent (a webhook body) into an envelope with the typed, upcast event.

    Raises :class:`DecodeError` like :func:`leadstream_schemas.decode`: ``invalid_json`` when the body is
    not a JSON object with an object ``data``, otherwise the same codes and messages as for a Kafka record.
    """
    doc = _payload_object(body.encode() if isinstance(body, str) else body)
    data = doc.get("data")
    if not isinstance(data, dict):
        raise DecodeError("invalid_json", "member 'data' must be the event's JSON object")
    headers = headers_dict(
        {
            _HEADER_OF.get(name, _CE_PREFIX + name): str(value)
            for name, value in doc.items()
            if name != "data" and value is not None
        }
    )
    return decode(json.dumps(data).encode(), headers)
