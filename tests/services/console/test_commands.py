"""The console's write commands when a service does not answer: a refusal the form shows (503, no field
blamed), never an exception that replaces the form with an error page."""

from __future__ import annotations

import uuid

import pytest

from leadstream_cli.processes import free_port
from services.console import commands
from services.console.backends import Backends
from services.console.settings import ConsoleSettings


@pytest.fixture
async def nobody_answers() -> Backends:
    """The console's clients, every service URL a closed port of this machine (nothing listens there)."""
    closed = f"http://127.0.0.1:{free_port()}"
    settings = ConsoleSettings(
        console_projection_url=closed,
        console_outreach_url=closed,
        console_messaging_url=closed,
        console_discovery_url=closed,
        console_backend_timeout_s=2,
    )
    return Backends(settings)


async def test_a_service_that_does_not_answer_is_a_refusal_the_form_shows(nobody_answers: Backends) -> None:
    try:
        with pytest.raises(commands.Refused) as refused:
            await commands.reject_draft(nobody_answers, "token", uuid.uuid4(), "Shorter, please")
        assert refused.value.unavailable and refused.value.status == 503
        assert refused.value.refusal.field is None  # no field of the form is wrong
        assert refused.value.refusal.detail.startswith("leadstream's messaging service did not answer")
        with pytest.raises(commands.Refused) as blocked:
            await commands.block(nobody_answers, "token", "email", "jane@acme.example")
        assert blocked.value.api == "outreach" and blocked.value.unavailable
        with pytest.raises(commands.Refused) as template:
            await commands.template_of(nobody_answers, "token", {"template_body": "Hi {first_name}, my own words."})
        assert template.value.api == "messaging" and template.value.unavailable
    finally:
        await nobody_answers.aclose()
