"""`mux ls`, `mux ls --json` and `mux status-line` answered from the live view, before the CLI is imported.

While the monitor runs, what these print is in the view it publishes (state/view.py): each task's row of
`mux ls --json`. So `muxagent.__main__` asks here first, and this module prints the same bytes the CLI would,
from the same rows through the same renderer (listing.py), at the cost of starting Python and reading three small
files: no typer, no model, no dataclasses, no pathlib, no git or tmux process. On any doubt it prints nothing and
says so, and the full CLI answers: no view the CLI would not take (view_file.usable, the one reading of it), an
interrupted command to finish (the CLI's repo opening does that), a registry the CLI would rebuild or adopt into,
a repository found otherwise than git would surely find it, an option it does not know.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from muxagent import listing
from muxagent.state import view_file

# Mirrors of the state dir's layout (store.py, intents.py, inbox.py; tests pin them equal): importing those modules
# costs this path the model and dataclasses.
STATE_DIR = "mux"
INTENTS_DIR = "intents"
INBOX_DIR = "inbox"
# Variables that change where git looks for a repository, which this module's search does not follow: with one
# set, git decides (the variables a git hook exports, git/runner.py's REPO_ENV, are dropped by mux's git runner).
_DISCOVERY_ENV = ("GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM")

# argv after `mux` -> (command, options) for the forms answered here; the CLI parses every other one.
_LS_OPTIONS = frozenset({"--json"})
_STATUS_OPTIONS = frozenset({"--json", "--tmux-styles"})


def main_fast(argv: Sequence[str]) -> bool:
    """Print the answer to `argv` (sys.argv) and return True, or print nothing and return False: the CLI answers."""
    words = list(argv[1:])
    if not words or words[0] not in ("ls", "status-line"):
        return False
    options = set(words[1:])
    allowed = _LS_OPTIONS if words[0] == "ls" else _STATUS_OPTIONS
    if len(options) != len(words) - 1 or not options <= allowed:
        return False  # `ls --watch`, `ls --help`, a repeated or unknown option: the CLI's to parse
    try:
        out = answer(words[0], options, os.getcwd())
    except Exception:  # whatever went wrong, the CLI does the full work and says what it finds
        return False
    if out is None:
        return False
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")  # as cli.main: a path that is not UTF-8 prints its bytes
    sys.stdout.write(out)
    sys.stdout.flush()
    return True


def answer(command: str, options: set[str], cwd: str) -> str | None:
    """What `mux COMMAND OPTIONS` run in `cwd` prints, from the live view; None when the CLI must answer."""
    common = common_dir(cwd)
    if common is None:
        return None
    root = os.path.join(common, STATE_DIR)
    if _interrupted(root):
        return None
    registry = _registry(root)
    if registry is None:
        return None
    names, generation, stamp = registry
    # Read after the registry: a view made of the very file just read, by a monitor alive after it was read.
    found = view_file.usable(root, generation, stamp, time.time())
    if found is None or list(found["tasks"]) != names:
        return None
    entries = found["tasks"].values()
    rows = [entry["row"] for entry in entries]
    if command == "status-line":
        if "--json" in options:
            return json.dumps(listing.status_json(rows), indent=2) + "\n"
        return listing.status_line(rows, tmux_styles="--tmux-styles" in options) + "\n"
    unread = _unread(root, rows)
    rows = [{**row, "inbox_unread": unread.get(row["name"], 0)} for row in rows]
    if "--json" in options:
        return json.dumps(rows, indent=2) + "\n"
    active = {entry["row"]["name"]: entry["last_activity"] for entry in entries}
    return listing.ls_text(rows, active, listing.use_colour(sys.stdout)) + "\n"


def common_dir(cwd: str) -> str | None:
    """The git common dir of the repository `cwd` is in, where git would surely find the same one; else None.

    Walks up to the first `.git` (a folder, or a file naming one, as in a linked worktree), as git does, without
    starting git or importing subprocess and pathlib (each costs more than the rest of this path). Whatever git
    might see otherwise is a doubt: a variable that moves git's search, a folder another user owns (git's
    safe.directory), a file system boundary, a `cwd` inside a git dir."""
    if any(os.environ.get(name) for name in _DISCOVERY_ENV) or ".git" in cwd.split(os.sep):
        return None
    here = cwd
    device = os.stat(here).st_dev
    while True:
        top = os.stat(here)
        if top.st_dev != device:
            return None
        dot_git = os.path.join(here, ".git")
        if os.path.isdir(dot_git):
            git_dir = dot_git
            break
        if os.path.isfile(dot_git):
            with open(dot_git, encoding="utf-8") as file:
                text = file.read().strip()
            if not text.startswith("gitdir:"):
                return None
            git_dir = os.path.join(here, text.removeprefix("gitdir:").strip())
            break
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent
    if top.st_uid != os.geteuid() or os.stat(git_dir).st_uid != os.geteuid():
        return None
    if not os.path.isfile(os.path.join(git_dir, "HEAD")):
        return None
    try:
        with open(os.path.join(git_dir, "commondir"), encoding="utf-8") as file:
            common = os.path.normpath(os.path.join(git_dir, file.read().strip()))
    except FileNotFoundError:
        common = git_dir
    # Only the plain layout, a main checkout holding its `.git` folder: a `--separate-git-dir` repo or a bare one
    # is the CLI's to judge (it refuses a worktree whose main checkout it cannot find, and a bare repository;
    # test_an_agent_runs_mux_from_its_worktree_of_a_separate_git_dir_repo caught the fast path answering there).
    if os.path.basename(common) != ".git" or not os.path.isfile(os.path.join(common, "index")):
        return None
    return common


def _interrupted(root: str) -> bool:
    """Whether a command's intent is on record: the CLI finishes or rolls it back before it lists anything."""
    try:
        return any(name.endswith(".json") for name in os.listdir(os.path.join(root, INTENTS_DIR)))
    except FileNotFoundError:
        return False


def _registry(root: str) -> tuple[list[str], str, view_file.Stamp] | None:
    """The registry's task names in the order `mux ls` lists them, with its generation and its file's stamp; None
    for a registry the CLI would rebuild, adopt worktrees into or refuse (no file, no tasks, no generation)."""
    with open(os.path.join(root, view_file.TASKS_FILE), "rb") as file:
        data = file.read()
        stamp = view_file.stamp_of(os.fstat(file.fileno()))
    doc = json.loads(data)
    tasks, generation = doc["tasks"], doc["generation"]
    if not isinstance(generation, str) or not isinstance(tasks, dict) or not tasks:
        return None
    ordered = sorted(tasks.items(), key=lambda item: (item[1]["created"], item[0]))
    return [name for name, _record in ordered], generation, stamp


def _unread(root: str, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Task -> its unread inbox entries, read now as the CLI does; the inbox module only where there is an inbox."""
    try:
        kept = {name.removesuffix(".jsonl") for name in os.listdir(os.path.join(root, INBOX_DIR))}
    except FileNotFoundError:
        return {}
    created = {row["name"]: row["created"] for row in rows if row["name"] in kept}
    if not created:
        return {}
    from pathlib import Path

    from muxagent.state import inbox

    return inbox.unread_counts(Path(root), created)
