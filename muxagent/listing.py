"""What `mux ls` and `mux status-line` print, from the rows of `mux ls --json`: the table, the status line, the
cleaning of every text that reaches a terminal.

The one renderer of both paths: the CLI's (render.py turns reports into rows and calls it) and the fast path that
answers `ls` from the live view before the CLI is imported (muxagent/fastpath.py). So it imports only cheap stdlib
modules: no dataclasses, no enum, no model (dataclasses alone cost that path more than the rest of its work).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

# One row of `mux ls --json` (a contract: shared/DESIGN.md), family fields included.
Row = Mapping[str, Any]

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

# By the state's value (model.State is a StrEnum: a State finds its entry too).
_STATE_COLOURS = {
    "working": "33",
    "waiting": "1;31",
    "idle": "32",
    "exited": "2",
    "missing": "35",
    "unknown": "35",
    "starting": "36",
}
# One character per state, the same the monitor puts in window names: `waiting` must stand out.
STATE_MARKS = {
    "waiting": "?",
    "working": "⚙",
    "idle": "✓",
    "starting": "…",
    "exited": "✗",
    "missing": "✗",
    "unknown": "·",
}
# Order of the counts on the status line: what needs the user first.
_STATUS_ORDER = ("waiting", "working", "starting", "idle", "exited", "missing", "unknown")
# tmux styles for the status line (`#[...]` is how tmux colours text in `status-right`).
_TMUX_STYLES = {"waiting": "fg=red,bold", "working": "fg=yellow", "idle": "fg=green"}
_MAX_WAITING_NAMES = 3
_INDENT = "  "
NO_TASKS = "no tasks (start one with `mux new NAME`)"


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


def iso_epoch(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def age(epoch: float | None, now: float | None = None) -> str:
    if epoch is None:
        return "-"
    seconds = max(0, int((now or time.time()) - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def family_fields(parents: Sequence[tuple[str, str | None]]) -> dict[str, dict[str, Any]]:
    """`mux ls --json`'s `parent` (while it is a listed task, else null) and `children` of each task, by name, from
    each listed task's (name, parent) in the order listed."""
    listed = {name for name, _parent in parents}
    children: dict[str, list[str]] = {}
    for name, parent in parents:
        if parent is not None and parent in listed and parent != name:
            children.setdefault(parent, []).append(name)
    return {
        name: {"parent": parent if parent in listed else None, "children": children.get(name, [])}
        for name, parent in parents
    }


def family_order(rows: Sequence[Row]) -> list[tuple[int, Row]]:
    """(depth, row): every task after its parent, grandchildren after their parent, each level in the order of
    `rows`. A task whose parent is not listed (removed) is at the top, and so is one caught in a loop of parents (a
    hand-edited registry), once: no task is dropped or shown twice."""
    by_name = {row["name"]: row for row in rows}
    shown: set[str] = set()
    order: list[tuple[int, Row]] = []
    placed = {name for row in rows for name in row["children"]}
    roots = [row for row in rows if row["name"] not in placed]
    for start in [*roots, *rows]:
        stack = [(0, start)]
        while stack:
            depth, row = stack.pop()
            if row["name"] in shown:
                continue
            shown.add(row["name"])
            order.append((depth, row))
            stack.extend((depth + 1, by_name[name]) for name in reversed(row["children"]))
    return order


def group_order(rows: Sequence[Row]) -> list[Row]:
    """`rows` with each group's members together, where its first member is, in the order of their numbers (NAME-2
    before NAME-10): a member restored later is still shown with its group."""
    members: dict[str, list[Row]] = {}
    for row in rows:
        if row["group"] is not None:
            members.setdefault(row["group"], []).append(row)
    order: list[Row] = []
    for row in rows:
        group = row["group"]
        if group is None:
            order.append(row)
        elif members[group][0] is row:
            order.extend(sorted(members[group], key=lambda member: _natural(member["name"])))
    return order


def _natural(name: str) -> list[tuple[int, str]]:
    """A sort key that reads the numbers in a name as numbers: NAME-2 before NAME-10."""
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", name)]


def _changes_cell(row: Row) -> str:
    if row["dirty_files"] is None:
        return "?"
    if not (row["added_lines"] or row["removed_lines"] or row["dirty_files"]):
        return "-"
    return f"+{row['added_lines']} -{row['removed_lines']} {row['dirty_files']}f"


def _commits_cell(row: Row) -> str:
    return "?" if row["ahead"] is None else f"↑{row['ahead']} ↓{row['behind']}"


