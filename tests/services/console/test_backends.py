"""How the console reads a backend's refusal: FastAPI's own validation shape (``{"detail": [...]}``, from a route
that answers without the services' problem handler) becomes words at each field, never a Python repr."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field, field_validator

from services.console import builder, commands
from services.console.backends import Backend, BackendRefused


class _Delivery(BaseModel):
    start_hour: int = Field(ge=0, le=23)
    end_hour: int

    @field_validator("end_hour")
    @classmethod
    def _after(cls, end: int) -> int:
        if end > 24:
            raise ValueError("end_hour must be 24 or less")
        return end


class _Campaign(BaseModel):
    name: str = Field(min_length=1)
    delivery: _Delivery


def _bare_app() -> FastAPI:
    """A FastAPI app as FastAPI makes it: its default validation answer, no problem handler."""
    app = FastAPI()

    @app.post("/v1/campaigns")
    async def create(body: _Campaign) -> dict[str, str]:
        return {"name": body.name}

    return app


@pytest.fixture
async def bare() -> Backend:
    return Backend("outreach", "http://outreach.test", 5, transport=httpx.ASGITransport(app=_bare_app()))


async def test_fastapis_default_validation_answer_reads_as_words_per_field(bare: Backend) -> None:
    try:
        with pytest.raises(BackendRefused) as refused:
            await bare.call(
                "t",
                "POST",
                "/v1/campaigns",
                _Campaign,
                json={"name": "", "delivery": {"start_hour": 30, "end_hour": 25}},
            )
    finally:
        await bare.aclose()
    r = refused.value
    assert r.status == 422
    fields = dict(r.errors)
    assert set(fields) == {"name", "delivery.start_hour", "delivery.end_hour"}, r.errors  # "body" is not a field
    assert fields["name"] == "must not be empty"
    assert fields["delivery.end_hour"] == "end_hour must be 24 or less"  # the validator's words, not "Value error, …"
    assert "less than or equal to 23" in fields["delivery.start_hour"]
    assert r.field == "name"
    for text in (r.detail, *fields.values()):
        assert "{" not in text and "[" not in text and "'loc'" not in text, text  # never a repr
    assert "delivery.start_hour: " in r.detail and "name: must not be empty" in r.detail
    # The builder shows each message at its own field, as it does for the services' problems.
    shown = commands.Refused("outreach", r).field_errors().messages
    assert shown == {
        "name": "must not be empty",
        "start_hour": fields["delivery.start_hour"],
        "end_hour": "end_hour must be 24 or less",
    }


async def test_a_detail_that_is_not_words_is_not_shown_as_a_repr() -> None:
    app = FastAPI()

    @app.get("/v1/odd")
    async def odd() -> None:
        from fastapi import HTTPException

        raise HTTPException(409, detail={"why": "no"})

    backend = Backend("outreach", "http://outreach.test", 5, transport=httpx.ASGITransport(app=app))
    try:
        with pytest.raises(BackendRefused) as refused:
            await backend.call("t", "GET", "/v1/odd", _Campaign)
    finally:
        await backend.aclose()
    assert refused.value.detail == "Conflict"  # the status in words
    assert builder.errors_of("outreach", refused.value.errors, refused.value.detail, None).messages == {
        "form": "Conflict"
    }
