"""Turning results into what the user reads: tables, status lines, cleaned-up screens."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from muxagent.model import Changes, State, TaskReport, iso_epoch

# Everything a terminal would act on rather than print. A repo's screen pattern, an agent's screen or hook, a file
# name reach the terminal through here: an OSC 52 in a `.mux.toml` pattern set the clipboard from `mux ls`.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves, reports), 7- and 8-bit
    r"|(?:\x1b[\]P_^X]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"  # OSC, DCS, APC, PM, SOS + payload
    r"|\x1b[ -/]*[0-~]"  # any other escape (`ESC c` resets the terminal, `ESC ( 0` switches its charset)
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"  # what is left of those, and every control character but tab and newline
    # Bidi embeddings, overrides and isolates: they reorder what follows on screen, so a line can read
    # differently from what it holds (CVE-2021-42574, "Trojan Source").
    r"|[\u202a-\u202e\u2066-\u2069]"
)
_LINE_BREAKS = re.compile(r"[\t\n]+")

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
    """Text safe to print: no escape sequences or control characters (an agent's screen may hold any bytes).

    The one cleaning every text from a repo, an agent or a hook passes before it reaches a terminal."""
    return _ESCAPES.sub("", text)


def clean_line(text: str) -> str:
    """`clean_text` for one line or one table cell: tabs and newlines become a space, so no cell fakes a row."""
    return _LINE_BREAKS.sub(" ", clean_text(text))


def use_colour(stream: TextIO) -> bool:
    # no-color.org: NO_COLOR set to anything but the empty string turns colour off.
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def family_fields(reports: Sequence[TaskReport]) -> dict[str, dict[str, Any]]:
    """`mux ls --json`'s `parent` (while it is a listed task, else null) and `children` of each task, by name."""
    listed = {item.task.name for item in reports}
    children = _children(reports)
    return {
        item.task.name: {
            "parent": item.task.parent if item.task.parent in listed else None,
            "children": children.get(item.task.name, []),
        }
        for item in reports
    }


def _children(reports: Sequence[TaskReport]) -> dict[str, list[str]]:
    """Each listed task's listed children, in the order of `reports`."""
    listed = {item.task.name for item in reports}
    found: dict[str, list[str]] = {}
    for item in reports:
        parent = item.task.parent
        if parent is not None and parent in listed and parent != item.task.name:
            found.setdefault(parent, []).append(item.task.name)
    return found


def family_order(reports: Sequence[TaskReport]) -> list[tuple[int, TaskReport]]:
    """(depth, report): every task after its parent, grandchildren after their parent, each level in the order of
    `reports`. A task whose parent is not listed (removed) is at the top, and so is one caught in a loop of
    parents (a hand-edited registry), once: no task is dropped or shown twice."""
    by_name = {item.task.name: item for item in reports}
    children = _children(reports)
    shown: set[str] = set()
    order: list[tuple[int, TaskReport]] = []
    placed = {name for names in children.values() for name in names}
    roots = [item for item in reports if item.task.name not in placed]
    for start in [*roots, *reports]:
        stack = [(0, start)]
        while stack:
            depth, item = stack.pop()
            if item.task.name in shown:
                continue
            shown.add(item.task.name)
            order.append((depth, item))
            stack.extend((depth + 1, by_name[name]) for name in reversed(children.get(item.task.name, [])))
    return order


def group_order(reports: Sequence[TaskReport]) -> list[TaskReport]:
    """`reports` with each group's members together, where its first member is, in the order of their numbers
    (NAME-2 before NAME-10): a member restored later is still shown with its group."""
    members: dict[str, list[TaskReport]] = {}
    for item in reports:
        if item.task.group is not None:
            members.setdefault(item.task.group, []).append(item)
    order: list[TaskReport] = []
    for item in reports:
        group = item.task.group
        if group is None:
            order.append(item)
        elif members[group][0] is item:
            order.extend(sorted(members[group], key=lambda member: _natural(member.task.name)))
    return order


def _natural(name: str) -> list[tuple[int, str]]:
    """A sort key that reads the numbers in a name as numbers: NAME-2 before NAME-10."""
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", name)]


def columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A plain table: the header and each row, cells made one line and padded to their column's width."""
    cells = [[clean_line(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]


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


def _unread_mark(item: TaskReport) -> str:
    """` ✉2` after a parent's name: its sub-tasks' entries that `mux inbox` has not shown yet."""
    return f" ✉{item.inbox_unread}" if item.inbox_unread else ""


def _conflicts_note(item: TaskReport) -> str:
    """`; conflicts: main (2 files), api (1 file)`, or nothing."""
    parts = []
    for clash in item.conflicts:
        paths = clash.get("paths")
        count = len(paths) if isinstance(paths, list) else 0
        parts.append(f"{clash.get('with')} ({count} file{'s' if count != 1 else ''})")
    return f"; conflicts: {', '.join(parts)}" if parts else ""


_INDENT = "  "


def table(reports: Sequence[TaskReport], colour: bool) -> str:
    header = ("NAME", "AGENT", "STATE", "CHANGES", "COMMITS", "AGE", "ACTIVE", "REASON")
    now = time.time()
    ordered = family_order(group_order(reports))
    rows = [
        tuple(
            clean_line(cell)  # a REASON quotes a repo's pattern, an agent's hook; a conflict names a branch
            for cell in (
                _INDENT * depth + item.task.name + _unread_mark(item),  # a sub-task under its parent
                item.task.agent,
                item.status.state.value,
                _changes_cell(item.changes),
                _commits_cell(item.changes),
                age(iso_epoch(item.task.created), now),
                age(item.status.last_activity, now),
                item.status.reason + _conflicts_note(item),
            )
        )
        for depth, item in ordered
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True)).rstrip()]
    for (_depth, item), row in zip(ordered, rows, strict=True):
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        if colour:
            code = _STATE_COLOURS[item.status.state]
            cells[2] = f"\x1b[{code}m{cells[2]}\x1b[0m"
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# One character per state, the same the monitor puts in window names (monitor.MARKS): `waiting` must stand out.
STATE_MARKS = {
    State.WAITING: "?",
    State.WORKING: "⚙",
    State.IDLE: "✓",
    State.STARTING: "…",
    State.EXITED: "✗",
    State.MISSING: "✗",
    State.UNKNOWN: "·",
}
# Order of the counts on the status line: what needs the user first.
_STATUS_ORDER = (State.WAITING, State.WORKING, State.STARTING, State.IDLE, State.EXITED, State.MISSING, State.UNKNOWN)
# tmux styles for the status line (`#[...]` is how tmux colours text in `status-right`).
_TMUX_STYLES = {State.WAITING: "fg=red,bold", State.WORKING: "fg=yellow", State.IDLE: "fg=green"}
_MAX_WAITING_NAMES = 3


def state_counts(reports: Sequence[TaskReport]) -> dict[str, int]:
    counts = {state.value: 0 for state in _STATUS_ORDER}
    for item in reports:
        counts[item.status.state.value] += 1
    return counts


def waiting_names(reports: Sequence[TaskReport]) -> list[str]:
    return [item.task.name for item in reports if item.status.state is State.WAITING]


def status_line(reports: Sequence[TaskReport], tmux_styles: bool = False) -> str:
    """One compact line for tmux's `status-right`: `?2 login-fix,api ●1 ✓3`; empty without tasks.

    tmux reads `#[...]` in the output of `#(mux status-line)` as a style and swallows `#(...)`: a task's text has
    its `#` doubled (shown as one `#`) and its escapes removed, whatever the registry holds.
    """
    counts = state_counts(reports)
    parts: list[str] = []
    for state in _STATUS_ORDER:
        count = counts[state.value]
        if not count:
            continue
        text = f"{STATE_MARKS[state]}{count}"
        if state is State.WAITING:
            names = waiting_names(reports)
            shown = ",".join(clean_line(name).replace("#", "##") for name in names[:_MAX_WAITING_NAMES])
            more = len(names) - _MAX_WAITING_NAMES
            text += f" {shown}" + (f",+{more}" if more > 0 else "")
        style = _TMUX_STYLES.get(state) if tmux_styles else None
        parts.append(f"#[{style}]{text}#[default]" if style else text)
    return " ".join(parts)


class ProgressLine:
    """Progress of a long step on stderr: on a terminal, one line redrawn in place, its spinner turning while git
    works; elsewhere (logs, CI) only each set-up step, once, so nothing floods a log file."""

    _FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    _SPIN_EVERY = 0.1

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty() and os.environ.get("TERM") != "dumb"
        self._frame = 0
        self._text = ""
        self._shown = False
        self._last = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._spinner: threading.Thread | None = None

    def __call__(self, text: str) -> None:
        text = clean_text(text)
        if self._tty:
            with self._lock:
                self._text = text
            self._draw()
            if self._spinner is None:
                self._spinner = threading.Thread(target=self._spin, name="mux-progress", daemon=True)
                self._spinner.start()
            return
        # Without a terminal: one line per set-up step (the elapsed time in brackets changes every poll).
        head = text.rsplit(" (", 1)[0]
        if head != self._last and head.startswith("setting up"):
            self._stream.write(f"mux: {head}\n")
            self._stream.flush()
        self._last = head

    def _spin(self) -> None:
        while not self._stop.wait(self._SPIN_EVERY):
            self._draw()

    def _draw(self) -> None:
        import shutil  # imports bz2 and lzma: only commands that show progress pay for it

        width = shutil.get_terminal_size((80, 24)).columns - 3
        with self._lock:
            if self._stop.is_set():
                return
            self._frame = (self._frame + 1) % len(self._FRAMES)
            self._stream.write(f"\r\x1b[K{self._FRAMES[self._frame]} {self._text[:width]}")
            self._stream.flush()
            self._shown = True

    def close(self) -> None:
        self._stop.set()
        if self._spinner is not None:
            self._spinner.join()
        with self._lock:
            if self._shown:
                self._stream.write("\r\x1b[K")
                self._stream.flush()
                self._shown = False


def stderr_line(message: str) -> None:
    # One line, as the README promises, even when the message quotes input holding a newline (`--base $'a\nb'`).
    line = clean_text(message).replace("\n", "\\n")
    sys.stderr.write(f"mux: {line}\n")
