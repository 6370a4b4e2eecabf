"""tests/interop/py_server.py with the OpenTelemetry SDK set up: its spans (the Python SDK's own
server spans, children of the `_meta.traceparent` each request carries) go over OTLP/HTTP to
OTEL_EXPORTER_OTLP_ENDPOINT, one at a time (no batching: a test reads them at once); and a tool
`echo_meta` answering the `_meta` it got.

Usage: python py_server_traced.py
"""

import json
import os
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "py-server")}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from py_server import server  # noqa: E402

from mcp.server.mcpserver import Context  # noqa: E402


@server.tool()
def echo_meta(ctx: Context) -> str:
    """The `_meta` of this request as this server got it (JSON)."""
    meta = ctx.request_context.meta
    if meta is not None and not isinstance(meta, dict):
        meta = meta.model_dump(by_alias=True, exclude_none=True)
    return json.dumps(meta or {})

if __name__ == "__main__":
    server.run()
