"""HTTP problems outreach's routes and commands answer with (RFC 9457 bodies via the runtime)."""

from __future__ import annotations

import json
from typing import Any

from services.runtime.errors import Problem


def json_object(body: bytes) -> dict[str, Any]:
    """A webhook body as a JSON object (400 when it is not one)."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise Problem(400, "invalid_json", "the webhook body is not JSON") from None
    if not isinstance(data, dict):
        raise Problem(400, "invalid_json", "the webhook body must be a JSON object")
    return data


def invalid(field: str, message: str) -> Problem:
    """A 422 naming the field, shaped like FastAPI's validation errors."""
    return Problem(422, "invalid_request", f"{field}: {message}", errors=[{"field": field, "message": message}])


def not_found(what: str, ident: object) -> Problem:
    """A 404 problem for an object that does not exist in the caller's workspace."""
    return Problem(404, "not_found", f"{what} {ident} not found")
