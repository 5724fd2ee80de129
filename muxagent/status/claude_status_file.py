"""Claude Code's own word on its state: the file it keeps while it runs, `<config dir>/sessions/<pid>.json`.

Claude Code 2.1.330 writes there, among other fields, `pid`, `procStart` (the process's start time in clock ticks,
field 22 of /proc/PID/stat), `status` (`idle`, `busy` or `waiting`, with `waitingFor`) and `statusUpdatedAt`
(epoch milliseconds), and removes the file when it exits. mux reads it as one more event beside the hooks, so the
newest of the two decides (status/classifier.py): Claude fires no hook when a turn is interrupted with Esc, but it
sets `idle` here.

Nothing here may be trusted blindly: the file is read only for a process of the task's own launch (MUX_LAUNCH in
its environment: an agent started by hand in the pane has none or another), whose start time matches (a pid
reused by another program meets a stale file), and a missing, torn or changed file is no signal at all.
"""

from __future__ import annotations

import json
from pathlib import Path

from muxagent.model import State
from muxagent.status.events import LAUNCH_ENV, HookEvent

SOURCE = "claude-status"
_STATES = {"busy": State.WORKING, "idle": State.IDLE, "waiting": State.WAITING}
# A status file is a few hundred bytes; one bigger than this is not Claude's.
_MAX_BYTES = 64 * 1024


def event(pane_pid: int, launch: str) -> HookEvent | None:
    """The state Claude Code's status file gives for the agent the pane runs (the pane's process or one of its
    children), as an event; None when there is none to trust."""
    if pane_pid <= 0 or not launch:
        return None
    for pid in (pane_pid, *_children(pane_pid)):
        found = _event_of(pid, launch)
        if found is not None:
            return found
    return None


def _event_of(pid: int, launch: str) -> HookEvent | None:
    environ = _environ(pid)
    if environ.get(LAUNCH_ENV) != launch:
        return None
    record = _record(_config_dir(environ) / "sessions" / f"{pid}.json")
    if record is None or record.get("pid") != pid or str(record.get("procStart")) != _start_time(pid):
        return None
    status, updated = record.get("status"), record.get("statusUpdatedAt")
    state = _STATES.get(status) if isinstance(status, str) else None
    if state is None or not isinstance(updated, int | float) or isinstance(updated, bool):
        return None
    waiting_for = record.get("waitingFor")
    detail = waiting_for if isinstance(waiting_for, str) and state is State.WAITING else ""
    name = f"session status {status}"
    return HookEvent(ts=updated / 1000, source=SOURCE, name=name, state=state, detail=detail[:200])


def _config_dir(environ: dict[str, str]) -> Path:
    if environ.get("CLAUDE_CONFIG_DIR"):
        return Path(environ["CLAUDE_CONFIG_DIR"])
    return Path(environ.get("HOME") or str(Path.home())) / ".claude"


def _record(path: Path) -> dict[str, object] | None:
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_BYTES + 1)
        data = json.loads(raw) if len(raw) <= _MAX_BYTES else None
    except (OSError, ValueError):
        return None  # absent (not running, or an older Claude), being rewritten, or not JSON
    return data if isinstance(data, dict) else None


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}  # gone, another user's, or no /proc: no signal
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, _, value in pairs}


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': count from the last one.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except OSError:
        return []
    return [int(part) for part in text.split() if part.isdigit()]

