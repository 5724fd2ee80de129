"""Turning results into what the user reads: tables, JSON rows, cleaned-up screens."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from muxagent.model import Changes, State, TaskReport, iso_epoch, utc_iso

# Everything a terminal would act on rather than print: CSI/OSC/other escape sequences and C0/C1 controls.
_ESCAPES = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])"  # CSI, OSC, two-byte escapes
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"  # control characters other than tab and newline
)

_STATE_COLOURS = {
    State.WORKING: "33",
    State.WAITING: "1;31",
    State.IDLE: "32",
    State.EXITED: "2",
    State.MISSING: "35",
    State.UNKNOWN: "35",
    State.STARTING: "36",
}


def clean_text(text: str) -> str:
    """Text safe to print: no escape sequences or control characters (an agent's screen may hold any bytes)."""
    return _ESCAPES.sub("", text)


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def json_row(item: TaskReport) -> dict[str, Any]:
    task, st = item.task, item.status
    ch = item.changes
    return {
        "name": task.name,
        "agent": task.agent,
        "state": st.state.value,
        "reason": st.reason,
        "branch": task.branch,
        "base": task.base,
        "worktree": task.worktree,
        "session": task.session,
        "window": task.window or None,
        "port": task.port or None,
        "ahead": ch.ahead if ch else None,
        "behind": ch.behind if ch else None,
        "dirty_files": ch.dirty_files if ch else None,
        "added_lines": ch.added_lines if ch else None,
        "removed_lines": ch.removed_lines if ch else None,
        "created": task.created,
        "last_activity": utc_iso(st.last_activity) if st.last_activity is not None else None,
        "exit_status": st.exit_status if st.state is State.EXITED else None,
        "conflicts": [dict(c) for c in item.conflicts],
        "prompt": task.prompt,
    }


def age(epoch: float | None, now: float | None = None) -> str:
    if epoch is None:
        return "-"
    seconds = max(0, int((now or time.time()) - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _changes_cell(ch: Changes | None) -> str:
    if ch is None:
        return "?"
    if not (ch.added_lines or ch.removed_lines or ch.dirty_files):
        return "-"
    return f"+{ch.added_lines} -{ch.removed_lines} {ch.dirty_files}f"


def _commits_cell(ch: Changes | None) -> str:
    if ch is None:
        return "?"
    return f"↑{ch.ahead} ↓{ch.behind}"


def table(reports: Sequence[TaskReport], colour: bool) -> str:
    header = ("NAME", "AGENT", "STATE", "CHANGES", "COMMITS", "AGE", "ACTIVE", "REASON")
    now = time.time()
    rows = [
        (
            item.task.name,
            item.task.agent,
            item.status.state.value,
            _changes_cell(item.changes),
            _commits_cell(item.changes),
            age(iso_epoch(item.task.created), now),
            age(item.status.last_activity, now),
            item.status.reason,
        )
        for item in reports
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True)).rstrip()]
    for item, row in zip(reports, rows, strict=True):
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        if colour:
            code = _STATE_COLOURS[item.status.state]
            cells[2] = f"\x1b[{code}m{cells[2]}\x1b[0m"
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def stderr_line(message: str) -> None:
    sys.stderr.write(f"mux: {clean_text(message)}\n")
