"""Turning results into what the user reads: tables, status lines, cleaned-up screens."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from muxagent import listing
from muxagent.listing import STATE_MARKS as STATE_MARKS
from muxagent.listing import age as age
from muxagent.listing import clean_line as clean_line
from muxagent.listing import clean_text as clean_text
from muxagent.listing import use_colour as use_colour
from muxagent.model import TaskReport


def rows(reports: Sequence[TaskReport]) -> list[dict[str, Any]]:
    """The rows of `mux ls --json`: each report's own, with its family fields (`parent`, `children`)."""
    family = listing.family_fields([(item.task.name, item.task.parent) for item in reports])
    return [{**item.to_json(), **family[item.task.name]} for item in reports]


def table(reports: Sequence[TaskReport], colour: bool) -> str:
    return listing.table(rows(reports), _activity(reports), colour)


def ls_text(reports: Sequence[TaskReport], colour: bool) -> str:
    """What `mux ls` prints."""
    return listing.ls_text(rows(reports), _activity(reports), colour)


def _activity(reports: Sequence[TaskReport]) -> dict[str, float | None]:
    return {item.task.name: item.status.last_activity for item in reports}


def _states(reports: Sequence[TaskReport]) -> list[dict[str, str]]:
    return [{"name": item.task.name, "state": item.status.state.value} for item in reports]


def state_counts(reports: Sequence[TaskReport]) -> dict[str, int]:
    return listing.state_counts(_states(reports))


def waiting_names(reports: Sequence[TaskReport]) -> list[str]:
    return listing.waiting_names(_states(reports))


def status_line(reports: Sequence[TaskReport], tmux_styles: bool = False) -> str:
    """One compact line for tmux's `status-right` (listing.status_line)."""
    return listing.status_line(_states(reports), tmux_styles=tmux_styles)


def status_json(reports: Sequence[TaskReport]) -> dict[str, Any]:
    return listing.status_json(_states(reports))


def columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A plain table: the header and each row, cells made one line and padded to their column's width."""
    cells = [[clean_line(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]


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
