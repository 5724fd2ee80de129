"""A fake OpenAI API: the Responses API (`POST /v1/responses`) for Codex and chat completions
(`POST /v1/chat/completions`) for OpenCode's OpenAI-compatible provider, both streamed as SSE."""

from __future__ import annotations

import json
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

from . import FakeModelServer, Request, Stream, Turn, chunks, send_json, sse, start_stream

MODEL = "fake-model"


class FakeOpenAI(FakeModelServer):
    name = "fake-openai"

    def is_model_request(self, req: Request) -> bool:
        path = req.path.split("?")[0].rstrip("/")
        return req.method == "POST" and path.endswith(("/responses", "/chat/completions"))

    def is_side_request(self, req: Request) -> bool:
        # Codex and OpenCode title a new thread/session with a separate, tool-less call; it must not eat the
        # scripted conversation.
        if not self.is_model_request(req) or not isinstance(req.body, dict):
            return False
        return not req.body.get("tools")

    def answer_other(self, req: Request, out: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?")[0].rstrip("/")
        if path.endswith("/models"):
            send_json(
                out,
                200,
                {
                    "object": "list",
                    "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "fake"}],
                    "models": [],
                },
            )
            return
        super().answer_other(req, out)

    def answer_side(self, req: Request, out: BaseHTTPRequestHandler) -> None:
        self.answer(req, Turn.text("Fake title"), out)

    def answer(self, req: Request, turn: Turn, out: BaseHTTPRequestHandler) -> None:
        self.pause(turn.delay)
        if turn.kind == "error":
            send_json(
                out, turn.status, {"error": {"message": turn.content, "type": "server_error", "code": "server_error"}}
            )
            return
        if req.path.split("?")[0].rstrip("/").endswith("/chat/completions"):
            self._chat(turn, out)
        else:
            self._responses(turn, out)

    # -- Responses API (Codex) --------------------------------------------------------------------------------
    def _responses(self, turn: Turn, out: BaseHTTPRequestHandler) -> None:
        resp_id = _id("resp")
        stream = start_stream(out)
        base = {
            "id": resp_id,
            "object": "response",
            "created_at": int(time.time()),
            "model": MODEL,
            "status": "in_progress",
            "output": [],
        }
        stream.write(sse("response.created", {"type": "response.created", "response": base}))
        index = 0
        output: list[dict[str, Any]] = []
        if turn.content or turn.kind == "text":
            output.append(self._responses_text(stream, index, turn.content))
            index += 1
        if self.cut_short(turn, stream):
            return
        if turn.kind == "tool_use":
            item = {
                "type": "function_call",
                "id": _id("fc"),
                "call_id": _id("call"),
                "name": turn.tool,
                "arguments": json.dumps(turn.args),
                "status": "completed",
            }
            added = {**item, "arguments": "", "status": "in_progress"}
            stream.write(
                sse(
                    "response.output_item.added",
                    {"type": "response.output_item.added", "output_index": index, "item": added},
                )
            )
            stream.write(
                sse(
                    "response.function_call_arguments.delta",
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": item["id"],
                        "output_index": index,
                        "delta": item["arguments"],
                    },
                )
            )
            stream.write(
                sse(
                    "response.output_item.done",
                    {"type": "response.output_item.done", "output_index": index, "item": item},
                )
            )
            output.append(item)
        usage = {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        }
        done = {**base, "status": "completed", "output": output, "usage": usage}
        stream.write(sse("response.completed", {"type": "response.completed", "response": done}))
        stream.finish()

    @staticmethod
    def _responses_text(stream: Stream, index: int, text: str) -> dict[str, Any]:
        msg_id = _id("msg")
        added = {"type": "message", "id": msg_id, "role": "assistant", "status": "in_progress", "content": []}
        stream.write(
            sse(
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": index, "item": added},
            )
        )
        stream.write(
            sse(
                "response.content_part.added",
                {
                    "type": "response.content_part.added",
                    "item_id": msg_id,
                    "output_index": index,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []},
                },
            )
        )
        for part in chunks(text):
            stream.write(
                sse(
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "item_id": msg_id,
                        "output_index": index,
                        "content_index": 0,
                        "delta": part,
                    },
                )
            )
        item = {**added, "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}
        stream.write(
            sse("response.output_item.done", {"type": "response.output_item.done", "output_index": index, "item": item})
        )
        return item

    # -- Chat completions (OpenCode) --------------------------------------------------------------------------
    def _chat(self, turn: Turn, out: BaseHTTPRequestHandler) -> None:
        chat_id = _id("chatcmpl")
        stream = start_stream(out)

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> None:
            payload: dict[str, Any] = {
                "id": chat_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage:
                payload["usage"] = usage
            stream.write(sse(None, payload))

        chunk({"role": "assistant", "content": ""})
        if turn.content or turn.kind == "text":
            for part in chunks(turn.content):
                chunk({"content": part})
        if self.cut_short(turn, stream):
            return
        finish = "stop"
        if turn.kind == "tool_use":
            finish = "tool_calls"
            call = {
                "index": 0,
                "id": _id("call"),
                "type": "function",
                "function": {"name": turn.tool, "arguments": json.dumps(turn.args)},
            }
            chunk({"tool_calls": [call]})
        chunk({}, finish, {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
        stream.write(sse(None, "[DONE]"))
        stream.finish()


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def codex_writes_hello() -> list[Turn]:
    """Codex asks to run a command that writes hello.txt, outside its sandbox (so it asks first), then says so."""
    command = {
        "cmd": "echo hi from codex > hello.txt",
        "sandbox_permissions": "require_escalated",
        "justification": "Write hello.txt?",
    }
    return [Turn.tool_use("exec_command", command, delay=1.5), Turn.text("Done: wrote hello.txt.", delay=1.0)]
