#!/usr/bin/env python3
"""A small program that behaves like a coding agent, driven by lines typed into its pane.

Commands it understands (one per line):
  write PATH TEXT   write TEXT to PATH (relative to the working directory), then say so
  commit PATH TEXT  the same, then commit PATH on the current branch
  ask               ask a yes/no question and wait for the answer
  busy SECONDS      print a line every 0.1 s for that long
  interrupted SECONDS  a turn cut short, as Esc does in Claude Code: no Stop hook, then the prompt redrawn every
                    0.5 s for that long
  exit CODE         exit with that status
anything else is echoed back as "got: ..." (so tests can check text arrives verbatim).
Arguments on its own command line are treated as a first prompt. With `--settings FILE` (what mux passes Claude
Code) it runs the hook commands found there, as Claude does: UserPromptSubmit when a prompt arrives,
PermissionRequest before asking, Stop when the turn is over, with the event as JSON on stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

HOOKS: dict[str, list[str]] = {}


def fire(event: str) -> None:
    for command in HOOKS.get(event, []):
        subprocess.run(command, shell=True, input=json.dumps({"hook_event_name": event}).encode(), check=False)


def load_settings(args: list[str]) -> list[str]:
    if args[:1] != ["--settings"]:
        return args
    with open(args[1], encoding="utf-8") as f:
        settings = json.load(f)
    for event, entries in settings.get("hooks", {}).items():
        HOOKS[event] = [hook["command"] for entry in entries for hook in entry["hooks"]]
    return args[2:]


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
    elif word == "commit":
        handle(f"write {rest}")
        path = rest.partition(" ")[0]
        subprocess.run(["git", "add", "--", path], check=True)
        subprocess.run(["git", "commit", "-q", "-m", f"fake agent: {path}"], check=True)
        print(f"committed {path}")
    elif word == "ask":
        fire("PermissionRequest")
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


def interrupted(seconds: float) -> None:
    print("working... 1")
    print("Interrupted")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sys.stdout.write("\rfake> ")
        sys.stdout.flush()
        time.sleep(0.5)


def turn(line: str) -> None:
    fire("UserPromptSubmit")
    word, _, rest = line.partition(" ")
    if word == "interrupted":
        interrupted(float(rest or "1"))
        return
    handle(line)
    fire("Stop")


def main() -> None:
    args = load_settings(sys.argv[1:])
    print(f"fake agent ready in {os.getcwd()} task={os.environ.get('MUX_TASK')} port={os.environ.get('MUX_PORT')}")
    if args:
        turn(" ".join(args))
    while True:
        prompt()
        line = sys.stdin.readline()
        if not line:
            return
        turn(line.rstrip("\n"))


if __name__ == "__main__":
    main()
