"""A small stand-in for the AWS Lambda Runtime API on 127.0.0.1, for driving the real `awslambdaric` client.

It hands out the queued events one per `GET .../invocation/next`, records what the client posts back, and makes
further `next` calls wait until it is closed (the client is then stopped by its PID). Replies are HTTP/1.1 with
Content-Length and Content-Type, which the client's C HTTP code requires.
"""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


class RuntimeApi:
    """Serve `events` to one Lambda runtime client; `results` gets (kind, request id, JSON body) per post."""

    def __init__(self, events: list[Any]) -> None:
        self.events: queue.Queue = queue.Queue()
        for number, event in enumerate(events):
            self.events.put((number, event))
        self.results: queue.Queue = queue.Queue()
        self.closing = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest's output clean
                pass

            def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path != f"{PREFIX}/invocation/next":
                    return self.reply(404, b'{"error": "unknown path"}')
                while not api.closing.is_set():
                    try:
                        number, event = api.events.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    return self.reply(200, json.dumps(event).encode(), {
                        "Lambda-Runtime-Aws-Request-Id": f"req-{number}",
                        "Lambda-Runtime-Deadline-Ms": "9999999999999",
                        "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:000000000000:function:lightembed",
                        "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                    })
                self.reply(503, b'{"error": "shutting down"}')

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if parts[:2] == ["init", "error"]:
                    api.results.put(("init_error", None, _loads(raw)))
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    api.results.put((parts[2], parts[1], _loads(raw)))
                else:
                    return self.reply(404, b'{"error": "unknown path"}')
                self.reply(202, b'{"status": "OK"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "RuntimeApi":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
