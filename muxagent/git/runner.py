"""The one git runner: every git call of mux, as a plain argv (never through a shell), on a `GitHost`.

Each runs with `--no-optional-locks`, so mux reading a task never takes the index lock the agent working there
needs, and without the variables a git hook exports (REPO_ENV). A failure is a GitCommandError carrying the
command, its exit status and git's stderr.

Plain `git`, not GitPython, on the hot paths: `mux ls`, TAB and the hook must not pay GitPython's import, 125-135 ms
measured here (`import git` on a loaded machine), against 4 ms for one `git rev-parse`. GitPython serves `mux
restore` (see recovery.py), which reads saved commits and can afford it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from muxagent.errors import GitError

# Variables git exports to hooks. Inherited by mux (an agent may run mux from a hook), they would point every
# command at another repository or index, e.g. the recovery snapshot would write into the agent's real index.
REPO_ENV = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)

# For a call whose failure mux reads itself.
ANY_EXIT = tuple(range(256))

# Paths a one-line message names before it ends in `...`.
NAMES_SHOWN = 3


class GitCommandError(GitError):
    """A git command exited with a status its caller did not expect; the message names it and git's first words."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{shlex.join([*argv[:1], *argv[2:]])} failed: {error_line(stderr)}")


class GitCall(NamedTuple):
    """One git command as a host runs it: `env` is added to the host's environment, `timeout` is in seconds
    (None: no limit), `text` decodes the output (bytes that are not UTF-8 held as surrogates). A NamedTuple,
    not a dataclass: TAB completion imports this module, and `dataclasses` would add its import to every TAB."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    stdin: str | bytes | None
    text: bool
    timeout: float | None


class GitHost(Protocol):
    """Where git runs. `LocalHost` runs it here; another host (over SSH, say) runs the same call in its `cwd`
    there, so that no caller changes when a task lives on another machine."""

    def run(self, call: GitCall) -> subprocess.CompletedProcess[Any]:
        """GitError when git cannot start, subprocess.TimeoutExpired when it runs past `call.timeout`."""
        ...


class LocalHost:
    """git as a child process of mux, never through a shell."""

    def run(self, call: GitCall) -> subprocess.CompletedProcess[Any]:
        try:
            return subprocess.run(
                call.argv,
                cwd=call.cwd,
                env=_local_env(call.env),
                input=call.stdin,
                capture_output=True,
                text=call.text,
                encoding="utf-8" if call.text else None,
                errors="surrogateescape" if call.text else None,
                timeout=call.timeout,
            )
        except FileNotFoundError as exc:
            what = f"directory does not exist: {call.cwd}" if not call.cwd.is_dir() else "git is not installed"
            raise GitError(what) from exc
        except NotADirectoryError as exc:
            raise GitError(f"not a directory: {call.cwd}") from exc


def _local_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in REPO_ENV}
    env.update(extra)
    return env


LOCAL = LocalHost()


def run_git(
    cwd: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    ok: tuple[int, ...] = (0,),
    host: GitHost = LOCAL,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run git, its output as text (bytes that are not UTF-8 held as surrogates); unless the exit code is in
    `ok`, raise GitCommandError; GitError past `timeout` seconds."""
    return _run(host, cwd, args, env, stdin, ok, text=True, timeout=timeout)


def run_git_binary(
    cwd: Path, *args: str, stdin: bytes | None = None, ok: tuple[int, ...] = (0,), host: GitHost = LOCAL
) -> subprocess.CompletedProcess[bytes]:
    """`run_git` for output that is raw bytes (file contents)."""
    return _run(host, cwd, args, None, stdin, ok, text=False)


def _run(
    host: GitHost,
    cwd: Path,
    args: Sequence[str],
    env: Mapping[str, str] | None,
    stdin: str | bytes | None,
    ok: tuple[int, ...],
    *,
    text: bool,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[Any]:
    """The one place git runs: every call of the package comes through here."""
    argv = ("git", "--no-optional-locks", *args)
    try:
        proc = host.run(GitCall(argv, cwd, env or {}, stdin, text, timeout))
    except subprocess.TimeoutExpired:
        raise GitError(f"{shlex.join([*argv[:1], *argv[2:]])} did not finish within {timeout:g} s") from None
    if proc.returncode not in ok:
        if proc.returncode in _INTERRUPTED and threading.current_thread() is threading.main_thread():
            # Ctrl-C reaches git with mux (one process group): whichever sees it first, mux says `interrupted`
            # and exits 130. On a loaded machine git's exit came first and mux said `git ... failed: no error
            # message`, exit 1 (test_ctrl_c_in_rm_recursive_loses_nothing_says_what_went_and_runs_again).
            raise KeyboardInterrupt
        stderr = proc.stderr if text else proc.stderr.decode(errors="replace")
        raise GitCommandError(argv, proc.returncode, stderr)
    return proc


# How a git killed by SIGINT ends: the signal itself, or the 128 + 2 of a shell in between (a wrapper on PATH).
_INTERRUPTED = (-signal.SIGINT, 128 + signal.SIGINT)


def quote_path(path: str) -> str:
    """A path for a message or prompt: each byte that is not UTF-8 (held as a surrogate) as git writes it, `\\351`."""
    return re.sub("[\udc80-\udcff]", lambda found: f"\\{ord(found.group()) - 0xDC00:03o}", path)


_SAYS_WHY = ("fatal:", "error:")

_SAYS_MORE = ("hint:", "warning:", *_SAYS_WHY)


def error_line(stderr: str) -> str:
    """What went wrong, in one line, from git's stderr: its first `fatal:` or `error:` line (not a progress
    line such as "Preparing worktree" before it, which is all a full disk used to show), else its first line;
    with the lines that finish it (a sentence git wrapped, the paths it lists after a colon)."""
    lines = [line.rstrip() for line in stderr.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith(_SAYS_WHY)), None)
    if start is None:
        start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        return "no error message"
    text = lines[start].strip()
    listed: list[str] = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith(_SAYS_MORE):
            break
        if listed or text.endswith(":"):
            # The paths after the colon, all indented alike; "Please commit your changes ..." ends them.
            if listed and line[:1].isspace() != listed[0][:1].isspace():
                break
            listed.append(line)
        elif not text.endswith((".", "!", "?")) and not line[:1].isspace():
            text += " " + line.strip()  # a sentence git wrapped
        else:
            break
    if listed:
        names = [name.strip() for name in listed]
        text += " " + ", ".join(names[:NAMES_SHOWN]) + (", ..." if len(names) > NAMES_SHOWN else "")
    return text


def git_version() -> tuple[int, ...]:
    """The installed git's version as numbers, e.g. (2, 39, 5)."""
    words = run_git(Path("/"), "version").stdout.split()  # anywhere: the cwd may have been deleted
    numbers = words[2].split(".") if len(words) > 2 else []
    return tuple(int(n) for n in numbers if n.isdigit())


# mux's own commits, merges and rebases run no repo hook: a pre-commit hook that reformats or refuses would turn
# "bring the task home" into a half-done operation in someone else's checkout.
NO_HOOKS = ("-c", "core.hooksPath=/dev/null")