def sandbox_label(yolo: bool, network: str | None) -> str:
    """How `ls` and `new` say a task is sandboxed: `sandbox`, `yolo` (in one), `offline` added without a network."""
    return ("yolo" if yolo else "sandbox") + (", offline" if network == "none" else "")


def _sandbox_mark(row: Row) -> str:
    # .get: a view written by an earlier mux has no such keys.
    return f" [{sandbox_label(row.get('yolo') is True, row.get('sandbox_network'))}]" if row.get("sandbox") else ""


def _unread_mark(row: Row) -> str:
    """` ✉2` after a parent's name: its sub-tasks' entries that `mux inbox` has not shown yet."""
    return f" ✉{row['inbox_unread']}" if row["inbox_unread"] else ""


def _conflicts_note(row: Row) -> str:
    """`; conflicts: main (2 files), api (1 file)`, or nothing."""
    parts = []
    for clash in row["conflicts"]:
        paths = clash.get("paths")
        count = len(paths) if isinstance(paths, list) else 0
        parts.append(f"{clash.get('with')} ({count} file{'s' if count != 1 else ''})")
    return f"; conflicts: {', '.join(parts)}" if parts else ""


def table(rows: Sequence[Row], active: Mapping[str, float | None], colour: bool) -> str:
    """The table of `mux ls`; `active`: each task's last pane activity (epoch seconds), which its row has only to
    the second."""
    # A HOST column only once a task lives on another host: `-` marks this machine's.
    hosted = any(row.get("host") for row in rows)
    header = ("NAME", *(("HOST",) if hosted else ()), "AGENT", "STATE", "CHANGES", "COMMITS", "AGE", "ACTIVE", "REASON")
    state_column = header.index("STATE")
    now = time.time()
    ordered = family_order(group_order(rows))
    cells = [
        tuple(
            clean_line(cell)  # a REASON quotes a repo's pattern, an agent's hook; a conflict names a branch
            for cell in (
                _INDENT * depth + row["name"] + _unread_mark(row),  # a sub-task under its parent
                *((row.get("host") or "-",) if hosted else ()),
                row["agent"] + _sandbox_mark(row),
                row["state"],
                _changes_cell(row),
                _commits_cell(row),
                age(iso_epoch(row["created"]), now),
                age(active.get(row["name"]), now),
                row["reason"] + _conflicts_note(row),
            )
        )
        for depth, row in ordered
    ]
    widths = [max(len(str(r[i])) for r in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True)).rstrip()]
    for (_depth, row), line in zip(ordered, cells, strict=True):
        padded = [cell.ljust(w) for cell, w in zip(line, widths, strict=True)]
        if colour:
            padded[state_column] = f"\x1b[{_STATE_COLOURS[row['state']]}m{padded[state_column]}\x1b[0m"
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def ls_text(rows: Sequence[Row], active: Mapping[str, float | None], colour: bool) -> str:
    """What `mux ls` prints."""
    return table(rows, active, colour) if rows else NO_TASKS


def state_counts(rows: Sequence[Row]) -> dict[str, int]:
    counts = dict.fromkeys(_STATUS_ORDER, 0)
    for row in rows:
        counts[row["state"]] += 1
    return counts


def waiting_names(rows: Sequence[Row]) -> list[str]:
    return [row["name"] for row in rows if row["state"] == "waiting"]


def status_line(rows: Sequence[Row], tmux_styles: bool = False) -> str:
    """One compact line for tmux's `status-right`: `?2 login-fix,api ●1 ✓3`; empty without tasks.

    tmux reads `#[...]` in the output of `#(mux status-line)` as a style and swallows `#(...)`: a task's text has
    its `#` doubled (shown as one `#`) and its escapes removed, whatever the registry holds.
    """
    counts = state_counts(rows)
    parts: list[str] = []
    for state in _STATUS_ORDER:
        count = counts[state]
        if not count:
            continue
        text = f"{STATE_MARKS[state]}{count}"
        if state == "waiting":
            names = waiting_names(rows)
            shown = ",".join(clean_line(name).replace("#", "##") for name in names[:_MAX_WAITING_NAMES])
            more = len(names) - _MAX_WAITING_NAMES
            text += f" {shown}" + (f",+{more}" if more > 0 else "")
        style = _TMUX_STYLES.get(state) if tmux_styles else None
        parts.append(f"#[{style}]{text}#[default]" if style else text)
    return " ".join(parts)


def status_json(rows: Sequence[Row]) -> dict[str, Any]:
    """What `mux status-line --json` prints."""
    return {"counts": state_counts(rows), "waiting": waiting_names(rows), "line": status_line(rows)}
