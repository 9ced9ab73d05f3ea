"""The video studio video talks to, behind a Protocol: submit a render; the studio calls back when done."""

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
    """Renders personalised videos and reports each result by a signed callback."""

    name: str

    async def render(self, request: RenderRequest) -> RenderAccepted: ...
