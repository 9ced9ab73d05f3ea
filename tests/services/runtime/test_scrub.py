"""The scrubber: error texts keep their class, codes and meaning, and lose names, emails, URLs and quoted values."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
from leadstream_schemas import LeadDiscovered
from pydantic import ValidationError

from services.runtime.logging import JsonFormatter
from services.runtime.providers import ProviderError
from services.runtime.scrub import REDACTED, ScrubFilter, describe_error, format_exception, scrub_text

NAME, EMAIL = "Zebulon Quaxworth", "zebulon.quaxworth@quax.example"
PROFILE = "https://www.linkedin.com/in/zebulon-quaxworth-7f3a"


def _personal(text: str) -> list[str]:
    return [p for p in ("Zebulon", "Quaxworth", "quaxworth", EMAIL, PROFILE, "7f3a", "+44 20 7946 0958") if p in text]


@pytest.mark.parametrize(
    "text",
    [
        f"lead {NAME} has no email",
        f"{NAME} refused the invitation",
        f"could not send to {EMAIL}",
        f"GET {PROFILE}?ref=abc failed",
        f"Client error '404 Not Found' for url '{PROFILE}'",
        f'{{"error": "invalid recipient", "to": "{EMAIL}", "name": "{NAME}"}}',
        "unknown lead 'zebulon quaxworth' in the campaign",
        "call +44 20 7946 0958 for details",
        "cut in the middle of a value: 'Zebulon Quax",
    ],
)
def test_personal_data_is_redacted(text: str) -> None:
    out = scrub_text(text)
    assert not _personal(out), out
    assert REDACTED in out


def test_quoted_code_stays() -> None:
    out = scrub_text("unknown event type 'leadstream.lead.teleported.v1' in field 'lead_id', value 'Zebulon'")
    assert "'leadstream.lead.teleported.v1'" in out and "'lead_id'" in out and "Zebulon" not in out


def test_names_in_other_scripts_are_redacted() -> None:
    out = scrub_text("no email for Zoë Ångström or Иван Петров")
    assert "Zoë" not in out and "Ångström" not in out and "Иван" not in out and "Петров" not in out


@pytest.mark.parametrize(
    "text",
    [
        "Connection refused",
        "value is not a valid email address: An email address must have an @-sign.",
        "1 validation error for LeadDiscovered",
        "duplicate key value violates unique constraint outbox_event_id_key",
        "ce_id header missing; SQLSTATE 40P01 after 3 attempts on leadstream.lead.v1",
        "lead 0b2d0f5e-3c3e-4d8e-9f4e-0d7b8c1f2a3b not found",
    ],
)
def test_codes_ids_and_meaning_are_kept(text: str) -> None:
    out = scrub_text(text)
    # What scrubbing may take from these is capitalised words outside its list; the words that carry
    # the meaning (lower case, identifiers, codes, ids, numbers) stay.
    for word in ("refused", "valid", "LeadDiscovered", "outbox_event_id_key", "40P01", "0b2d0f5e-3c3e", "attempts"):
        if word in text:
            assert word in out, out


def test_a_pydantic_error_keeps_its_fields_and_loses_the_input() -> None:
    with pytest.raises(ValidationError) as info:
        LeadDiscovered.model_validate(
            {"lead_id": "not-a-uuid", "source": "search", "full_name": NAME, "email": EMAIL, "linkedin_url": PROFILE}
        )
    out = describe_error(info.value)
    assert out.startswith("ValidationError: ")
    assert "lead_id" in out and "uuid" in out.lower()
    assert not _personal(out), out


def test_describe_error_names_class_and_codes() -> None:
    class PgError(Exception):
        sqlstate = "23505"

    try:
        try:
            raise PgError(f"Key (email)=({EMAIL}) already exists.")
        except PgError as inner:
            raise RuntimeError("insert failed") from inner
    except RuntimeError as exc:
        out = describe_error(exc)
    assert out == "RuntimeError (SQLSTATE 23505): insert failed"
    provider = describe_error(ProviderError(f"400 from provider: {{'to': '{EMAIL}'}}", transient=False, status=400))
    assert provider.startswith("ProviderError (status 400): 400 from provider")
    assert EMAIL not in provider


def test_an_http_error_keeps_its_status_and_loses_the_url() -> None:
    request = httpx.Request("GET", f"{PROFILE}?email={EMAIL}")
    response = httpx.Response(404, request=request)
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        out = describe_error(exc)
    assert out.startswith("HTTPStatusError (status 404): "), out
    assert not _personal(out), out


def test_a_traceback_keeps_frames_and_scrubs_exception_lines() -> None:
    def handler() -> None:
        try:
            _ = dict[str, int]()[EMAIL]
        except KeyError as exc:
            raise ValueError(f"lead {NAME} failed") from exc

    try:
        handler()
    except ValueError as exc:
        text = format_exception(exc)
    assert "Traceback (most recent call last):" in text
    assert "in handler" in text and "test_scrub.py" in text
    assert "KeyError: " in text and "ValueError: lead " in text
    assert "direct cause" in text
    assert not _personal(text), text


def _log_line(record_call: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubFilter())
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger(f"scrub-test-{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    assert callable(record_call)
    record_call(logger)
    return stream.getvalue()


def test_log_records_are_scrubbed_args_extras_and_exceptions() -> None:
    def emit(logger: logging.Logger) -> None:
        logger.info("sending to %s", EMAIL, extra={"lead_id": "0b2d0f5e", "error": f"ProviderError('{NAME}')"})
        try:
            raise RuntimeError(f"no profile at {PROFILE} for {NAME}")
        except RuntimeError:
            logger.exception("step failed", extra={"attempt": 2})

    out = _log_line(emit)
    assert not _personal(out), out
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["msg"] == f"sending to {REDACTED}" and first["lead_id"] == "0b2d0f5e"
    assert second["attempt"] == 2 and "RuntimeError: no profile at" in second["exc"]
    assert "Traceback" in second["exc"]
