"""Every string and list a client can send to any service has a documented maximum.

The test walks each service's OpenAPI document -- every operation's parameters and request bodies -- so a
new route or field cannot skip its bound. Bodies as a whole are capped by the runtime
(``http_max_body_bytes``; tested in tests/services/runtime/test_edge.py).
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from leadstream_cli.processes import SERVICES
from tests.support.bounds import unbounded


def _openapi(service: str) -> dict[str, Any]:
    built = importlib.import_module(f"services.{service}.app").build()
    return built.app.openapi()


def request_inputs(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, schema) of every parameter and request body of every operation."""
    inputs = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            for param in op.get("parameters", ()):
                inputs.append((f"{where} {param['in']} {param['name']}", param["schema"]))
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                inputs.append((f"{where} body ({media})", content.get("schema", {})))
    return inputs


@pytest.mark.parametrize("service", SERVICES)
def test_every_request_string_and_list_has_a_maximum(service: str) -> None:
    doc = _openapi(service)
    inputs = request_inputs(doc)
    problems = [f"{where}: {p}" for where, schema in inputs for p in unbounded(schema, doc)]
    assert problems == []


@pytest.mark.parametrize("service", SERVICES)
def test_every_integer_parameter_has_a_range(service: str) -> None:
    """An integer query, path or header parameter has a minimum and a maximum: a value past what its column holds
    (``after=2**63`` against a bigint sequence) reached the database, which refused the query (a 500)."""
    doc = _openapi(service)
    open_ended = [
        f"{method.upper()} {path} {param['in']} {param['name']}: {schema}"
        for path, operations in doc["paths"].items()
        for method, op in operations.items()
        for param in op.get("parameters", ())
        for schema in (param["schema"], *param["schema"].get("anyOf", ()))
        if schema.get("type") == "integer" and ("minimum" not in schema or "maximum" not in schema)
    ]
    assert open_ended == []


def test_the_walk_sees_every_service_s_inputs() -> None:
    """The check is only as good as what it walks: each service with routes has bodies or parameters in it."""
    counts = {service: len(request_inputs(_openapi(service))) for service in SERVICES}
    assert all(counts[s] > 0 for s in ("discovery", "messaging", "outreach", "video", "projection")), counts
