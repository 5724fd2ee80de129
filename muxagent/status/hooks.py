"""The command agents call from their hooks: `python -P -m muxagent _hook SOURCE [PAYLOAD]`.

It runs inside the agent's turn, so it must be quick and can never fail: it imports almost nothing, takes its
task from `MUX_TASK`, its state dir from `MUX_STATE_DIR` and its agent's launch id from `MUX_LAUNCH` (all set
in the task's pane: events of another launch are recorded but move no state), the event's time from
`MUX_HOOK_TS` when the agent's side stamped it, appends one event and exits 0 whatever happens (missing state
dir, malformed or huge payload, unknown task).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from muxagent.model import State
from muxagent.status.events import LAUNCH_ENV, SESSION_ID, HookEvent, append, events_path

MAX_PAYLOAD = 1 << 20
MAX_LAUNCH = 64  # mux writes 16 hex digits; anything longer is not one of its ids
_TASK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}\Z")

_CLAUDE = {
    "UserPromptSubmit": State.WORKING,
    "PreToolUse": State.WORKING,
    "PostToolUse": State.WORKING,
    "PostToolUseFailure": State.WORKING,  # the model gets the tool's error and goes on (an interrupt: below)
    "PermissionRequest": State.WAITING,
    "PermissionDenied": State.WORKING,  # the dialog is answered; if that ended the turn, the screen says idle
    "Stop": State.IDLE,
    "StopFailure": State.IDLE,
    "SubagentStop": None,
    "SessionStart": None,
    "SessionEnd": State.EXITED,
}
_CLAUDE_NOTIFICATIONS = {
    "permission_prompt": State.WAITING,
    "elicitation_dialog": State.WAITING,
    "idle_prompt": State.IDLE,
}
_CLAUDE_ERROR = re.compile(r"[a-z_]{1,40}\Z")  # StopFailure's `error`: rate_limit, server_error, overloaded, ...
_OPENCODE_STATUS = {"busy": State.WORKING, "retry": State.WORKING, "idle": State.IDLE}
_GEMINI = {"BeforeAgent": State.WORKING, "AfterAgent": State.IDLE, "Notification": State.WAITING}


def interpret(source: str, payload: Any) -> tuple[str, State | None, str]:
    """(event name, the state it means or None, detail) for one hook payload."""
    if not isinstance(payload, dict):
        return ("malformed", None, "")
    if source == "claude":
        name = str(payload.get("hook_event_name", "unknown"))
        if name == "Notification":
            kind = str(payload.get("notification_type", ""))
            return (f"Notification:{kind}", _CLAUDE_NOTIFICATIONS.get(kind), "")
        if name == "PostToolUseFailure" and payload.get("is_interrupt") is True:
            # The turn was interrupted, and no Stop follows. (2.1.330 sends none for Esc in a running Bash tool:
            # the screen rule ends that turn.)
            return (f"{name}:interrupt", State.IDLE, "")
        error = payload.get("error")
        if name == "StopFailure" and isinstance(error, str) and _CLAUDE_ERROR.match(error):
            return (f"{name}:{error}", State.IDLE, "")  # the reason says why the turn failed
        return (name, _CLAUDE.get(name), "")
    if source == "codex":
        kind = str(payload.get("type", "unknown"))
        state = State.IDLE if kind == "agent-turn-complete" else None
        return (kind, state, str(payload.get("thread-id", "")))
    if source == "opencode":
        kind = str(payload.get("type", "unknown"))
        props = payload.get("properties") if isinstance(payload.get("properties"), dict) else {}
        assert isinstance(props, dict)
        if kind == "session.status":
            status = props.get("status")
            word = str(status.get("type", "")) if isinstance(status, dict) else str(status)
            return (f"session.status:{word}", _OPENCODE_STATUS.get(word), "")
        if kind == "session.idle":
            return (kind, State.IDLE, "")
        if kind in ("permission.asked", "permission.updated"):
            return (kind, State.WAITING, "")
        if kind == "permission.replied":
            return (kind, State.WORKING, "")
        return (kind, None, "")
    if source == "gemini":
        name = str(payload.get("hook_event_name", "unknown"))
        return (name, _GEMINI.get(name), "")
    return ("unknown-source", None, "")


def session_of(source: str, payload: Any) -> str:
    """The agent's own id of the conversation the event belongs to ("" if it names none): what `mux restart`
    resumes. Claude Code's `session_id`, Codex's `thread-id`, OpenCode's `sessionID` in the event's properties."""
    if not isinstance(payload, dict):
        return ""
    if source == "claude":
        found = payload.get("session_id")
    elif source == "codex":
        found = payload.get("thread-id")
    elif source == "opencode":
        props = payload.get("properties")
        found = props.get("sessionID") if isinstance(props, dict) else None
    else:
        return ""
    return found if isinstance(found, str) and SESSION_ID.match(found) else ""


# What an event keeps of a prompt or a final message: the events file's tail (TAIL_BYTES) must hold many events.
MAX_TEXT = 2000


def texts_of(source: str, payload: Any) -> tuple[str, str]:
    """(the turn's prompt, the agent's last message of the turn) as the hook payload gives them, each trimmed:
    Claude Code's `prompt` (UserPromptSubmit) and `last_assistant_message` (Stop), Codex's `input-messages` and
    `last-assistant-message`, and what mux's OpenCode plugin adds to `session.idle` from the session's messages."""
    if not isinstance(payload, dict):
        return "", ""
    if source == "claude":
        prompt, message = payload.get("prompt"), payload.get("last_assistant_message")
    elif source == "codex":
        inputs = payload.get("input-messages")
        prompt = inputs[-1] if isinstance(inputs, list) and inputs else None
        message = payload.get("last-assistant-message")
    elif source == "opencode" and isinstance(payload.get("mux"), dict):
        prompt, message = payload["mux"].get("prompt"), payload["mux"].get("message")
    else:
        return "", ""
    return _text(prompt), _text(message)


def _text(value: object) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def _payload(args: list[str]) -> Any:
    if args:
        text = args[-1][:MAX_PAYLOAD]
    elif sys.stdin is None or sys.stdin.isatty():
        return None
    else:
        text = sys.stdin.read(MAX_PAYLOAD)
    try:
        return json.loads(text)
    except ValueError:
        return None


def _event_time() -> float:
    """When the agent saw the event: `MUX_HOOK_TS` if its hook runner stamped one, else now.

    A runner that starts hooks without waiting for the previous one (OpenCode's plugin) stamps each, because
    two hook processes can finish starting in either order.
    """
    now = time.time()
    try:
        stamped = float(os.environ.get("MUX_HOOK_TS", ""))
    except ValueError:
        return now
    return stamped if math.isfinite(stamped) and 0 < stamped <= now + 1 else now


def main(argv: list[str]) -> int:
    try:
        task = os.environ.get("MUX_TASK", "")
        state_dir = os.environ.get("MUX_STATE_DIR", "")
        if not argv or not _TASK.match(task) or not state_dir or not os.path.isdir(state_dir):
            return 0
        source, args = argv[0], argv[1:]
        payload = _payload(args)
        name, state, detail = interpret(source, payload)
        launch = os.environ.get(LAUNCH_ENV, "")[:MAX_LAUNCH]
        prompt, message = texts_of(source, payload)
        event = HookEvent(
            _event_time(), source, name, state, detail, launch, session_of(source, payload), prompt, message
        )
        append(events_path(Path(state_dir), task), event)
    except Exception:  # a hook must never break or slow the agent
        pass
    return 0
