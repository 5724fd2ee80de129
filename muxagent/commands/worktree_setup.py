"""Getting a new worktree ready before its agent starts.

Two halves:
- `place_files` (run by `mux new`): the main checkout's untracked files named by `copy` / `symlink` globs and
  `.worktreeinclude` are copied or linked into the new worktree. Matches that the branch tracks are left alone:
  the worktree's own version wins.
- `run` (run inside the task's tmux window, as `python -m muxagent.commands.worktree_setup SPEC`): the `setup` commands,
  one `sh -c` each, in the worktree, each with a deadline; their output goes to the pane (so `mux peek` and
  the user see it live) and to a log (`mux logs NAME`); progress goes to a small status file that `mux new`
  polls. On success it execs the agent in place; on failure it says why and exits, so the pane stays dead
  (remain-on-exit) and the task stays whole and inspectable instead of half-created.

This module imports nothing from mux above `errors`: the runner starts in a pane before any agent, and a
slow import there is time the user waits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from muxagent.config import MAX_RECURSIVE_GLOBS, too_many_recursive_globs
from muxagent.errors import ConfigError, MuxError
from muxagent.state import files

INCLUDE_FILE = ".worktreeinclude"
# After a command times out it gets this long to exit on SIGTERM before SIGKILL.
KILL_GRACE = 2.0
# Exit status of a timed-out command, as coreutils `timeout` reports it.
TIMED_OUT = 124


class SetupError(MuxError):
    """A set-up step failed; the task was kept so the user can look at it."""


# ---------------------------------------------------------------------------------------------- file placing


@dataclass(frozen=True)
class Placement:
    placed: list[str]  # "copied PATH" / "linked PATH", for the log
    notes: list[str]  # one line each, for the user: globs that matched nothing, files that were refused


def place_files(
    main: Path,
    worktree: Path,
    copy: Sequence[str],
    symlink: Sequence[str],
    included: Sequence[str] = (),
    tracked: Callable[[list[str]], set[str]] = lambda _paths: set(),
) -> Placement:
    """Copy or link the main checkout's files into the worktree. `included` are paths (not globs) relative to
    the main checkout, e.g. what `.worktreeinclude` selected; they are copied. `tracked` says which of the
    matched paths the branch itself has (file or folder): those are left to git's checkout."""
    notes: list[str] = []
    root = Path(os.path.realpath(main))
    wanted: list[tuple[str, str]] = []
    for how, patterns in (("copy", copy), ("symlink", symlink)):
        for pattern in patterns:
            matches = _glob(root, pattern)
            if not matches:
                notes.append(f"{how}: {pattern!r} matches nothing in {main}")
            wanted += [(how, relative) for relative in matches]
    wanted += [("copy", relative.rstrip("/")) for relative in included]
    placed: list[str] = []
    if wanted:
        skipped = tracked([relative for _how, relative in wanted])
        for how, relative in wanted:
            if relative not in skipped:
                _place(root, worktree, relative, how, placed, notes)
    return Placement(placed=placed, notes=notes)


def _glob(root: Path, pattern: str) -> list[str]:
    # config.py already refused absolute patterns and `..`; a symlinked folder could still lead out, which
    # _inside catches per match.
    found = []
    for path in sorted(root.glob(pattern)):
        relative = path.relative_to(root).as_posix()
        if relative == ".git" or relative.startswith(".git/"):
            continue
        found.append(relative)
    return found


def _inside(root: Path, path: Path) -> bool:
    # The entry's folder must really be in the checkout; the entry itself may be a symlink to anywhere,
    # since it is copied as a link and never read through.
    parent = Path(os.path.realpath(path.parent))
    return parent == root or root in parent.parents


def _place(root: Path, worktree: Path, relative: str, how: str, placed: list[str], notes: list[str]) -> None:
    source, target = root / relative, worktree / relative
    if not _inside(root, source):
        notes.append(f"{how}: {relative} is reached through a link that leaves {root}: skipped")
        return
    if os.path.lexists(target):
        return  # checked out already, or placed by an earlier pattern
    import shutil  # imports bz2 and lzma: this module is imported on the `mux ls` path, which must not pay

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if how == "symlink":
            target.symlink_to(source)
            placed.append(f"linked {relative}")
        elif source.is_dir() and not source.is_symlink():
            shutil.copytree(source, target, symlinks=True)
            placed.append(f"copied {relative}/")
        else:
            shutil.copy2(source, target, follow_symlinks=False)
            placed.append(f"copied {relative}")
    except OSError as exc:
        raise SetupError(f"cannot {how} {relative} into {worktree}: {exc.strerror or exc}") from None


