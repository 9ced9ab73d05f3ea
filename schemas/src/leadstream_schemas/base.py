"""The base of every event model and the registry of event types.

An event is an immutable, past-tense fact. Its stable type string (``leadstream.lead.discovered.v1``)
names it on the wire; the class knows which topic it belongs to and which payload field is the key.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """Base class of every leadstream event payload.

    Subclasses set ``event_type`` (the versioned CloudEvents ``type``), ``topic`` (a topic name from
    :mod:`leadstream_schemas.topics`) and ``key_field`` (the payload field whose value is the Kafka key
    and the CloudEvents ``subject``). Unknown fields are ignored so that a consumer built against an
    older minor revision can read events that gained optional fields (additive evolution).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    event_type: ClassVar[str]
    topic: ClassVar[str]
    key_field: ClassVar[str]
    personal: ClassVar[tuple[str, ...]] = ()
    """Paths of the payload's personal data (see :mod:`leadstream_schemas.personal`); not part of the JSON."""

    def key(self) -> str:
        """The partition key (also the CloudEvents subject): never personal data, always an id."""
        return str(getattr(self, self.key_field))


EVENT_TYPES: dict[str, type[Event]] = {}


def register(cls: type[Event]) -> type[Event]:
    """Class decorator: add an event class to the registry under its type string."""
    event_type = cls.event_type
    if event_type in EVENT_TYPES and EVENT_TYPES[event_type] is not cls:
        raise ValueError(f"event type {event_type!r} registered twice")
    if cls.key_field not in cls.model_fields:
        raise ValueError(f"{cls.__name__}.key_field {cls.key_field!r} is not a field")
    EVENT_TYPES[event_type] = cls
    return cls


def event_class(event_type: str) -> type[Event] | None:
    """The class registered for a type string, or None."""
    return EVENT_TYPES.get(event_type)
