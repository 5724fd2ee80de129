"""The one tmux runner: every tmux call of mux, as a plain argv (never through a shell), on a `TmuxHost`.

A failure is a TmuxCommandError carrying the command, its exit status and tmux's stderr; a missing tmux, an
unreachable server and a server that does not answer each get the one line the user reads.

Plain `tmux`, not libtmux: its import costs 145 ms here (`python -X importtime -c 'import libtmux'`, median of
5 runs on this loaded 2-core machine), which every `mux new`, `mux send` and monitor start paid for one mutation,
against ~3 ms for a `tmux list-panes`; and libtmux cannot reach a tmux on another host, which a remote task needs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from typing import NoReturn, Protocol

from muxagent.errors import TmuxError

NOT_INSTALLED = "tmux is not installed (need tmux >= 3.2)"

# What a tmux client prints when no server listens on its socket (or a stale socket is left behind).
_NO_SERVER = ("no server running", "error connecting to", "server exited unexpectedly")

# A wedged server must not hang `mux ls` forever.
TIMEOUT = 10.0


def is_no_server(stderr: str) -> bool:
    """True when tmux's stderr says no server listens on the socket."""
    return any(marker in stderr for marker in _NO_SERVER)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no error message")


def _where(socket: str | None) -> str:
    return f" (socket {socket})" if socket else ""


class TmuxCommandError(TmuxError):
    """A tmux command exited non-zero; keeps tmux's stderr so callers can tell the expected failures apart, and
    the stdout of the commands before the failing one in a chained command line."""

    def __init__(self, argv: Sequence[str], status: int, stderr: str, socket: str | None, stdout: str = "") -> None:
        self.command = tuple(argv)
        self.status = status
        self.stderr = stderr
        self.stdout = stdout
        self.no_server = is_no_server(stderr)
        if self.no_server:
            super().__init__(f"cannot reach the tmux server{_where(socket)}: {_first_line(stderr)}")
        else:
            super().__init__(f"tmux {self._verb()} failed: {_first_line(stderr)}")

    def _verb(self) -> str:
        # The tmux command after the binary and its `-L SOCKET`: what the user can look up in `man tmux`.
        args = self.command[3:] if self.command[1:2] == ("-L",) else self.command[1:]
        args = args[1:] if args[:1] == ("-u",) else args
        return args[0] if args else shlex.join(self.command)


class TmuxHost(Protocol):
    """Where tmux runs. `LocalHost` runs it here; another host (over SSH, say) runs the same argv there, so that
    no caller changes when a task's window lives on another machine."""

    def run(self, argv: Sequence[str], stdin: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run `argv` with `stdin` (None: no stdin); TmuxError when tmux is not there, subprocess.TimeoutExpired
        when it does not finish within `timeout` seconds."""
        ...

    def replace_process(self, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
        """Become `argv` (a tmux client attaching a terminal) with exactly `env`; TmuxError when tmux is not there."""
        ...


class LocalHost:
    """tmux as a child process of mux."""

    def run(self, argv: Sequence[str], stdin: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv,
                input=stdin,
                stdin=subprocess.DEVNULL if stdin is None else None,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                check=False,
                timeout=timeout,
            )
        except FileNotFoundError:
            raise TmuxError(NOT_INSTALLED) from None

    def replace_process(self, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
        try:
            os.execvpe(argv[0], list(argv), dict(env))
        except FileNotFoundError:
            raise TmuxError(NOT_INSTALLED) from None


LOCAL = LocalHost()


def tmux_argv(socket: str | None, binary: str, *args: str) -> list[str]:
    """The argv of one tmux client on the server at `socket` (None: the default server)."""
    return [binary, "-L", socket, *args] if socket else [binary, *args]


def run_tmux(
    *args: str,
    socket: str | None,
    binary: str = "tmux",
    stdin: str | None = None,
    timeout: float = TIMEOUT,
    host: TmuxHost = LOCAL,
) -> str:
    """The one place tmux runs: one command line (commands chained with `;`), its stdout; TmuxCommandError when
    tmux exits non-zero."""
    argv = tmux_argv(socket, binary, *args)
    try:
        proc = host.run(argv, stdin, timeout)
    except subprocess.TimeoutExpired:
        raise TmuxError(f"the tmux server{_where(socket)} did not answer `{args[0]}` within {timeout:g} s") from None
    if proc.returncode != 0:
        raise TmuxCommandError(argv, proc.returncode, proc.stderr, socket, proc.stdout)
    return proc.stdout