def read_include_file(main: Path) -> Path | None:
    """The repo's `.worktreeinclude`, if it has one; ConfigError if a line of it would stall git's matching."""
    path = main / INCLUDE_FILE
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.startswith("#") and too_many_recursive_globs(line):
            raise ConfigError(
                f"{path}:{number}: more than {MAX_RECURSIVE_GLOBS} '**' in one pattern (each one walks every"
                " folder again): shorten it"
            )
    return path


# ---------------------------------------------------------------------------------------------- the runner


@dataclass(frozen=True)
class Spec:
    """What the runner in the pane does; written by `mux new` as JSON next to the log."""

    task: str
    worktree: str
    commands: list[str]
    timeout: float
    log: str
    status: str
    agent: list[str]


@dataclass(frozen=True)
class Progress:
    """The runner's status file: "running" with the step, then "ok" or "failed"."""

    state: str
    step: int
    steps: int
    command: str | None
    started: float
    exit_status: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    # The runner's tmux pane: a status file left by a removed task must not describe a later one of that name.
    pane: str | None = None

    def describe_failure(self) -> str:
        if self.state != "failed":
            return ""
        what = f"`{self.command}`" if self.command else "the set-up runner"
        if self.timed_out:
            return f"{what} did not finish within {self.seconds:g}s (the `setup_timeout` setting)"
        if self.exit_status is None:
            return f"{what} was interrupted"
        return f"{what} exited {self.exit_status} after {self.seconds:.1f}s"


STATUS_SUFFIX = ".status.json"


def log_dir(store_root: Path) -> Path:
    return store_root / "logs"


def log_path(store_root: Path, task: str) -> Path:
    return log_dir(store_root) / f"{task}.log"


def spec_path(store_root: Path, task: str) -> Path:
    return log_dir(store_root) / f"{task}.setup.json"


def status_path(store_root: Path, task: str) -> Path:
    return log_dir(store_root) / f"{task}{STATUS_SUFFIX}"


def start_log(store_root: Path, task: str, lines: Sequence[str]) -> Path:
    """A fresh log for a new task (an older task of the same name may have left one)."""
    folder = log_dir(store_root)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (spec_path(store_root, task), status_path(store_root, task)):
        stale.unlink(missing_ok=True)
    path = log_path(store_root, task)
    # surrogateescape: a copied file whose name is not UTF-8 is logged with its own bytes, not a failed `mux new`.
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8", errors="surrogateescape")
    return path


def write_spec(store_root: Path, spec: Spec) -> Path:
    path = spec_path(store_root, spec.task)
    _write_json(path, asdict(spec))
    return path


def runner_argv(spec_file: Path) -> list[str]:
    """The pane's command: this module under the same Python that runs mux, so it is importable there."""
    return [sys.executable, "-m", "muxagent.commands.worktree_setup", str(spec_file)]


def read_progress(store_root: Path, task: str) -> Progress | None:
    try:
        data = json.loads(status_path(store_root, task).read_text(encoding="utf-8"))
        return Progress(**data)
    except (OSError, ValueError, TypeError):
        # Missing (not started yet, or no set-up) or torn: the caller polls again.
        return None


