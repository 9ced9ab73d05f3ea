"""Every route of every service, walked from its OpenAPI document: each declares its scope (or why it needs no
token), every list is paginated (``limit`` at most 200 and ``after``), every error is a declared problem, and no
route hides from the document. A new route that skips any of this fails here.

How a new route passes: take the workspace as ``ws: ReadWorkspace`` / ``WriteWorkspace`` / ``AdminWorkspace``
(``services.runtime.auth``), or ``openapi_extra=public("what authenticates it")``; a list takes
``limit: Limit = 50, after: After = None`` and answers ``Page[...]`` (``services.runtime.pagination``), or says
``openapi_extra=bounded("why its length is fixed")``.

The one kind of route left out of the documents is a browser's: the console's HTML pages, forms, live stream and
static files (a session cookie and CSRF tokens, not bearer tokens). Each says so, and what authenticates it, with
``openapi_extra=browser(reason)``; a console page depends on the session (``signed_in``) unless it is declared a
sign-in or static route, and every form POST on the CSRF check (``csrf_form``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from leadstream_cli.processes import SERVICES
from services.console import pages
from services.runtime.auth import BROWSER_EXTENSION, PUBLIC_EXTENSION, SCOPES
from services.runtime.pagination import BOUNDED_EXTENSION, MAX_PAGE
from services.runtime.service import Service

METHODS = {"get", "post", "put", "patch", "delete"}
FRAMEWORK_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _service(name: str) -> Service:
    service: Service = importlib.import_module(f"services.{name}.app").build()
    return service


@pytest.fixture(scope="module")
def documents() -> dict[str, tuple[Service, dict[str, Any]]]:
    out = {}
    for name in SERVICES:
        service = _service(name)
        out[name] = (service, service.app.openapi())
    return out


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method in METHODS:
                yield path, method, op


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _is_list(doc: dict[str, Any], op: dict[str, Any]) -> bool:
    ok = op["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("schema")
    if not ok:
        return False
    schema = _resolve(doc, ok)
    if schema.get("type") == "array":
        return True
    items = schema.get("properties", {}).get("items")
    return bool(items) and _resolve(doc, items).get("type") == "array"


def test_every_service_is_walked(documents: dict[str, tuple[Service, dict[str, Any]]]) -> None:
    assert set(documents) == set(SERVICES) and len(SERVICES) >= 7
    for name, (_, doc) in documents.items():
        assert sum(1 for _ in _operations(doc)) >= 3, name


def test_every_route_declares_its_scope_or_why_it_is_public(
    documents: dict[str, tuple[Service, dict[str, Any]]],
) -> None:
    undeclared: list[str] = []
    for name, (_, doc) in documents.items():
        for path, method, op in _operations(doc):
            where = f"{name} {method.upper()} {path}"
            security = op.get("security")
            public = op.get(PUBLIC_EXTENSION)
            if security:
                assert not public, f"{where}: both a scope and public"
                (requirement,) = security
                (scopes,) = requirement.values()
                # A route may list a lower level too (the plan dependency reads with 'read'): its level is the
                # highest one listed, which a token must hold (levels include the ones below them).
                if not scopes or any(s not in SCOPES for s in scopes):
                    undeclared.append(f"{where}: scopes {scopes}")
            elif not (isinstance(public, str) and public.strip()):
                undeclared.append(f"{where}: no scope and no reason to be public")
    assert not undeclared, "\n".join(undeclared)


def test_what_needs_admin_needs_admin(documents: dict[str, tuple[Service, dict[str, Any]]]) -> None:
    for name, (_, doc) in documents.items():
        ops = {(method, path): op for path, method, op in _operations(doc)}
        for (method, path), op in ops.items():
            if path.startswith("/v1/tokens"):
                assert op["security"] == [{"HTTPBearer": ["admin"]}], (name, method, path)
        if name == "outreach":
            assert _level(ops[("delete", "/v1/accounts/{account_id}")]) == "admin"
            assert _level(ops[("get", "/v1/accounts")]) == "read"
            assert _level(ops[("post", "/v1/campaigns")]) == "write"
            assert _level(ops[("post", "/v1/plan/upgrade")]) == "admin"


def _level(op: dict[str, Any]) -> str:
    """The scope a route needs: the highest level its security requirement lists."""
    ((scopes,),) = (r.values() for r in op["security"])
    return max(scopes, key=SCOPES.index)


def _served(service: Service) -> Iterator[tuple[str, str, APIRoute]]:
    """(method, path, route) of every route the service's app serves (mounted static files aside)."""
    for ctx in iter_route_contexts(service.app.routes):
        if ctx.path_format in FRAMEWORK_PATHS or not isinstance(ctx.route, APIRoute):
            continue
        for method in ctx.methods or ():
            if method.lower() in METHODS:
                yield method.lower(), str(ctx.path_format), ctx.route


