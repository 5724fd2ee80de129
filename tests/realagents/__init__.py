"""Run the real coding agents offline: pinned installs, fake model servers on 127.0.0.1, prepared homes.

The provider-specific servers (`fake_anthropic`, `fake_openai`) share the scripting machinery below: a test
sets `server.script` to a list of `Turn`s, and each model request consumes one turn. Requests the agent makes on
the side (session titles, quota probes) are answered without consuming the script, so a test scripts only the
conversation it cares about.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal, Self

TurnKind = Literal["text", "tool_use", "hang", "drop", "error"]


@dataclass(frozen=True)
class Turn:
    """One scripted model reply.

    `delay` holds the reply back before the first byte (the agent shows its busy screen meanwhile). `hang` never
    finishes until the server stops or `release()` is called; `drop` starts streaming then cuts the connection, as
    a model server that dies mid-turn would.
    """

    kind: TurnKind
    content: str = ""
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    status: int = 200

    @classmethod
    def text(cls, text: str, delay: float = 0.0) -> Turn:
        return cls("text", content=text, delay=delay)

    @classmethod
    def tool_use(cls, tool: str, args: dict[str, Any], text: str = "", delay: float = 0.0) -> Turn:
        return cls("tool_use", content=text, tool=tool, args=args, delay=delay)

    @classmethod
    def hang(cls, text: str = "", delay: float = 0.0) -> Turn:
        return cls("hang", content=text, delay=delay)

    @classmethod
    def drop(cls, text: str = "", delay: float = 0.0) -> Turn:
        return cls("drop", content=text, delay=delay)

    @classmethod
    def error(cls, status: int = 500, text: str = "fake server error", delay: float = 0.0) -> Turn:
        return cls("error", content=text, status=status, delay=delay)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    side: bool = False
    at: float = field(default_factory=time.time)
    # When the reply was over (its last byte sent, or the connection cut): when the agent's turn could end, the
    # ground truth bench/accuracy.py measures `mux ls` against. None while it is being answered.
    ended: float | None = None

    def text(self) -> str:
        """The whole request body as text, for assertions like `"hello.txt" in req.text()`."""
        return self.body if isinstance(self.body, str) else json.dumps(self.body)


class Stream:
    """Writes a chunked HTTP/1.1 body; closing without the last chunk looks like a dropped connection."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self.handler = handler

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.handler.wfile.flush()

    def finish(self) -> None:
        self.handler.wfile.write(b"0\r\n\r\n")
        self.handler.wfile.flush()

    def cut(self) -> None:
        self.handler.close_connection = True
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)


class FakeModelServer:
    """A threaded HTTP server on 127.0.0.1 answering with scripted turns. Subclasses speak one provider's format.

    Use as a context manager (or via the plugin fixtures): the server always stops, releasing hung replies.
    """

    name: ClassVar[str] = "fake"

    def __init__(self, script: list[Turn] | None = None, default: Turn | None = None) -> None:
        self.script: list[Turn] = list(script or [])
        self.default = default or Turn.text("ok")
        self.requests: list[Request] = []
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._stopped = threading.Event()
        self._in_flight = threading.Condition(self._lock)
        self._hanging = 0
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"{self.name}-server", daemon=True)
        self._thread.start()

    # -- public API -------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def model_requests(self) -> list[Request]:
        """Requests that consumed (or would have consumed) a scripted turn."""
        with self._lock:
            return [r for r in self.requests if not r.side and self.is_model_request(r)]

    def release(self) -> None:
        """Let every `Turn.hang()` reply finish (as an empty turn)."""
        self._release.set()

    @property
    def hanging(self) -> int:
        with self._lock:
            return self._hanging

    def stop(self) -> None:
        """Stop serving and cut open streams. Safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for subclasses ---------------------------------------------------------------------------------------
    def is_model_request(self, req: Request) -> bool:
        raise NotImplementedError

    def is_side_request(self, req: Request) -> bool:
        return False

    def answer_side(self, req: Request, out: BaseHTTPRequestHandler) -> None:
        self.answer(req, Turn.text("Fake session"), out)

    def answer(self, req: Request, turn: Turn, out: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def answer_other(self, req: Request, out: BaseHTTPRequestHandler) -> None:
        """Probes that are not model calls: a harmless empty JSON object."""
        self.unhandled.append(f"{req.method} {req.path}")
        send_json(out, 200, {})

    def next_turn(self) -> Turn:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    def wait_release(self) -> None:
        with self._lock:
            self._hanging += 1
        try:
            self._release.wait()
        finally:
            with self._lock:
                self._hanging -= 1

    def cut_short(self, turn: Turn, stream: Stream) -> bool:
        """Play a `hang` (until released) or a `drop` turn on an open stream; True when the response must end here."""
        if turn.kind == "hang":
            self.wait_release()
            if self.stopped:
                stream.cut()
                return True
        if turn.kind == "drop":
            stream.cut()
            return True
        return False

    def pause(self, seconds: float) -> None:
        """Sleep, but wake up when the server stops."""
        if seconds > 0:
            self._stopped.wait(seconds)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        req = Request(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()}, body)
        req.side = self.is_side_request(req)
        with self._lock:
            self.requests.append(req)
        try:
            if req.side:
                self.answer_side(req, handler)
            elif self.is_model_request(req):
                self.answer(req, self.next_turn(), handler)
            else:
                self.answer_other(req, handler)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        finally:
            req.ended = time.time()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._dispatch(self)

            do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

            def log_message(self, format: str, *args: object) -> None:  # the test output stays readable
                pass

        return Handler


class _QuietServer(ThreadingHTTPServer):
    """Connections the agent drops (or that `Turn.drop` cuts) are expected here: no traceback on stderr."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def send_json(out: BaseHTTPRequestHandler, status: int, payload: object) -> None:
    data = json.dumps(payload).encode()
    out.send_response(status)
    out.send_header("Content-Type", "application/json")
    out.send_header("Content-Length", str(len(data)))
    out.end_headers()
    if out.command != "HEAD":
        out.wfile.write(data)
    out.wfile.flush()


def start_stream(out: BaseHTTPRequestHandler) -> Stream:
    out.send_response(200)
    out.send_header("Content-Type", "text/event-stream")
    out.send_header("Cache-Control", "no-cache")
    out.send_header("Transfer-Encoding", "chunked")
    out.end_headers()
    out.wfile.flush()
    return Stream(out)


def sse(event: str | None, data: object) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"{head}data: {payload}\n\n".encode()


def chunks(text: str, size: int = 24) -> Iterator[str]:
    """Split text into a few deltas, like a real stream."""
    for i in range(0, len(text), size):
        yield text[i : i + size]


def message_text(body: object) -> str:
    """All text in a JSON request body, flattened (to spot `<session>` title requests and the like)."""
    return json.dumps(body) if body is not None else ""
