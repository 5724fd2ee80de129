#!/usr/bin/env python3
"""A small program that behaves like a coding agent, driven by lines typed into its pane.

Commands it understands (one per line):
  write PATH TEXT   write TEXT to PATH (relative to the working directory), then say so
  ask               ask a yes/no question and wait for the answer
  busy SECONDS      print a line every 0.1 s for that long
  exit CODE         exit with that status
anything else is echoed back as "got: ..." (so tests can check text arrives verbatim).
Arguments on its own command line are treated as a first prompt.
"""

from __future__ import annotations

import os
import sys
import time


def prompt() -> None:
    sys.stdout.write("fake> ")
    sys.stdout.flush()


def handle(line: str) -> None:
    word, _, rest = line.partition(" ")
    if word == "write":
        path, _, text = rest.partition(" ")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        print(f"wrote {path}")
    elif word == "ask":
        sys.stdout.write("Apply the change? (y/n) ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip()
        print(f"answer: {answer}")
    elif word == "busy":
        end = time.monotonic() + float(rest or "1")
        n = 0
        while time.monotonic() < end:
            n += 1
            print(f"working... {n}", flush=True)
            time.sleep(0.1)
        print("done")
    elif word == "exit":
        sys.exit(int(rest or "0"))
    else:
        print(f"got: {line}")


def main() -> None:
    print(f"fake agent ready in {os.getcwd()} task={os.environ.get('MUX_TASK')} port={os.environ.get('MUX_PORT')}")
    if len(sys.argv) > 1:
        handle(" ".join(sys.argv[1:]))
    while True:
        prompt()
        line = sys.stdin.readline()
        if not line:
            return
        handle(line.rstrip("\n"))


if __name__ == "__main__":
    main()
