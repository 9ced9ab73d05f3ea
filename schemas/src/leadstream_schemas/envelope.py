"""The CloudEvents 1.0 envelope in Kafka binary mode, and its encoder and decoder.

On Kafka the envelope lives in record headers (``ce_*`` plus leadstream's ids) and the record
value is the event's JSON. The record key is the event's key field (an id, never personal data).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import ValidationError

from .base import Event, event_class
from .bounds import find_unstorable, may_hold_unstorable
from .upcasting import UPCASTERS, upcast

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
NAMESPACE = uuid.UUID("6f1d4a3e-8c2b-5e7a-9b0d-2f4c6e8a1b3d")

H_SPECVERSION = "ce_specversion"
H_ID = "ce_id"
H_TYPE = "ce_type"
H_SOURCE = "ce_source"
H_TIME = "ce_time"
H_SUBJECT = "ce_subject"
H_CONTENT_TYPE = "content-type"
H_WORKSPACE = "workspaceid"
H_CAMPAIGN = "campaignid"
H_CORRELATION = "correlationid"
H_CAUSATION = "causationid"
H_TRACEPARENT = "traceparent"
# FastStream's own correlation header: FastStream consumers read it as ``message.correlation_id``, and its
# publisher fills it with a random uuid when not given one. leadstream writes the event's correlation id
# (``ce_id`` for a root event) so the record is deterministic and agrees with ``correlationid``.
H_FASTSTREAM_CORRELATION = "correlation_id"

REQUIRED_HEADERS = (H_SPECVERSION, H_ID, H_TYPE, H_SOURCE, H_TIME, H_WORKSPACE)

# ``ce_source`` of every event a leadstream service emits: ``leadstream/<service>`` (a relative URI reference).
# The form records carry since the first release; the log keeps them forever, so it is the contract.
SOURCE_PREFIX = "leadstream/"
SOURCE_PATTERN = r"^leadstream/[a-z][a-z0-9_-]*$"

Headers = list[tuple[str, bytes]]
E = TypeVar("E", bound=Event)
F = TypeVar("F", bound=Event)


class DecodeError(ValueError):
    """A record that cannot be read as an event. ``code`` is stable; ``str()`` says exactly what."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def derive_id(causation_id: UUID, event_type: str, discriminator: str = "") -> UUID:
    """Deterministic id of an event that answers another: a retried handler emits the same id."""
    return uuid.uuid5(NAMESPACE, f"{causation_id}|{event_type}|{discriminator}")


def service_source(service: str) -> str:
    """The ``ce_source`` of events emitted by ``service`` (e.g. ``leadstream/outreach``)."""
    source = SOURCE_PREFIX + service
    if re.fullmatch(SOURCE_PATTERN, source) is None:
        raise ValueError(f"service name {service!r} does not make a ce_source matching {SOURCE_PATTERN}")
    return source


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Envelope(Generic[E]):
    """One event with its CloudEvents attributes and leadstream correlation ids."""

    data: E
    workspace_id: str
    source: str
    id: UUID = field(default_factory=uuid.uuid4)
    time: datetime = field(default_factory=_now)
    campaign_id: str | None = None
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    traceparent: str | None = None

    @property
    def type(self) -> str:
        """The CloudEvents type string of the payload."""
        return self.data.event_type

    @property
    def subject(self) -> str:
        """The CloudEvents subject: the payload's key (an id)."""
        return self.data.key()

    @property
    def topic(self) -> str:
        """The topic this event belongs on."""
        return self.data.topic

    @classmethod
    def new(
        cls,
        data: E,
        *,
        workspace_id: str,
        source: str,
        time: datetime | None = None,
        id: UUID | None = None,
        traceparent: str | None = None,
    ) -> Envelope[E]:
        """A root event (a command from outside, e.g. an HTTP request): it starts a correlation."""
        event_id = id or uuid.uuid4()
        return cls(
            data=data,
            workspace_id=workspace_id,
            source=source,
            id=event_id,
            time=time or _now(),
            campaign_id=_text(event_campaign(data)),
            correlation_id=event_id,
            causation_id=None,
            traceparent=traceparent,
        )

    def caused(
        self,
        data: F,
        *,
        source: str,
        time: datetime | None = None,
        discriminator: str = "",
    ) -> Envelope[F]:
        """An event emitted in answer to this one, with a deterministic id (see :func:`derive_id`)."""
        campaign = _text(event_campaign(data, self.campaign_id))  # the payload's, else inherited from the cause
        return Envelope(
            data=data,
            workspace_id=self.workspace_id,
            source=source,
            id=derive_id(self.id, data.event_type, discriminator),
            time=time or _now(),
            campaign_id=campaign,
            correlation_id=self.correlation_id or self.id,
            causation_id=self.id,
            traceparent=self.traceparent,
        )

    def with_time(self, time: datetime) -> Envelope[E]:
        """A copy with another event time (used with an injected clock)."""
        return replace(self, time=time)


