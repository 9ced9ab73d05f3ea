"""An event type registered outside the contract package, as a project extending it would ship one.

Importing it registers ``leadstream.lead.note_added.v1``; tests remove it again afterwards.
"""

from __future__ import annotations

from typing import ClassVar

from leadstream_schemas import LeadEvent
from leadstream_schemas.base import register

NOTE_TYPE = "leadstream.lead.note_added.v1"


@register
class NoteAdded(LeadEvent):
    """A salesperson wrote a note on a lead (a lead event the projection knows only generically)."""

    event_type: ClassVar[str] = NOTE_TYPE

    text: str