def run(spec: Spec) -> int:
    """Run the set-up commands, then exec the agent; the exit status on failure."""
    started = time.monotonic()
    pane = os.environ.get("TMUX_PANE") or None
    with open(spec.log, "ab") as log:
        for index, command in enumerate(spec.commands):
            progress = Progress("running", index + 1, len(spec.commands), command, time.time(), pane=pane)
            _write_json(Path(spec.status), asdict(progress))
            _emit(log, f"$ {command}\n".encode())
            begun = time.monotonic()
            status, timed_out = _run_one(command, spec, log)
            seconds = time.monotonic() - begun
            if status != 0:
                failed = Progress("failed", index + 1, len(spec.commands), command, progress.started, status,
                                  timed_out, seconds if not timed_out else spec.timeout, pane)  # fmt: skip
                _write_json(Path(spec.status), asdict(failed))
                _emit(log, _failure_text(spec, failed).encode())
                return status if status and status > 0 else 1
        done = Progress("ok", len(spec.commands), len(spec.commands), None, time.time(), 0, False,
                        time.monotonic() - started, pane)  # fmt: skip
        _write_json(Path(spec.status), asdict(done))
        _emit(log, f"mux: set-up done in {done.seconds:.1f}s; starting {spec.agent[0]}\n".encode())
    try:
        os.execvp(spec.agent[0], spec.agent)
    except OSError as exc:
        sys.stderr.write(f"mux: cannot start {spec.agent[0]}: {exc.strerror}\n")
        return 127


def _failure_text(spec: Spec, failed: Progress) -> str:
    return (
        f"mux: set-up failed: {failed.describe_failure()}; the agent was not started.\n"
        f"mux: the task is kept as it is: full log in {spec.log} (`mux logs {spec.task}`); "
        f"`mux restart {spec.task}` starts the agent anyway, `mux rm {spec.task}` removes the task.\n"
    )


def _emit(log: Any, data: bytes) -> None:
    """To the pane and the log."""
    log.write(data)
    log.flush()
    with contextlib.suppress(OSError):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def _run_one(command: str, spec: Spec, log: Any) -> tuple[int, bool]:
    """One set-up command, its output to the pane and the log; (exit status, timed out)."""
    return _run_shell(command, Path(spec.worktree), spec.timeout, lambda data: _emit(log, data))


# What `mux compare --check` keeps of a check's output: its end, where test runners put their summary.
CHECK_OUTPUT_KEPT = 65536


@dataclass(frozen=True)
class CheckRun:
    """The repository's `check` command, run in one worktree."""

    status: int
    timed_out: bool
    seconds: float
    output: str  # its last CHECK_OUTPUT_KEPT bytes

    def last_lines(self, count: int = 5) -> list[str]:
        return self.output.rstrip("\n").splitlines()[-count:]


def run_check(command: str, worktree: Path, env: Mapping[str, str], timeout: float) -> CheckRun:
    """Run `command` by `sh -c` in `worktree` with `env` added to mux's own environment."""
    kept = bytearray()

    def keep(data: bytes) -> None:
        kept.extend(data)
        del kept[:-CHECK_OUTPUT_KEPT]

    started = time.monotonic()
    status, timed_out = _run_shell(command, worktree, timeout, keep, {**os.environ, **env})
    text = kept.decode("utf-8", "replace")
    return CheckRun(status, timed_out, time.monotonic() - started, text)


def _run_shell(
    command: str, cwd: Path, timeout: float, emit: Callable[[bytes], None], env: Mapping[str, str] | None = None
) -> tuple[int, bool]:
    """One command by `sh -c`; (exit status, timed out). stdin is /dev/null: a command that asks a question
    fails at once instead of waiting for an answer nobody sees."""
    proc = subprocess.Popen(
        ["sh", "-c", command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # Its own process group, so a timeout stops everything it started (npm's children included).
        start_new_session=True,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    emit(chunk)
                    continue
                break  # every writer closed the pipe
            if proc.poll() is not None:
                # Exited, but a background child may hold the pipe open forever: stop reading.
                break
            if time.monotonic() > deadline:
                _stop(proc)
                return TIMED_OUT, True
        # A command may close its output and keep running: the deadline still holds.
        return proc.wait(timeout=max(0.0, deadline - time.monotonic())), False
    except subprocess.TimeoutExpired:
        _stop(proc)
        return TIMED_OUT, True
    except KeyboardInterrupt:
        _stop(proc)
        return 130, False
    finally:
        proc.stdout.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Atomic: `mux new` polls this file and must never read half of it. Not durable: a power cut ends the run too.
    files.atomic_write(path, json.dumps(data).encode(), durable=False)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m muxagent.commands.worktree_setup SPEC.json\n")
        return 2
    try:
        spec = Spec(**json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        sys.stderr.write(f"mux: cannot read set-up spec {argv[0]}: {exc}\n")
        return 2
    return run(spec)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