def event_campaign(data: Any, campaign_header: str | None = None) -> UUID | str | None:
    """The campaign an event belongs to: its payload's ``campaign_id`` when its type has one and it is set,
    else the envelope's ``campaignid`` header, else None.

    ``data`` is the payload (an :class:`Event`, or any object with its attributes) and ``campaign_header`` the
    envelope's ``campaign_id`` (``env.campaign_id`` of a decoded record). For a decoded envelope:
    ``event_campaign(env.data, env.campaign_id)``.

    The payload's value is returned as it is (a :class:`~uuid.UUID`: every contract field ``campaign_id`` is
    one), the header's as it was read: text, not checked (``decode`` does not validate the header, and an empty
    one stays ``""``). Callers that want text use ``str()``, callers that want a UUID parse the header's.

    The envelope writes the header from the payload (:meth:`Envelope.new`), or, for a payload without a campaign,
    inherits the cause's (:meth:`Envelope.caused`). So on every record leadstream writes the two agree, or only
    the header is there; on a record written otherwise that carries both and they differ, the payload wins.
    """
    value: UUID | str | None = getattr(data, "campaign_id", None)
    return value if value is not None else campaign_header


def _text(campaign: UUID | str | None) -> str | None:
    """A campaign as the header's text (None stays None)."""
    return None if campaign is None else str(campaign)


def encode(env: Envelope[Any]) -> tuple[bytes, bytes, Headers]:
    """Encode to a Kafka record: (key, value, headers)."""
    headers: Headers = [
        (H_SPECVERSION, SPECVERSION.encode()),
        (H_ID, str(env.id).encode()),
        (H_TYPE, env.type.encode()),
        (H_SOURCE, env.source.encode()),
        (H_TIME, env.time.astimezone(UTC).isoformat().encode()),
        (H_SUBJECT, env.subject.encode()),
        (H_CONTENT_TYPE, CONTENT_TYPE.encode()),
        (H_WORKSPACE, env.workspace_id.encode()),
    ]
    optional = (
        (H_CAMPAIGN, env.campaign_id),
        (H_CORRELATION, env.correlation_id),
        (H_CAUSATION, env.causation_id),
        (H_TRACEPARENT, env.traceparent),
    )
    headers.extend((name, str(value).encode()) for name, value in optional if value is not None)
    headers.append((H_FASTSTREAM_CORRELATION, str(env.correlation_id or env.id).encode()))
    value = env.data.model_dump_json().encode()
    return env.subject.encode(), value, headers


