"""A real OTLP/HTTP trace receiver for tests: services started as processes export their spans to it
(``OTEL_EXPORTER_OTLP_ENDPOINT``), it decodes each ``ExportTraceServiceRequest`` with opentelemetry-proto and
keeps the spans.

    async with OtlpReceiver().running() as otlp:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp.url
        ...
        otlp.trace(trace_id)  # every span received of that trace
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.local_http import serve

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as the receiver decoded it (ids in lower-case hex, as in a traceparent)."""

    service: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    attributes: dict[str, object]
    scope: str


def _value(v: AnyValue) -> object:
    which = v.WhichOneof("value")
    return getattr(v, which) if which in ("string_value", "int_value", "double_value", "bool_value") else str(v)


@dataclass
class OtlpReceiver:
    """Serves ``POST /v1/traces`` (OTLP/HTTP, protobuf, optionally gzip or deflate); :attr:`spans` grows."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    url: str = ""

    async def _traces(self, request: Request) -> Response:
        body = await request.body()
        encoding = request.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        if request.headers.get("content-type", "").split(";")[0] != PROTOBUF:
            return Response("only OTLP protobuf is understood here", status_code=415)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.requests += 1
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex() or None,
                            name=s.name,
                            kind=SpanProto.SpanKind.Name(s.kind),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            scope=scope_spans.scope.name,
                        )
                    )
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[OtlpReceiver]:
        """Serve on a free port on 127.0.0.1 (:attr:`url` is the base URL to export to) until the block ends."""
        app = Starlette(routes=[Route("/v1/traces", self._traces, methods=["POST"])])
        async with serve(app) as url:
            self.url = url
            yield self

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """Every span received of one trace."""
        return [s for s in self.spans if s.trace_id == trace_id]
