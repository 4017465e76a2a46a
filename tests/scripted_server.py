"""A scripted OpenAI-compatible HTTP server on loopback, for provider tests.

A real socket and real HTTP, so the client code under test runs exactly as in
production; only the upstream's behaviour is scripted:

    with ScriptedServer() as server:
        server.enqueue(Reply.stream(["Hel", "lo"]))
        server.enqueue(Reply(status=429, headers={"Retry-After": "2"}, body=b"{}"))
"""

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    # For streams: raw SSE byte chunks written one by one, with `delay` between.
    chunks: list[bytes] = field(default_factory=list)
    delay: float = 0.0

    @classmethod
    def stream(cls, texts, usage=None, comments=(), done=True, delay=0.0) -> "Reply":
        chunks = [f": {c}\n\n".encode() for c in comments]
        for text in texts:
            event = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            chunks.append(f"data: {json.dumps(event)}\n\n".encode())
        final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        chunks.append(f"data: {json.dumps(final)}\n\n".encode())
        if usage:
            chunks.append(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        if done:
            chunks.append(b"data: [DONE]\n\n")
        return cls(headers={"Content-Type": "text/event-stream"}, chunks=chunks, delay=delay)


class ScriptedServer:
    def __init__(self):
        self.replies: deque[Reply] = deque()
        self.requests: list[dict] = []  # {"path", "headers", "json"}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                server.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(raw)}
                )
                reply = server.replies.popleft() if server.replies else Reply(status=500)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunks:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in reply.chunks:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                        if reply.delay:
                            time.sleep(reply.delay)
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def enqueue(self, reply: Reply) -> None:
        self.replies.append(reply)

    def __enter__(self) -> "ScriptedServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
