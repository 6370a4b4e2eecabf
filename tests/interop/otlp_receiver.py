"""A small OTLP/HTTP receiver (http/protobuf) on opentelemetry-proto: it prints every span it is
sent as one JSON line on stdout (trace id, span id, parent, name, kind, attributes, service
name), and every histogram data point of the metrics it is sent as one line too (metric, unit,
service, attributes, count, sum). `--fail N` answers the first N exports with 500; `--slow S` waits S
seconds before answering. Prints "listening on HOST:PORT" first.

With `--grpc` it listens for OTLP/gRPC instead (grpcio; same output).

Usage: python otlp_receiver.py [--port P] [--fail N] [--slow S] [--grpc]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

args = argparse.ArgumentParser()
args.add_argument("--port", type=int, default=0)
args.add_argument("--fail", type=int, default=0)
args.add_argument("--slow", type=float, default=0.0)
args.add_argument("--grpc", action="store_true")
opts = args.parse_args()
failed = 0
printing = threading.Lock()


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def print_spans(req: ExportTraceServiceRequest) -> None:
    for rs in req.resource_spans:
        service = next((value(a.value) for a in rs.resource.attributes if a.key == "service.name"), None)
        for ss in rs.scope_spans:
            for s in ss.spans:
                line = json.dumps({
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": s.kind,
                    "service": service,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "attributes": {a.key: value(a.value) for a in s.attributes},
                })
                # One line per span, whole: exports arrive on several threads at once.
                with printing:
                    print(line, flush=True)


def print_metrics(req: ExportMetricsServiceRequest) -> None:
    for rm in req.resource_metrics:
        service = next((value(a.value) for a in rm.resource.attributes if a.key == "service.name"), None)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.WhichOneof("data") != "histogram":
                    continue
                for p in m.histogram.data_points:
                    line = json.dumps({
                        "metric": m.name, "unit": m.unit, "service": service, "count": p.count, "sum": p.sum,
                        "attributes": {a.key: value(a.value) for a in p.attributes},
                    })
                    with printing:
                        print(line, flush=True)


def trouble() -> bool:
    """Slow and failing as told; True when this export is to fail."""
    global failed
    if opts.slow:
        time.sleep(opts.slow)
    with printing:
        if failed < opts.fail:
            failed += 1
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if trouble():
            self.send_response(500)
            self.end_headers()
            return
        if self.path.endswith("/v1/metrics"):
            req = ExportMetricsServiceRequest()
            req.ParseFromString(body)
            print_metrics(req)
            self.answer(ExportMetricsServiceResponse().SerializeToString())
            return
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        print_spans(req)
        self.answer(ExportTraceServiceResponse().SerializeToString())

    def answer(self, out: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def serve_grpc() -> None:
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            if trouble():
                context.abort(grpc.StatusCode.UNAVAILABLE, "told to fail")
            print_spans(request)
            return ExportTraceServiceResponse()

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request, context):
            if trouble():
                context.abort(grpc.StatusCode.UNAVAILABLE, "told to fail")
            print_metrics(request)
            return ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    port = server.add_insecure_port(f"127.0.0.1:{opts.port}")
    server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


if opts.grpc:
    serve_grpc()
else:
    server = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdout.flush()
    server.serve_forever()