def _depends_on(dependant: Dependant) -> set[Any]:
    calls: set[Any] = set()
    for sub in dependant.dependencies:
        calls |= {sub.call, *_depends_on(sub)}
    return calls


def test_no_route_hides_from_the_document(documents: dict[str, tuple[Service, dict[str, Any]]]) -> None:
    browser_routes = 0
    for name, (service, doc) in documents.items():
        documented = {(m, p) for p, m, _ in _operations(doc)}
        served = {(method, path) for method, path, _ in _served(service)}
        # A route the document leaves out is a browser's and says what authenticates it instead (see the module).
        left_out = [(m, p, r) for m, p, r in _served(service) if (m, p) not in documented]
        undeclared = [
            f"{name} {m.upper()} {p}"
            for m, p, r in left_out
            if not str((r.openapi_extra or {}).get(BROWSER_EXTENSION, "")).strip()
        ]
        assert not undeclared, "left out of the OpenAPI document without a browser() reason:\n" + "\n".join(undeclared)
        assert documented <= served, (name, documented - served)
        for m, p, _ in left_out:
            assert name == "console" and not p.startswith(("/v1/", "/healthz", "/readyz")), (
                f"{name} {m.upper()} {p}: only the console serves browser routes, and never under /v1 or the probes"
            )
            browser_routes += 1
        # /metrics is on the internal listener only.
        assert ("get", "/metrics") not in served
    assert browser_routes >= 10  # the console's pages were walked (a broken walk would pass vacuously)


def test_every_browser_route_is_held_to_its_declaration(documents: dict[str, tuple[Service, dict[str, Any]]]) -> None:
    service, doc = documents["console"]
    documented = {(m, p) for p, m, _ in _operations(doc)}
    kinds = {"page": 0, "sign-in": 0, "static": 0, "form": 0}
    for method, path, route in _served(service):
        if (method, path) in documented:
            continue
        where = f"console {method.upper()} {path}"
        extra = route.openapi_extra or {}
        calls = _depends_on(route.dependant)
        if method != "get":
            # A form POST of a page someone else could make a signed-in browser send: the CSRF check comes first.
            assert pages.csrf_form in calls, f"{where}: a browser form without the CSRF check (pages.CsrfForm)"
            kinds["form"] += 1
        if extra == pages.PAGE:
            assert pages.signed_in in calls, f"{where}: declared a page, but does not depend on the session (Signed)"
            kinds["page"] += 1
        elif extra == pages.SIGN_IN:
            kinds["sign-in"] += 1
        elif extra == pages.STATIC_FILES:
            assert method == "get", where
            kinds["static"] += 1
        else:
            raise AssertionError(f"{where}: declare it pages.PAGE, SIGN_IN or STATIC_FILES ({extra})")
    assert all(kinds.values()), kinds  # each kind was met: the walk saw the console's routes


def test_every_list_is_paginated(documents: dict[str, tuple[Service, dict[str, Any]]]) -> None:
    unpaginated: list[str] = []
    lists = 0
    for name, (_, doc) in documents.items():
        for path, method, op in _operations(doc):
            if method != "get" or not _is_list(doc, op):
                continue
            where = f"{name} GET {path}"
            if op.get(BOUNDED_EXTENSION):
                continue
            lists += 1
            params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
            limit = params.get("limit", {}).get("schema", {})
            if "after" not in params:
                unpaginated.append(f"{where}: no `after`")
            if not limit:
                unpaginated.append(f"{where}: no `limit`")
            elif limit.get("maximum", 10**9) > MAX_PAGE or limit.get("minimum") != 1:
                unpaginated.append(f"{where}: limit {limit} (1..{MAX_PAGE})")
    assert not unpaginated, "\n".join(unpaginated)
    assert lists >= 15  # the walk found the lists (a broken detection would pass vacuously)


def test_errors_are_declared_problem_details(documents: dict[str, tuple[Service, dict[str, Any]]]) -> None:
    for name, (_, doc) in documents.items():
        problem = doc["components"]["schemas"]["ProblemDetails"]
        assert {"type", "title", "status", "code", "detail"} <= set(problem["required"])
        for path, method, op in _operations(doc):
            where = f"{name} {method.upper()} {path}"
            responses = op["responses"]
            assert "default" in responses, where
            for status, response in responses.items():
                if status == "default" or status.startswith(("4", "5")):
                    content = response["content"]
                    assert list(content) == ["application/problem+json"], (where, status)
                    assert content["application/problem+json"]["schema"] == {
                        "$ref": "#/components/schemas/ProblemDetails"
                    }
            if op.get("security"):
                assert {"401", "403", "429"} <= set(responses), where
            if "{" in path:
                assert "404" in responses, where
