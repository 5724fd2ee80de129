#!/usr/bin/env python3
"""A folder-trust menu drawn like Claude Code's: arrow keys move the focus, Enter chooses.

With `--drop-first-enter` the first Enter is lost, as a busy TUI sometimes loses a key."""

from __future__ import annotations

import sys
import termios
import time
import tty

OPTIONS = ["No, exit", "Yes, I trust this folder"]


def draw(focus: int) -> None:
    sys.stdout.write("\x1b[H\x1b[2JIs this a project you created or one you trust?\r\n")
    for index, option in enumerate(OPTIONS):
        sys.stdout.write(("❯ " if index == focus else "  ") + option + "\r\n")
    sys.stdout.write("Enter to confirm · Esc to cancel\r\n")
    sys.stdout.flush()


def main() -> None:
    old = termios.tcgetattr(0)
    tty.setraw(0)
    focus = 0
    enters_to_drop = 1 if "--drop-first-enter" in sys.argv else 0
    try:
        draw(focus)
        while True:
            key = sys.stdin.read(1)
            if key == "\x1b":
                seq = sys.stdin.read(2)
                focus = (focus + (1 if seq == "[B" else -1)) % len(OPTIONS)
                draw(focus)
            elif key in "\r\n":
                if enters_to_drop:
                    enters_to_drop -= 1
                    continue
                break
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, old)
    if focus == 0:
        sys.exit(1)
    print("\x1b[H\x1b[2Jtrusted; ready", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main()
