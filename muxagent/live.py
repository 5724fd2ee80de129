"""`mux ls --watch`: the task table kept on screen, redrawn when hooks or the registry report a change."""

from __future__ import annotations

import time
from typing import TextIO

from muxagent import render
from muxagent.commands import context, report
from muxagent.monitor.watch import ChangeWatcher

# Screens and pane activity change without touching any file: look again at least this often.
REFRESH = 1.0


def watch_table(ctx: context.Context, out: TextIO) -> None:
    colour = render.use_colour(out)
    ctx.store.root.mkdir(parents=True, exist_ok=True)
    try:
        with ChangeWatcher() as watcher:
            watcher.watch("state", ctx.store.root)
            while True:
                reports = report.shown_reports(ctx)
                body = render.table(reports, colour) if reports else "no tasks"
                stamp = time.strftime("%H:%M:%S")
                if out.isatty():
                    out.write("\x1b[H\x1b[2J")
                out.write(f"{body}\n-- {stamp}, Ctrl-C to stop\n")
                out.flush()
                watcher.wait(REFRESH)
    except KeyboardInterrupt:
        return
