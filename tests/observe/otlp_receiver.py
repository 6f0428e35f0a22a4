"""A small OTLP/HTTP trace receiver for the tests: what a collector would do with our spans.

Listens on 127.0.0.1 (port 0: the OS picks; the first line on stdout says which), takes
`POST /v1/traces` in protobuf (or JSON) as the OTLP specification has it, decodes the request
with the `opentelemetry-proto` package, and appends one JSON line per span to the file named
by its first argument: trace and span ids in hex, the parent, name, kind, the service that
sent it, and the attributes.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

OUT = sys.argv[1]


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = ExportTraceServiceRequest()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            json_format.Parse(body, request)
        else:
            request.ParseFromString(body)
        lines = []
        for rs in request.resource_spans:
            resource = {a.key: value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    lines.append(
                        json.dumps(
                            {
                                "trace_id": s.trace_id.hex(),
                                "span_id": s.span_id.hex(),
                                "parent_span_id": s.parent_span_id.hex(),
                                "name": s.name,
                                "kind": s.kind,
                                "service": resource.get("service.name"),
                                "start": s.start_time_unix_nano,
                                "end": s.end_time_unix_nano,
                                "error": s.status.code == 2,
                                "attributes": {a.key: value(a.value) for a in s.attributes},
                            }
                        )
                    )
        with open(OUT, "a") as f:
            for line in lines:
                f.write(line + "\n")
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