def headers_dict(headers: Any) -> dict[str, str]:
    """Kafka headers as a dict of str; undecodable values are replaced.

    Accepts a sequence of ``(name, bytes)`` pairs (aiokafka, confluent-kafka) or a mapping of name to
    bytes or str (FastStream, tests). When a name repeats, the last value wins.
    """
    out: dict[str, str] = {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, raw in pairs:
        if raw is None:
            continue
        out[name] = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
    return out


def _uuid_header(h: dict[str, str], name: str) -> UUID | None:
    value = h.get(name)
    if value is None:
        return None
    try:
        return UUID(value)
    except ValueError:
        raise DecodeError("invalid_header", f"header {name!r} is not a UUID: {value!r}") from None


def _format_validation(event_type: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        parts.append(f"{path}: {e['msg']}")
    return f"invalid {event_type} payload: " + "; ".join(parts)


def _payload_object(value: bytes) -> dict[str, Any]:
    """The record value as a JSON object, or the decode error that says why it is not one."""
    try:
        payload = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError("invalid_json", f"record value is not valid JSON: {exc}") from None
    except RecursionError:
        raise DecodeError("invalid_json", "record value is nested too deeply to be an event") from None
    if not isinstance(payload, dict):
        raise DecodeError("invalid_json", f"record value must be a JSON object, got {type(payload).__name__}")
    return payload


def _refuse_unstorable(event_type: str, payload: Any) -> None:
    """A DecodeError naming the first field that holds a NUL or a lone surrogate (Postgres cannot store them)."""
    found = find_unstorable(payload)
    if found is not None:
        where, reason = found
        path = ".".join(str(p) for p in where) or "<root>"
        raise DecodeError("invalid_field", f"invalid {event_type} payload: {path}: {reason}")


def _decode_upcast(raw_type: str, value: bytes) -> Event:
    """Decode an old event version: parse, upcast to the current type, validate."""
    payload = _payload_object(value)
    _refuse_unstorable(raw_type, payload)
    try:
        event_type, payload = upcast(raw_type, payload)
    except Exception as exc:  # an upcaster bug must not stall a consumer: it is a decode error
        raise DecodeError("upcast_failed", f"upcasting {raw_type!r} failed: {exc}") from None
    cls = event_class(event_type)
    if cls is None:
        raise DecodeError("unknown_type", f"unknown event type {event_type!r}")
    try:
        # Validated as JSON, like any record: the writer bounds are not checked when reading.
        return cls.model_validate_json(json.dumps(payload))
    except ValidationError as exc:
        raise DecodeError("invalid_field", _format_validation(event_type, exc)) from None


def decode(value: bytes | None, headers: Any) -> Envelope[Event]:
    """Decode a Kafka record (value + headers) into an envelope; upcasts old versions.

    Raises :class:`DecodeError` whose message names the missing header, the unknown type, or the
    invalid field with its path; a field holding a NUL or a lone surrogate (which Postgres cannot store) is
    an invalid field. Writer bounds (``maxLength``, ...) are not checked: older records may exceed them.
    """
    h = headers_dict(headers)
    missing = [name for name in REQUIRED_HEADERS if name not in h]
    if missing:
        raise DecodeError("missing_header", f"missing CloudEvents header(s): {', '.join(missing)}")
    if h[H_SPECVERSION] != SPECVERSION:
        raise DecodeError("unsupported_specversion", f"ce_specversion {h[H_SPECVERSION]!r} is not {SPECVERSION}")
    if value is None:
        raise DecodeError("invalid_json", "record value is empty (tombstone) where an event was expected")
    raw_type = h[H_TYPE]
    if raw_type in UPCASTERS:
        data = _decode_upcast(raw_type, value)
    else:
        cls = event_class(raw_type)
        if cls is None:
            _payload_object(value)  # a broken value is reported as such before the unknown type
            raise DecodeError("unknown_type", f"unknown event type {raw_type!r}")
        try:
            # The common path: pydantic parses and validates the JSON in one pass (no dict in between).
            data = cls.model_validate_json(value)
        except ValidationError as exc:
            _refuse_unstorable(raw_type, _payload_object(value))  # a lone surrogate is invalid JSON to pydantic
            raise DecodeError("invalid_field", _format_validation(raw_type, exc)) from None
        if may_hold_unstorable(value):  # rare: only then parse again to find the field
            _refuse_unstorable(raw_type, _payload_object(value))
    try:
        time = datetime.fromisoformat(h[H_TIME])
    except ValueError:
        raise DecodeError("invalid_header", f"header 'ce_time' is not an RFC 3339 time: {h[H_TIME]!r}") from None
    if time.tzinfo is None:  # RFC 3339 requires an offset; read a bare time as UTC rather than local time
        time = time.replace(tzinfo=UTC)
    event_id = _uuid_header(h, H_ID)
    assert event_id is not None
    return Envelope(
        data=data,
        workspace_id=h[H_WORKSPACE],
        source=h[H_SOURCE],
        id=event_id,
        time=time,
        campaign_id=h.get(H_CAMPAIGN),
        correlation_id=_uuid_header(h, H_CORRELATION),
        causation_id=_uuid_header(h, H_CAUSATION),
        traceparent=h.get(H_TRACEPARENT),
    )
