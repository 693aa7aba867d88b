"""An OTLP/HTTP trace receiver for the proxy's tests.

Decodes every export with OpenTelemetry's own protobuf messages (the opentelemetry-proto
package from PyPI), as a collector does, and prints each span as one JSON line. It prints its
port first. With an argument N it answers the first N exports 503, as a busy collector does.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

refuse = int(sys.argv[1]) if len(sys.argv) > 1 else 0


def value(any_value):
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


# Exports from two proxies are handled on two threads at once, and print() writes a line and
# its newline separately: unlocked, two spans could share one line.
printing = threading.Lock()
counting = threading.Lock()


def emit(line):
    text = json.dumps(line) + "\n"
    with printing:
        sys.stdout.write(text)
        sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global refuse
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            emit({"rejected": f"{self.path} {self.headers.get('Content-Type')}"})
            return self.answer(415, b"")
        with counting:
            refused = refuse > 0
            refuse -= refused
        if refused:
            emit({"refused": len(body)})
            return self.answer(503, b"")
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as e:
            emit({"undecodable": str(e)})
            return self.answer(400, b"")
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    emit(
                        {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "name": span.name,
                            "kind": span.kind,
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "attributes": attributes(span.attributes),
                            "status": span.status.code,
                            "flags": span.flags,
                            "resource": resource,
                            "scope": ss.scope.name,
                            "api_key": self.headers.get("x-api-key"),
                        }
                    )
        self.answer(200, ExportTraceServiceResponse().SerializeToString())

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
