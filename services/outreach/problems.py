"""HTTP problems outreach's routes and commands answer with (RFC 9457 bodies via the runtime)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from services.runtime.errors import Problem

M = TypeVar("M", bound=BaseModel)


def json_object(body: bytes) -> dict[str, Any]:
    """A webhook body as a JSON object (400 when it is not one)."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise Problem(400, "invalid_json", "the webhook body is not JSON") from None
    if not isinstance(data, dict):
        raise Problem(400, "invalid_json", "the webhook body must be a JSON object")
    return data


def webhook_body(body: bytes, model: type[M]) -> M:
    """A webhook body read as ``model``: a 400 when it is not a JSON object, a 422 naming each field of the wrong
    type or length (a list where a URL belongs, say), as a request model's would, never a 500."""
    data = json_object(body)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def invalid(field: str, message: str) -> Problem:
    """A 422 naming the field, shaped like FastAPI's validation errors."""
    return Problem(422, "invalid_request", f"{field}: {message}", errors=[{"field": field, "message": message}])


def not_found(what: str, ident: object) -> Problem:
    """A 404 problem for an object that does not exist in the caller's workspace."""
    return Problem(404, "not_found", f"{what} {ident} not found")
