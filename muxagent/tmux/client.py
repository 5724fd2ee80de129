"""Windows by id, verbatim text delivery, batched reads for `mux ls`: each call through the runner (run.py).

Traps this module exists to avoid (all seen on tmux 3.3a):
- `-t NAME` matches by prefix (`task-1` hits `task-10`): windows and panes are targeted by id (`@12`, `%7`),
  sessions as `=NAME` (exact).
- `-c DIR`, `-n NAME`, `-s NAME` and `rename-window` are format-expanded, so `#(cmd)` in a repo path would run
  `cmd`: `#` is doubled there.
- tmux splits its argv into commands at every argument that ENDS with `;` (`echo hi;` as a prompt would
  silently cut the command): such arguments are re-escaped as `...\\;`, which tmux turns back into `...;`.
- An argv of exactly one element is run through `sh -c`: it is exec'd through `env` instead.
- `new-window -c` silently falls back to another directory when DIR is missing: it is checked first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from muxagent.errors import TmuxError
from muxagent.model import PaneInfo
from muxagent.tmux.runner import LOCAL, NOT_INSTALLED, TIMEOUT, TmuxCommandError, TmuxHost, run_tmux, tmux_argv

# What `new-window -t =NAME:` says when the session is not there yet; the second while the server that
# another mux just started has no session at all.
_NO_SESSION = ("can't find session", "no current target")

# Detached sessions get this size so agents draw a full-width UI before anyone attaches.
_WIDTH, _HEIGHT = "220", "50"

# Time between pasting a prompt and pressing Enter: agents that see Enter inside the same read as the paste
# treat it as a newline in the prompt instead of "submit".
_ENTER_DELAY = 0.2

SNAPSHOT_FORMAT = "\t".join(
    (
        "#{pane_id}",
        "#{window_id}",
        "#{session_name}",
        "#{pane_dead}",
        "#{pane_dead_status}",
        "#{pane_dead_signal}",
        "#{window_activity}",
        "#{pane_pid}",
        "#{@mux_task}",
        # Last, so a stray tab in a command name cannot shift the other fields.
        "#{pane_current_command}",
    )
)


def escape_format(text: str) -> str:
    """Make text literal where tmux expands formats (`-c`, `-n`, `-s`, rename-window)."""
    return text.replace("#", "##")


def escape_arg(arg: str) -> str:
    """Keep tmux from reading an argument that ends with `;` as a command separator."""
    if arg.endswith(";"):
        return arg[:-1] + "\\;"
    return arg


def _exec_argv(argv: Sequence[str]) -> list[str]:
    if not argv:
        raise ValueError("empty command")
    if len(argv) == 1:
        # tmux hands a lone argument to `sh -c`; `env` execs it as a program name instead.
        return [shutil.which("env") or "/usr/bin/env", "--", argv[0]]
    return list(argv)


def _env_args(env: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    return args


def _checked_dir(cwd: Path, local: bool = True) -> str:
    """`cwd` for `-c`, after making sure it exists: tmux silently opens the window elsewhere when it does not. A
    folder on another host is not looked at here (the remote command that made it just said so)."""
    path = cwd.absolute()
    if local and not path.is_dir():
        raise TmuxError(f"cannot open a tmux window in {path}: no such directory")
    return escape_format(str(path))


def _strip_blank_tail(text: str) -> str:
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def parse_snapshot(stdout: str) -> list[PaneInfo]:
    panes: list[PaneInfo] = []
    # Split on newlines only: str.splitlines() would also cut at \x1c, \x0b and the like inside a field.
    for line in stdout.split("\n"):
        fields = line.split("\t", 9)
        if len(fields) != 10:
            continue
        pane_id, window_id, session, dead, status, signal, activity, pid, task, command = fields
        dead_status: int | None = None
        if status.isdigit():
            dead_status = int(status)
        elif signal.isdigit():
            dead_status = 128 + int(signal)
        panes.append(
            PaneInfo(
                pane_id=pane_id,
                window_id=window_id,
                session=session,
                dead=dead == "1",
                dead_status=dead_status,
                activity=float(activity) if activity else 0.0,
                current_command=command,
                task=task,
                pid=int(pid) if pid.isdigit() else 0,
            )
        )
    return panes


def capture_args(targets: Sequence[str], marker: str, lines: int | None = None) -> list[str]:
    """One tmux command line printing `MARKER-i`, then the screen of targets[i], for each target in turn (see
    `split_sections`). The marker goes through strftime and format expansion: it must hold no `%` and no `#`."""
    args: list[str] = []
    for index, target in enumerate(targets):
        if args:
            args.append(";")
        args += ["display-message", "-p", "-t", target, f"{marker}-{index}", ";"]
        args += ["capture-pane", "-p", "-t", target]
        if lines:
            args += ["-S", f"-{lines}"]
    return args


def split_sections(stdout: str, marker: str) -> dict[int, str]:
    """Index -> screen of what a `capture_args` command line printed (what came before the first marker is
    dropped); trailing blank lines removed."""
    sections: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.split("\n"):
        if line.startswith(marker + "-") and line[len(marker) + 1 :].isdigit():
            current = sections.setdefault(int(line[len(marker) + 1 :]), [])
        elif current is not None:
            current.append(line)
    return {index: _strip_blank_tail("\n".join(body)) for index, body in sections.items()}


class Tmux:
    def __init__(
        self, socket: str | None = None, binary: str = "tmux", host: TmuxHost = LOCAL, utf8: bool = False
    ) -> None:
        # Read at call time so tests (and `MUX_TMUX_SOCKET=x mux ...`) pick their own server.
        if socket is None:
            socket = os.environ.get("MUX_TMUX_SOCKET") or None
        self.socket: str | None = socket
        self.binary = binary
        self.host = host
        # `-u` on every call: over ssh no LANG arrives, and a tmux outside a UTF-8 locale prints each tab of a
        # format as `_` (every pane of a remote task read as "window gone"), and starts agents without UTF-8.
        self.flags: tuple[str, ...] = ("-u",) if utf8 else ()

    # -- plumbing ---------------------------------------------------------------------------------------

    def _tmux(self, *args: str, stdin: str | None = None, timeout: float = TIMEOUT) -> str:
        """The stdout of one tmux command line on this server; TmuxCommandError when it fails."""
        return run_tmux(
            *self.flags, *args, socket=self.socket, binary=self.binary, stdin=stdin, timeout=timeout, host=self.host
        )

    def _new_window_id(self, *args: str) -> str:
        out = self._tmux(*args).splitlines()
        if not out or not out[0].startswith("@"):
            raise TmuxError(f"tmux {args[0]} did not print the new window's id (got {out!r})")
        return out[0].strip()

    # -- probes -----------------------------------------------------------------------------------------

    def require(self) -> None:
        """Fail unless the tmux binary is there: a PATH lookup, no process (it is on the path of `mux new`)."""
        if shutil.which(self.binary) is None:
            raise TmuxError(NOT_INSTALLED)

    def version(self) -> str:
        return self._tmux("-V").strip().removeprefix("tmux ")

    def server_running(self) -> bool:
        try:
            self._tmux("list-sessions", "-F", "#{session_id}")
        except TmuxCommandError as error:
            if error.no_server:
                return False
            raise
        return True

    def windows_with_task(self, session: str) -> dict[str, str]:
        """Task name -> window id for every window of `session` carrying `@mux_task` (the first one wins on
        duplicates). Only that session's: another repository's task of the same name has a window on the same
        server, and adopting it made `mux rm` kill that repository's agent."""
        try:
            stdout = self._tmux("list-windows", "-a", "-F", "#{window_id}\t#{session_name}\t#{@mux_task}")
        except TmuxCommandError as error:
            if error.no_server:
                return {}
            raise
        found: dict[str, str] = {}
        for line in stdout.split("\n"):
            fields = line.split("\t", 2)
            if len(fields) == 3 and fields[1] == session and fields[2]:
                found.setdefault(fields[2], fields[0])
        return found

    # -- the hot read path ------------------------------------------------------------------------------

    def snapshot(self) -> list[PaneInfo]:
        """Every pane on the server in one tmux call (~3 ms); [] when no server is running.

        A pane killed by signal N reports dead_status 128+N, as a shell would.
        """
        try:
            panes = parse_snapshot(self._tmux("list-panes", "-a", "-F", SNAPSHOT_FORMAT))
        except TmuxCommandError as error:
            # A server whose last session just ended still answers for a moment, with "no current target"
            # (test_tmux_works_without_libtmux_installed caught it right after killing the last window).
            if error.no_server or "no current target" in error.stderr:
                return []
            raise
        if any(pane.dead and pane.dead_status is None for pane in panes):
            # tmux built with libutempter (Debian, Ubuntu) sets SIGCHLD to SIG_DFL while the utempter helper
            # runs, which it does as a pane starts and as its terminal closes: a program exiting right then is
            # never reaped and its exit status stays unknown (a third of quick exits on tmux 3.3a) until the
            # server's next child exits. `run-shell true` makes such a child; tmux's reaper then collects both.
            # The same call covers the moment between the terminal closing and the normal reaping.
            try:
                retry = self._tmux("run-shell", "true", ";", "list-panes", "-a", "-F", SNAPSHOT_FORMAT, timeout=2)
            except TmuxError:
                return panes
            return parse_snapshot(retry)
        return panes

    def capture(self, targets: Sequence[str], lines: int | None = None) -> dict[str, str]:
        """The plain text on screen (plus `lines` of scrollback) of each pane or window id, in one tmux call.

        Trailing blank lines are dropped; targets that no longer exist are absent from the result.
        """
        result: dict[str, str] = {}
        pending = list(dict.fromkeys(targets))
        # tmux stops a command line at the first failing command, so a target that vanished since the caller
        # looked means one more call for the targets after it: rare, and still no per-pane process.
        while pending:
            marker = f"MUXSPLIT-{uuid.uuid4().hex}"
            args = capture_args(pending, marker, lines)
            try:
                sections = split_sections(self._tmux(*args), marker)
            except TmuxCommandError as error:
                if error.no_server:
                    return result
                if "can't find" not in error.stderr:
                    raise
                sections = split_sections(error.stdout, marker)
            else:
                for index, text in sections.items():
                    result[pending[index]] = text
                return result
            # The last marker printed belongs to the capture that failed; everything before it is complete.
            failed = max(sections, default=0)
            for index, text in sections.items():
                if index != failed:
                    result[pending[index]] = text
            pending = pending[failed + 1 :]
        return result

    # -- windows ----------------------------------------------------------------------------------------

    def new_window(
        self, session: str, name: str, cwd: Path, argv: Sequence[str], env: Mapping[str, str], task: str
    ) -> str:
        """Open a window running argv in cwd and return its id; creates the session (and server) if needed.

        The window keeps its pane after the program exits (remain-on-exit), keeps its name, and carries the
        window option `@mux_task`.
        """
        directory = _checked_dir(cwd, local=self.host is LOCAL)
        command = [escape_arg(arg) for arg in _exec_argv(argv)]
        env_args = [escape_arg(arg) for arg in _env_args(env)]
        last_error: TmuxError | None = None
        # Another mux may create or kill the session between our calls: try each way a few times.
        for _ in range(4):
            try:
                return self._add_window(session, name, directory, command, env_args, task)
            except TmuxCommandError as error:
                if not (error.no_server or any(m in error.stderr for m in _NO_SESSION)):
                    raise
                last_error = error
            try:
                return self._create_session(session, name, directory, command, env, task)
            except TmuxCommandError as error:
                if "duplicate session" not in error.stderr:
                    raise
                last_error = error
        assert last_error is not None
        raise last_error

    def _window_options(self, target: str, task: str) -> list[str]:
        # Chained into the same tmux command line as the window's creation: tmux runs a client's whole command
        # line before it serves another client or handles a child's exit, so even `false` leaves a dead pane
        # (set separately, the window is already gone; set by a hook, other windows of the session get it).
        return [
            ";", "set-option", "-w", "-t", target, "remain-on-exit", "on",
            ";", "set-option", "-w", "-t", target, "automatic-rename", "off",
            ";", "set-option", "-w", "-t", target, "@mux_task", escape_arg(task),
        ]  # fmt: skip

    def _add_window(
        self, session: str, name: str, directory: str, command: list[str], env_args: list[str], task: str
    ) -> str:
        # `-a` after `{end}` puts the window at the highest index, so the chained options can name it as
        # `{end}` before its id is known.
        end = escape_arg(f"={session}:{{end}}")
        return self._new_window_id(
            "new-window", "-d", "-a", "-t", end, "-n", escape_arg(escape_format(name)),
            "-c", escape_arg(directory), "-P", "-F", "#{window_id}", *env_args, "--", *command,
            *self._window_options(end, task),
        )  # fmt: skip

    def _create_session(
        self, session: str, name: str, directory: str, command: list[str], env: Mapping[str, str], task: str
    ) -> str:
        first = escape_arg(f"={session}:")
        # `new-session -e` also writes the variables into the session's environment, where every later
        # window (the user's own included) would inherit this task's MUX_TASK: unset them right away.
        unset: list[str] = []
        for key in env:
            unset += [";", "set-environment", "-t", escape_arg(f"={session}"), "-u", escape_arg(key)]
        return self._new_window_id(
            "new-session", "-d", "-s", escape_arg(escape_format(session)),
            "-n", escape_arg(escape_format(name)), "-c", escape_arg(directory),
            "-x", _WIDTH, "-y", _HEIGHT, "-P", "-F", "#{window_id}",
            *[escape_arg(arg) for arg in _env_args(env)], "--", *command,
            *unset, *self._window_options(first, task),
        )  # fmt: skip

    def respawn(self, window_id: str, cwd: Path, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """Restart the program in a window's pane (dead or not), in cwd with env added."""
        directory = _checked_dir(cwd, local=self.host is LOCAL)
        command = [escape_arg(arg) for arg in _exec_argv(argv)]
        env_args = [escape_arg(arg) for arg in _env_args(env)]
        self._tmux("respawn-pane", "-k", "-t", window_id, "-c", escape_arg(directory), *env_args, "--", *command)

    def rename_window(self, window_id: str, name: str) -> None:
        self._tmux("rename-window", "-t", window_id, "--", escape_arg(escape_format(name)))

    def kill_window(self, window_id: str) -> None:
        """Close a window by id; nothing happens if it (or the whole server) is already gone."""
        try:
            self._tmux("kill-window", "-t", window_id)
        except TmuxCommandError as error:
            if not (error.no_server or "can't find window" in error.stderr):
                raise

    # -- input ------------------------------------------------------------------------------------------

    def send_text(self, target: str, text: str, enter: bool = True) -> None:
        """Deliver text exactly as given (no key names, no formats, newlines kept), then press Enter.

        It is pasted from a tmux buffer, bracketed when the program asked for bracketed paste, so agents take
        a multi-line prompt as one prompt and words like `C-c` or `Enter` stay words.
        """
        if text:
            buffer = f"mux-{uuid.uuid4().hex}"
            # From stdin: `set-buffer TEXT` would put the prompt on a command line, which tmux limits to ~16 KB.
            try:
                self._tmux(
                    "load-buffer", "-b", buffer, "-",
                    ";", "paste-buffer", "-p", "-d", "-b", buffer, "-t", target,
                    stdin=text,
                )  # fmt: skip
            except TmuxError:
                # paste-buffer -d did not run: do not leave the prompt lying in the server's buffers.
                with contextlib.suppress(TmuxError):
                    self._tmux("delete-buffer", "-b", buffer)
                raise
            if enter:
                time.sleep(_ENTER_DELAY)
        if enter:
            self.send_keys(target, "Enter")

    def send_keys(self, target: str, *keys: str) -> None:
        """Press keys by tmux key name (`Enter`, `C-c`, `y`)."""
        self._tmux("send-keys", "-t", target, "--", *[escape_arg(key) for key in keys])

    # -- attaching --------------------------------------------------------------------------------------

    def attach_argv(self, session: str) -> list[str]:
        """The command that attaches a terminal to the session."""
        return tmux_argv(self.socket, self.binary, *self.flags, "attach-session", "-t", escape_arg(f"={session}"))

    def inside_same_server(self, session: str) -> bool:
        """True when this process runs in a pane of this Tmux's server (so `switch-client` can reach us)."""
        inside = os.environ.get("TMUX", "")
        if not inside:
            return False
        try:
            theirs = self._tmux("display-message", "-p", "-t", escape_arg(f"={session}"), "#{socket_path}")
        except TmuxCommandError:
            return False
        ours = inside.split(",", 1)[0]
        return os.path.realpath(ours) == os.path.realpath(theirs.strip())

    def attach(self, session: str, window_id: str) -> None:
        """Show the window: switch the current client inside tmux, else replace this process by an attach."""
        if self.inside_same_server(session):
            self._tmux("select-window", "-t", window_id, ";", "switch-client", "-t", window_id)
            return
        self._tmux("select-window", "-t", window_id)
        env = dict(os.environ)
        # Inside a different tmux server the only way to show the task is a nested client, which tmux refuses
        # while TMUX is set.
        env.pop("TMUX", None)
        self.host.replace_process(self.attach_argv(session), env)


class ScreenCache:
    """Screens kept between the monitor's looks, so a quiet pane is not read twice a second (`mux ls` reads afresh).

    tmux keeps a window's last output time in whole seconds: a pane whose last output came in a second before the
    one its screen was read in has not drawn since. A screen is read again anyway after `max_age` seconds, for what
    changes one without output (tmux reflowing it after a resize). When one pane is due for that, every pane past
    half its `max_age` is read with it: read one by one as each came due, 100 quiet panes cost a tmux process at
    almost every tick (15 in 10 s, counted), where these batches cost one or two.
    """

    def __init__(self, max_age: float = 10.0) -> None:
        self.max_age = max_age
        self._screens: dict[str, tuple[float, str]] = {}

    def read(self, tmux: Tmux, panes: Sequence[PaneInfo]) -> dict[str, str]:
        """The screen of each live pane in `panes`, reading only those that may have changed (in one tmux call)."""
        read_at = time.time()  # before the capture: output tmux takes in while it runs counts as after it
        drawn = {pane.pane_id for pane in panes if self._drawn_since_read(pane)}
        ages = {pane_id: read_at - at for pane_id, (at, _) in self._screens.items()}
        old_enough = self.max_age / 2 if any(ages.get(p.pane_id, 0.0) >= self.max_age for p in panes) else self.max_age
        kept: dict[str, tuple[float, str]] = {}
        stale: list[str] = []
        for pane in panes:
            known = self._screens.get(pane.pane_id)
            if known is not None and pane.pane_id not in drawn and ages[pane.pane_id] < old_enough:
                kept[pane.pane_id] = known
            else:
                stale.append(pane.pane_id)
        fresh = tmux.capture(stale) if stale else {}
        self._screens = {**kept, **{pane_id: (read_at, text) for pane_id, text in fresh.items()}}
        return {pane_id: text for pane_id, (_, text) in self._screens.items()}

    def _drawn_since_read(self, pane: PaneInfo) -> bool:
        """Whether the pane may have drawn since its screen was read (never read: yes)."""
        known = self._screens.get(pane.pane_id)
        return known is None or pane.activity >= int(known[0])
