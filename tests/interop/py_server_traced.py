"""tests/interop/py_server.py with the OpenTelemetry SDK set up: its spans (the Python SDK's own
server spans, children of the `_meta.traceparent` each request carries) go over OTLP/HTTP to
OTEL_EXPORTER_OTLP_ENDPOINT, one at a time (no batching: a test reads them at once).

Usage: python py_server_traced.py
"""

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

if __name__ == "__main__":
    server.run()
