"""The fast path TAB takes: `mux _tasks` prints the repo's task names, one a line, for the completion scripts.

`muxagent.__main__` answers it before the CLI is imported, so it must stay cheap: this module imports nothing
but a few small stdlib modules and the git runner (no typer, GitPython or rich, not even dataclasses), runs one
`git rev-parse`, and reads `tasks.json` itself.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# The git runner: ~11 ms of imports (median of 7 `-X importtime` runs on a loaded machine), nearly all of it
# pathlib and subprocess, which TAB's one git call needs anyway.
from muxagent.git.runner import ANY_EXIT, run_git

if TYPE_CHECKING:
    from collections.abc import Sequence

# The hidden commands every completion script runs on TAB for the live task names and the recorded host names.
TASKS_COMMAND = "_tasks"
HOSTS_COMMAND = "_hosts"

# Mirrors of store.py and naming.py constants (tests pin them equal): importing those modules would cost the
# fast path about 30 ms of imports (dataclasses, concurrent.futures, logging, tempfile, the model).
_STORE_DIR = "mux"
_TASKS_FILE = "tasks.json"
# The task name rule of naming.py: a name from a hand-edited or foreign registry that breaks it could carry
# spaces, newlines or glob characters into the shell's completion list, so it is left out.
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A TAB must never hang on a stuck filesystem or git.
_GIT_TIMEOUT = 2.0


def task_names(cwd: str | os.PathLike[str]) -> list[str]:
    """The names of the repo's tasks, sorted; [] when there is no repo, no registry, or anything fails.

    Read-only and quiet: it never repairs a damaged registry (the next real mux command does) and never writes
    to stderr, since its output lands in the middle of the user's command line.
    """
    try:
        root = _common_dir(cwd)
        if root is None:
            return []
        with open(os.path.join(root, _STORE_DIR, _TASKS_FILE), "rb") as file:
            doc = json.loads(file.read())
        tasks = doc.get("tasks") if isinstance(doc, dict) else None
        if not isinstance(tasks, dict):
            return []
        return sorted(name for name in tasks if _TASK_NAME.fullmatch(name) and ".." not in name)
    except Exception:  # completion offers nothing rather than an error in the middle of a command line
        return []


def host_names() -> list[str]:
    """The names of the hosts in hosts.toml (hosts.py's file), sorted; [] when there is none or anything fails."""
    try:
        import tomllib  # only here: TAB on a task name does not pay for it

        xdg = os.environ.get("XDG_CONFIG_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".config")
        with open(os.path.join(base, "mux", "hosts.toml"), "rb") as file:
            table = tomllib.load(file).get("hosts")
        if not isinstance(table, dict):
            return []
        return sorted(name for name in table if _TASK_NAME.fullmatch(name) and ".." not in name)
    except Exception:  # as task_names: nothing rather than an error in the middle of a command line
        return []


def _common_dir(cwd: str | os.PathLike[str]) -> str | None:
    # Like repository.discover, through the same runner (without git's variables a hook may have exported), so that
    # completion sees the repo every mux command would see. Only the common dir is needed: one git call even
    # inside a linked worktree.
    proc = run_git(
        Path(cwd), "rev-parse", "--path-format=absolute", "--git-common-dir", ok=ANY_EXIT, timeout=_GIT_TIMEOUT
    )
    path = proc.stdout.strip()
    return path if proc.returncode == 0 and path else None


def main_fast(argv: Sequence[str]) -> bool:
    """Answer `mux _tasks` and `mux _hosts` (one name a line) and return True; for any other command False.

    Called first thing by the `mux` entry point, before the CLI and its libraries are imported.
    """
    command = list(argv[1:2])
    if command == [HOSTS_COMMAND]:
        names = host_names()
    elif command == [TASKS_COMMAND]:
        try:
            names = task_names(os.getcwd())
        except OSError:  # the current directory was deleted
            names = []
    else:
        return False
    try:
        sys.stdout.write("".join(f"{name}\n" for name in names))
        sys.stdout.flush()
    except OSError:
        # The shell stopped reading (a pipe closed early): point stdout at /dev/null so that the interpreter's
        # final flush does not print a traceback either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return True
