"""A scripted upstream on loopback: OpenAI- and Anthropic-compatible SSE whose
behaviour each test scripts per request. Real sockets and real HTTP, so the code
under test runs exactly as in production; only the upstream is scripted.

    with ScriptedServer() as server:
        server.enqueue(Reply.stream(["Hel", "lo"], delay=0.01, first_delay=0.2))
        server.enqueue(Reply(status=429, headers={"Retry-After": "2"}))
        server.enqueue(Reply.stream(["a", "b"], drop_after=1))   # connection cut mid-stream
        server.enqueue(Reply.stream(["a"], hang=True))           # a stream that never ends
        server.enqueue(Reply.flood(f"{n} " for n in itertools.count()))  # never ends

Requests are recorded (`server.requests`); for each, `server.disconnects` tells
when the client closed the connection, so tests can check cancellation reached
the socket, and `server.sent_bytes` how much of a reply was written before that.
"""

import json
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STAMP = b"@@STAMP@@"


def _sse(data: dict | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


@dataclass
class Reply:
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    # For streams: raw byte chunks written one by one; any iterable, so a generator
    # can send more than fits in memory, or never end (a Reply is then served once).
    chunks: Iterable[bytes] = field(default_factory=list)
    delay: float = 0.0  # between chunks
    first_delay: float = 0.0  # before the first chunk (after the headers)
    drop_after: int | None = None  # cut the connection after this many chunks
    hang: bool = False  # after the chunks, send nothing more and never end
    # Replace STAMP in each chunk with the send time (time.monotonic()), so a
    # benchmark can measure how long a chunk takes to reach a browser.
    stamp: bool = False

    @classmethod
    def stream(cls, texts, usage=None, comments=(), done=True, finish="stop", **options):
        """An OpenAI-compatible chat.completions stream."""
        chunks = [f": {c}\n\n".encode() for c in comments]
        for text in texts:
            chunks.append(_sse({"choices": [{"index": 0, "delta": {"content": text}}]}))
        if finish:
            chunks.append(_sse({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
        if usage:
            chunks.append(_sse({"choices": [], "usage": usage}))
        if done:
            chunks.append(b"data: [DONE]\n\n")
        return cls(headers={"Content-Type": "text/event-stream"}, chunks=chunks, **options)

    @classmethod
    def flood(cls, texts: Iterable[str], total_bytes: int | None = None, **options) -> "Reply":
        """An OpenAI-compatible stream of one delta per text of `texts` (a generator
        may never end): until about `total_bytes` were sent, then it ends properly."""

        def chunks():
            sent = 0
            for text in texts:
                event = _sse({"choices": [{"index": 0, "delta": {"content": text}}]})
                yield event
                sent += len(event)
                if total_bytes is not None and sent >= total_bytes:
                    break
            yield _sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            yield b"data: [DONE]\n\n"

        return cls(headers={"Content-Type": "text/event-stream"}, chunks=chunks(), **options)

    @classmethod
    def anthropic_stream(
        cls, texts, input_tokens=10, output_tokens=None, stop="end_turn", tool_uses=(), **options
    ):
        """An Anthropic Messages API stream. tool_uses: [(id, name, [json parts])]."""
        chunks = [
            _sse(
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                    },
                },
                "message_start",
            ),
            _sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            _sse({"type": "ping"}, "ping"),
        ]
        for text in texts:
            chunks.append(
                _sse(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": text},
                    },
                    "content_block_delta",
                )
            )
        chunks.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        for offset, (tool_id, name, parts) in enumerate(tool_uses, start=1):
            chunks.append(
                _sse(
                    {
                        "type": "content_block_start",
                        "index": offset,
                        "content_block": {
                            "type": "tool_use",
                            "id": tool_id,
                            "name": name,
                            "input": {},
                        },
                    },
                    "content_block_start",
                )
            )
            for part in parts:
                chunks.append(
                    _sse(
                        {
                            "type": "content_block_delta",
                            "index": offset,
                            "delta": {"type": "input_json_delta", "partial_json": part},
                        },
                        "content_block_delta",
                    )
                )
            chunks.append(
                _sse({"type": "content_block_stop", "index": offset}, "content_block_stop")
            )
        out = len(texts) if output_tokens is None else output_tokens
        chunks.append(
            _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop},
                    "usage": {"output_tokens": out},
                },
                "message_delta",
            )
        )
        chunks.append(_sse({"type": "message_stop"}, "message_stop"))
        return cls(headers={"Content-Type": "text/event-stream"}, chunks=chunks, **options)

    @classmethod
    def tool_calls(cls, calls, text="", **options) -> "Reply":
        """An OpenAI-compatible stream that calls tools: calls = [(id, name, arguments)],
        each call's JSON arguments sent in two pieces, as real servers do."""
        chunks = []
        if text:
            chunks.append(_sse({"choices": [{"index": 0, "delta": {"content": text}}]}))
        for index, (call_id, name, arguments) in enumerate(calls):
            head = {"index": index, "id": call_id, "type": "function"}
            head["function"] = {"name": name, "arguments": arguments[: len(arguments) // 2]}
            rest = {"index": index, "function": {"arguments": arguments[len(arguments) // 2 :]}}
            for part in (head, rest):
                chunks.append(_sse({"choices": [{"index": 0, "delta": {"tool_calls": [part]}}]}))
        finish = {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
        chunks.append(_sse({"choices": [finish]}))
        chunks.append(b"data: [DONE]\n\n")
        return cls(headers={"Content-Type": "text/event-stream"}, chunks=chunks, **options)

    @classmethod
    def page(cls, html: str, content_type="text/html; charset=utf-8", status=200, headers=None):
        """A web page (or any body) for the web_fetch tool."""
        return cls(
            status=status,
            headers={"Content-Type": content_type, **(headers or {})},
            body=html.encode(),
        )

    @classmethod
    def json(cls, status: int, data, headers=None) -> "Reply":
        return cls(
            status=status,
            headers={"Content-Type": "application/json", **(headers or {})},
            body=json.dumps(data).encode(),
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default backlog of 5 refuses bursts of connects

    def handle_error(self, request, client_address):
        pass  # clients hanging up mid-stream is what many tests do on purpose


class ScriptedServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.replies: deque[Reply] = deque()
        self.requests: list[dict] = []  # {"method", "path", "headers", "json"}
        self.disconnects: dict[int, float] = {}  # request index -> monotonic time
        self.sent_bytes: dict[int, int] = {}  # request index -> body bytes written
        self.default: Reply | None = None  # served when the queue is empty
        # Chooses the reply from the request's JSON body, for requests that arrive
        # together in no fixed order (a seat's samples); used before the queue.
        self.respond: Callable[[dict], Reply] | None = None
        self.open_connections = 0  # client connections the server holds right now
        self.request_times: list[float] = []  # monotonic arrival time of each request
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with server._lock:
                    server.open_connections += 1

            def finish(self):
                try:
                    super().finish()
                finally:
                    with server._lock:
                        server.open_connections -= 1

            def do_GET(self):
                self._serve(None)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                self._serve(body)

            def _serve(self, body):
                with server._lock:
                    server.request_times.append(time.monotonic())
                    index = len(server.requests)
                    server.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": dict(self.headers),
                            "json": body,
                        }
                    )
                    if server.respond is not None and isinstance(body, dict):
                        reply = server.respond(body)
                    elif server.replies:
                        reply = server.replies.popleft()
                    else:
                        reply = server.default or Reply.json(500, {"error": "no reply scripted"})
                try:
                    self._write(reply, index)
                except (BrokenPipeError, ConnectionResetError):
                    server.disconnects.setdefault(index, time.monotonic())
                    self.close_connection = True
                    return
                if reply.hang:
                    self._wait_for_hangup(index)

            def _write(self, reply: Reply, index: int):
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if not reply.chunks and not reply.hang:
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    server.sent_bytes[index] = len(reply.body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                if reply.first_delay and self._hung_up_within(reply.first_delay, index):
                    return
                for n, chunk in enumerate(reply.chunks):
                    if reply.drop_after is not None and n >= reply.drop_after:
                        # An abrupt end: no terminating chunk, connection reset.
                        self.connection.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                        )
                        self.close_connection = True
                        return
                    if reply.stamp:
                        chunk = chunk.replace(STAMP, f"{time.monotonic():.6f}".encode())
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                    server.sent_bytes[index] = server.sent_bytes.get(index, 0) + len(chunk)
                    if reply.delay and self._hung_up_within(reply.delay, index):
                        return
                if not reply.hang:
                    self.wfile.write(b"0\r\n\r\n")

            def _hung_up_within(self, seconds: float, index: int) -> bool:
                """Wait, noticing at once if the client closes the connection."""
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
                    if readable:
                        try:
                            data = self.connection.recv(1024, socket.MSG_PEEK)
                        except OSError:
                            data = b""
                        if not data:
                            server.disconnects.setdefault(index, time.monotonic())
                            self.close_connection = True
                            return True
                return False

            def _wait_for_hangup(self, index: int):
                sock = self.connection
                while not server._stopping.is_set():
                    readable, _, _ = select.select([sock], [], [], 0.02)
                    if readable:
                        try:
                            data = sock.recv(1024)
                        except OSError:
                            data = b""
                        if not data:
                            server.disconnects.setdefault(index, time.monotonic())
                            break
                self.close_connection = True

        # Loopback for tests; scripts/cluster.py binds its upstream host's address.
        self.httpd = _Server((host, port), Handler)
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}/v1"

    def enqueue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def __enter__(self) -> "ScriptedServer":
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
