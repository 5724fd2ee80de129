#!/usr/bin/env python3
"""A small program that behaves like a coding agent, driven by lines typed into its pane.

Commands it understands (one per line):
  write PATH TEXT   write TEXT to PATH (relative to the working directory), then say so
  commit PATH TEXT  the same, then commit PATH on the current branch
  ask               ask a yes/no question and wait for the answer
  busy SECONDS      print a line every 0.1 s for that long
  interrupted SECONDS  a turn cut short, as Esc does in Claude Code: no Stop hook, then the prompt redrawn every
                    0.5 s for that long
  cut-short         a turn cut short too (no Stop hook), told as Claude Code 2.1.330 also tells it: its status
                    file (`~/.claude/sessions/<pid>.json`) says busy, then idle
  exit CODE         exit with that status
  resume ID         switch to the conversation ID, as Claude Code's /resume does
anything else is echoed back as "got: ..." (so tests can check text arrives verbatim).
Arguments on its own command line are treated as a first prompt. With `--settings FILE` (what mux passes Claude
Code) it runs the hook commands found there, as Claude does: UserPromptSubmit when a prompt arrives,
PermissionRequest before asking, Stop when the turn is over, with the event as JSON on stdin, naming its
conversation (`session_id`), with the prompt (`prompt`) and its last message (`last_assistant_message`) as Claude
gives them. Like Claude it keeps each conversation under `~/.claude/projects/<cwd>/<id>.jsonl`
(a line per turn, with the `cwd`), takes `--resume ID` (refused, exit 1, for a conversation of another directory)
or `--continue` (the latest of this directory), and shows the turns of the conversation it resumed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

HOOKS: dict[str, list[str]] = {}
SESSION = {"id": str(uuid.uuid4())}


def fire(event: str, **extra: str) -> None:
    payload = {"hook_event_name": event, "session_id": SESSION["id"], "cwd": os.getcwd(), **extra}
    for command in HOOKS.get(event, []):
        subprocess.run(command, shell=True, input=json.dumps(payload).encode(), check=False)


def conversations() -> Path:
    config = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    return config / "projects" / re.sub(r"[^A-Za-z0-9]", "-", os.getcwd())


def resume(args: list[str]) -> list[str]:
    """Take `--resume ID` or `--continue` off the arguments and show the conversation's earlier turns."""
    if args[:1] == ["--continue"]:
        found = sorted(conversations().glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
        if found:
            SESSION["id"] = found[-1].stem
            print(f"continued session {SESSION['id']}")
        args = args[1:]
    elif args[:1] == ["--resume"]:
        if not (conversations() / f"{args[1]}.jsonl").exists():
            print(f"No conversation found with session ID: {args[1]}", flush=True)
            sys.exit(1)
        SESSION["id"] = args[1]
        print(f"resumed session {SESSION['id']}")
        args = args[2:]
    transcript = conversations() / f"{SESSION['id']}.jsonl"
    if transcript.exists():
        for line in transcript.read_text().splitlines():
            print(f"earlier: {json.loads(line)['text']}")
    return args


def remember(line: str) -> None:
    # A conversation switched to from another directory stays in that directory's folder, as Claude's does.
    kept = list(conversations().parent.glob(f"*/{SESSION['id']}.jsonl"))
    path = kept[0] if kept else conversations() / f"{SESSION['id']}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"cwd": os.getcwd(), "text": line}) + "\n")


def load_settings(args: list[str]) -> list[str]:
    if args[:1] != ["--settings"]:
        return args
    with open(args[1], encoding="utf-8") as f:
        settings = json.load(f)
    for event, entries in settings.get("hooks", {}).items():
        HOOKS[event] = [hook["command"] for entry in entries for hook in entry["hooks"]]
    return args[2:]


def claude_status(status: str) -> None:
    """Claude Code's own status file: what mux reads beside the hooks (muxagent/status/claude_status_file.py)."""
    with open(f"/proc/{os.getpid()}/stat", encoding="ascii") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    folder = os.path.join(os.environ.get("CLAUDE_CONFIG_DIR") or os.path.expanduser("~/.claude"), "sessions")
    os.makedirs(folder, exist_ok=True)
    record = {"pid": os.getpid(), "procStart": start, "status": status, "statusUpdatedAt": int(time.time() * 1000)}
    with open(os.path.join(folder, f".{os.getpid()}.tmp"), "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(os.path.join(folder, f".{os.getpid()}.tmp"), os.path.join(folder, f"{os.getpid()}.json"))


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
    elif word == "resume":
        SESSION["id"] = rest
        print(f"resumed session {rest}")
    elif word == "exit":
        sys.exit(int(rest or "0"))
    elif word == "cut-short":
        claude_status("busy")
        print("working... 1", flush=True)
        time.sleep(0.3)
        claude_status("idle")
        print("Interrupted")
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
    fire("UserPromptSubmit", prompt=line)
    if HOOKS:  # a conversation is kept the way Claude Code keeps it, for the Claude-like profiles
        remember(line)
    word, _, rest = line.partition(" ")
    if word == "interrupted":
        interrupted(float(rest or "1"))
        return
    handle(line)
    if line != "cut-short":
        fire("Stop", last_assistant_message=f"finished: {line}")


def main() -> None:
    args = load_settings(sys.argv[1:])
    if HOOKS:
        args = resume(args)
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
