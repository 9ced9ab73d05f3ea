"""The video studio video talks to, behind a Protocol: submit a render (the studio calls back when done), and
delete a rendered video (when its lead is erased)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID


@dataclass(frozen=True)
class RenderRequest:
    """A personalised render: the studio's template, the values of its segments, and where to call back."""

    video_job_id: UUID
    template_id: str
    variables: dict[str, str] = field(default_factory=dict)
    callback_url: str = ""
    title: str = ""


@dataclass(frozen=True)
class RenderAccepted:
    """The studio took the job; its id comes back in the callback."""

    provider_job_id: str
    status: str = "queued"


class VideoStudio(Protocol):
    """Renders personalised videos and reports each result by a signed callback; deletes them on request."""

    name: str

    async def render(self, request: RenderRequest) -> RenderAccepted:
        """Start a render; the studio calls back with its outcome."""
        ...

    async def delete(self, provider_job_id: str) -> None:
        """Delete a video (rendered or still rendering: its render is cancelled, no callback follows) and its
        thumbnail. Idempotent: a video the studio does not know (deleted before, never made) is deleted. Raises
        :class:`~services.runtime.providers.ProviderError` (transient: worth retrying) when the studio refuses."""
        ...
