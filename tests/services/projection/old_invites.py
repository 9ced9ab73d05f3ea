"""An upcaster defined at module level, as a project would ship one: replay workers import this module.

Importing it registers ``leadstream.lead.invite_sent.v0`` -> v1; tests remove it again afterwards.
"""

from __future__ import annotations

from typing import Any

from leadstream_schemas import InviteSent
from leadstream_schemas.upcasting import upcaster

OLD_TYPE = "leadstream.lead.invite_sent.v0"


@upcaster(OLD_TYPE, InviteSent.event_type)
def invite_sent_v0_to_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """v0 called the lead "lead" and the note "message"."""
    return {"lead_id": payload["lead"], "campaign_id": payload.get("campaign"), "note": payload["message"]}
