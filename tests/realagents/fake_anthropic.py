"""A fake Anthropic Messages API for Claude Code: `POST /v1/messages?beta=true` answered with scripted SSE."""

from __future__ import annotations

import json
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

from . import FakeModelServer, Request, Stream, Turn, chunks, send_json, sse, start_stream

MODEL = "claude-sonnet-4-5"


class FakeAnthropic(FakeModelServer):
    name = "fake-anthropic"

    def is_model_request(self, req: Request) -> bool:
        return req.method == "POST" and req.path.split("?")[0].rstrip("/") == "/v1/messages"

    def is_side_request(self, req: Request) -> bool:
        # Claude titles the session (and checks its quota) with small non-streaming or tool-less calls; only the
        # main conversation loop carries the tool list.
        if not self.is_model_request(req) or not isinstance(req.body, dict):
            return False
        if "<session>" in json.dumps(req.body.get("messages", "")):
            return True
        return not req.body.get("tools")

    def answer_other(self, req: Request, out: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?")[0]
        if path.endswith("/count_tokens"):
            send_json(out, 200, {"input_tokens": 10})
            return
        super().answer_other(req, out)

    def answer_side(self, req: Request, out: BaseHTTPRequestHandler) -> None:
        text = "Fake session"
        if isinstance(req.body, dict) and not req.body.get("stream"):
            send_json(out, 200, _message([{"type": "text", "text": text}], "end_turn"))
            return
        self.answer(req, Turn.text(text), out)

    def answer(self, req: Request, turn: Turn, out: BaseHTTPRequestHandler) -> None:
        self.pause(turn.delay)
        if turn.kind == "error":
            send_json(out, turn.status, {"type": "error", "error": {"type": "api_error", "message": turn.content}})
            return
        if isinstance(req.body, dict) and not req.body.get("stream"):
            blocks: list[dict[str, Any]] = []
            if turn.content:
                blocks.append({"type": "text", "text": turn.content})
            if turn.kind == "tool_use":
                blocks.append({"type": "tool_use", "id": _id("toolu"), "name": turn.tool, "input": turn.args})
            send_json(out, 200, _message(blocks, "tool_use" if turn.kind == "tool_use" else "end_turn"))
            return
        stream = start_stream(out)
        stream.write(sse("message_start", {"type": "message_start", "message": _message([], None)}))
        index = 0
        if turn.content or turn.kind == "text":
            self._text_block(stream, index, turn.content)
            index += 1
        if self.cut_short(turn, stream):
            return
        stop_reason = "end_turn"
        if turn.kind == "tool_use":
            stop_reason = "tool_use"
            block = {"type": "tool_use", "id": _id("toolu"), "name": turn.tool, "input": {}}
            stream.write(
                sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
            )
            for part in chunks(json.dumps(turn.args), 40):
                delta = {"type": "input_json_delta", "partial_json": part}
                stream.write(
                    sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                )
            stream.write(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        stream.write(
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": 12},
                },
            )
        )
        stream.write(sse("message_stop", {"type": "message_stop"}))
        stream.finish()

    @staticmethod
    def _text_block(stream: Stream, index: int, text: str) -> None:
        stream.write(
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
            )
        )
        for part in chunks(text):
            stream.write(
                sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": part}},
                )
            )
        stream.write(sse("content_block_stop", {"type": "content_block_stop", "index": index}))


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _message(content: list[dict[str, Any]], stop_reason: str | None) -> dict[str, Any]:
    return {
        "id": _id("msg"),
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
