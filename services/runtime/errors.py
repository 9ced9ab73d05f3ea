"""HTTP errors as RFC 9457 problem details: a stable ``code``, a message that says what is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An HTTP error with a stable code; raise it from routes and domain adapters. ``extra`` goes into the
    body, ``headers`` (e.g. ``Retry-After``) onto the response.

    A problem that names a ``field`` also lists it in ``errors`` (``[{"field", "message"}]``, the shape of every
    validation error) when it has no list of its own: clients read one place for the fields at fault."""

    def __init__(
        self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        field = extra.get("field")
        if isinstance(field, str) and "errors" not in extra:
            message = detail.removeprefix(f"{field}: ") or detail
            extra["errors"] = [{"field": field, "message": message}]
        self.extra = extra


class ProblemDetails(BaseModel):
    """An error (RFC 9457): ``code`` is stable, ``detail`` says what is wrong; some problems add fields
    (``errors`` for invalid input, ``retry_after_s`` for rate limits)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    code: str
    detail: str


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: the problem statuses it answers besides the ones every route may."""
    return {status: _problem_response(status) for status in statuses}


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "A problem",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    }


def problem_response(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem-details JSON response."""
    body = {
        "type": f"https://leadstream.dev/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """A validation error's location as the dotted field path problems name (``criteria.lookback_days``): the
    request part it was found in (body, query, path, header) is left out."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:] or parts
    return ".".join(parts)


def document_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """Declare in an OpenAPI document the problems every operation may answer, as they are sent.

    Each operation's 422 is a :class:`ProblemDetails` (``application/problem+json``, with ``errors``), not
    FastAPI's default validation schema; operations with a bearer token add 401, 403 and 429, those with
    path parameters 404; and a ``default`` response covers any other status (413 from the body caps, 503 when a
    dependency is down) with the same schema, so a client (or Schemathesis) can check every error it gets.
    """
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["ProblemDetails"] = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    for path, ops in doc.get("paths", {}).items():
        for op in ops.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses: dict[str, Any] = op["responses"]
            statuses = {"422"} if "422" in responses or op.get("parameters") or op.get("requestBody") else set()
            if op.get("security"):
                statuses |= {"401", "403", "429"}
            if "{" in path:
                statuses.add("404")
            for status in statuses:
                described = responses.get(status, {}).get("description")
                responses[status] = {
                    **_problem_response(int(status)),
                    **({"description": described} if described else {}),
                }
            responses.setdefault("default", {**_problem_response(500), "description": "A problem (RFC 9457)"})
            for status, response in responses.items():
                if status != "default" and status.startswith(("4", "5")):
                    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in schemas and unused not in str(doc.get("paths")):
            del schemas[unused]
    return doc


def validation_message(error: Mapping[str, Any]) -> str:
    """A validation error's message in the validator's own words: pydantic puts the exception's kind before a
    validator's message ("Value error, end_hour (9) must be after start_hour (18)"), which tells a user nothing
    about the field; the console shows these messages as they come. A list or text below its minimum length says
    so in plain words."""
    kind, ctx = error.get("type"), error.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        cause = ctx.get("error")
        if isinstance(cause, str | Exception) and str(cause):
            return str(cause)
        # The error read back from JSON (FastAPI's default answer turns the exception into {}): the message
        # without pydantic's prefix.
        said = str(error["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            if said.startswith(prefix):
                return said.removeprefix(prefix)
    if kind == "too_short" and isinstance(ctx.get("min_length"), int):
        # pydantic's "List should have at least 1 item after validation, not 0": the bound, in plain words.
        n = ctx["min_length"]
        return f"at least {n} are needed" if n != 1 else "at least one is needed"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    return str(error["msg"])


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` a problem-details body, and declare them in its OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        response = problem_response(exc.status, exc.code, exc.detail, **exc.extra)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": field_path(e["loc"]), "message": validation_message(e)} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(422, "invalid_request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        response = problem_response(exc.status_code, code, str(exc.detail))
        if exc.headers:  # a 405's Allow, a 401's WWW-Authenticate: part of the answer (RFC 9110)
            response.headers.update(exc.headers)
        return response
