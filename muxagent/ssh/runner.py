"""The one ssh runner: every call mux makes on another host, as an argument list quoted for the remote shell by
`remote_command`, over one connection per host that every later call reuses.

- The connection: the first call to a host starts a master (`ssh -M -N -f`, ControlPersist) on a socket under
  mux's runtime folder; the later calls go through it (`ControlMaster=no`), so a command costs no new handshake.
  The master is started on its own, never by a call whose output mux reads: a master a call leaves behind holds
  that call's pipes open, and `subprocess.run` then waits for ControlPersist to end.
- Safety: the destination comes after `--` and `-l USER`, so no target reads as an option (`-oProxyCommand=...`);
  BatchMode, so a missing key fails at once instead of asking on a terminal nobody watches; host keys are checked
  as the user's ssh checks them (mux never sets StrictHostKeyChecking).
- One round trip for many commands: `run_batch` runs a list of argument lists in one remote shell, each with its
  own exit status, stdout and stderr.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from muxagent.errors import HostUnreachableError, MuxError

# How long the shared connection outlives its last use.
PERSIST = "300"

# ssh exits 255 when it, not the remote command, failed (the connection, the key, the host key).
SSH_FAILED = 255

_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")
_OPTION_KEY = re.compile(r"[A-Za-z][A-Za-z0-9]*")

# Options a host record may not set: mux checks host keys as the user's ssh does, and its own calls need the
# shared connection and no questions asked.
_REFUSED_OPTIONS = {"stricthostkeychecking", "batchmode", "controlmaster", "controlpath", "controlpersist"}


class SshCommandError(MuxError):
    """A remote command exited with a status its caller did not expect."""

    def __init__(self, host: str, argv: Sequence[str], status: int, stderr: str) -> None:
        self.host = host
        self.argv = tuple(argv)
        self.status = status
        self.stderr = stderr
        super().__init__(f"on host {host}: {shlex.join(argv[:3])} failed: {first_line(stderr)}")


@dataclass(frozen=True)
class SshTarget:
    """Where a host is and how to reach it: `hostname` (a name or an address), optional user and port, and
    ssh options (`-o KEY=VALUE`) for this host alone."""

    name: str
    hostname: str
    user: str | None = None
    port: int | None = None
    options: tuple[tuple[str, str], ...] = ()
    timeout: float = 5.0

    @property
    def address(self) -> str:
        """The `[USER@]HOST[:PORT]` a user typed, IPv6 addresses in brackets."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class Result:
    """One remote command's exit status and output (bytes that are not UTF-8 held as surrogates)."""

    status: int
    stdout: str
    stderr: str


def first_line(text: str) -> str:
    """The line that says what went wrong: the last non-empty one (ssh's own warnings come first)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"


def parse_address(text: str) -> tuple[str | None, str, int | None]:
    """(user, hostname, port) of `[USER@]HOST[:PORT]`; MuxError for anything else (no option, no command)."""
    user, at, rest = text.rpartition("@")
    if not at:
        user = ""
    if user and not _USER.fullmatch(user):
        raise MuxError(f"invalid SSH user {user!r}: letters, digits, '.', '_' and '-' only")
    port: str | None = None
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket or not _IPV6.fullmatch(host) or (after and not after.startswith(":")):
            raise MuxError(f"invalid SSH target {text!r}: want [USER@]HOST[:PORT]")
        port = after[1:] if after else None
    else:
        host, colon, port_text = rest.partition(":")
        port = port_text if colon else None
        if not _HOSTNAME.fullmatch(host):
            raise MuxError(f"invalid SSH target {text!r}: want [USER@]HOST[:PORT] (a host name or address)")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise MuxError(f"invalid SSH port {port!r} in {text!r}")
    return user or None, host, int(port) if port is not None else None


def parse_option(text: str) -> tuple[str, str]:
    """An ssh option `KEY=VALUE` as (KEY, VALUE); MuxError for a malformed one or one mux must set itself."""
    key, eq, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not eq or not _OPTION_KEY.fullmatch(key) or not value or any(c in value for c in "\r\n\0"):
        raise MuxError(f"invalid SSH option {text!r}: want KEY=VALUE, as in ssh_config(5)")
    if key.lower() in _REFUSED_OPTIONS:
        raise MuxError(f"SSH option {key} is mux's to set (it never turns off host key checking)")
    return key, value


def remote_command(argv: Sequence[str]) -> str:
    """The one quoting of an argument list for the remote user's shell (POSIX sh quoting): whatever bytes a
    path, a task name or a prompt holds, the remote shell gets them as one word each, runs none of them."""
    if not argv:
        raise ValueError("empty remote command")
    return " ".join(shlex.quote(arg) for arg in argv)


def runtime_dir() -> Path:
    """The folder of the shared connections' sockets: short, since a unix socket's path has ~107 bytes."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    base = Path(xdg) / "mux" if os.path.isabs(xdg) else Path(tempfile.gettempdir()) / f"mux-{os.getuid()}"
    folder = base / "ssh"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def control_path(target: SshTarget) -> Path:
    """The socket of this host's shared connection: one per destination and options, named without ssh's `%`
    tokens so that mux can tell it is there with a stat."""
    key = repr((target.hostname, target.user, target.port, target.options)).encode()
    return runtime_dir() / f"{target.name[:16]}-{hashlib.sha1(key).hexdigest()[:12]}"


def ssh_options(target: SshTarget, master: bool = False) -> list[str]:
    """The options of every ssh call to the host (the master's too), destination and command left out."""
    args = [
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={max(1, round(target.timeout))}",
        "-o", f"ControlPath={control_path(target)}",
        "-o", "ControlMaster=yes" if master else "ControlMaster=no",
        "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=2",
    ]  # fmt: skip
    if master:
        args += ["-o", f"ControlPersist={PERSIST}"]
    for key, value in target.options:
        args += ["-o", f"{key}={value}"]
    if target.port:
        args += ["-p", str(target.port)]
    if target.user:
        args += ["-l", target.user]
    return args


def ssh_argv(target: SshTarget, remote: str | None, tty: bool = False) -> list[str]:
    """The argv of one ssh call running `remote` (a command line quoted by `remote_command`) on the host."""
    return [
        "ssh",
        *ssh_options(target),
        *(["-t"] if tty else ["-T"]),
        "--",
        target.hostname,
        *([remote] if remote else []),
    ]


def _master_alive(path: Path) -> bool:
    """Whether a master listens on the socket: a connect, no process (a master that died leaves its socket)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def connect(target: SshTarget) -> None:
    """Open the host's shared connection unless it is open; HostUnreachableError with ssh's reason if it fails."""
    path = control_path(target)
    if _master_alive(path):
        return
    path.unlink(missing_ok=True)
    argv = ["ssh", *ssh_options(target, master=True), "-N", "-f", "--", target.hostname]
    # The master keeps the file it was given as stderr: a file, not a pipe that `run` would wait on.
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, timeout=target.timeout + 5
            )
        except FileNotFoundError:
            raise HostUnreachableError(f"host {target.name} unreachable: ssh is not installed") from None
        except subprocess.TimeoutExpired:
            raise HostUnreachableError(
                f"host {target.name} unreachable: no answer within {target.timeout:g} s"
            ) from None
        errors.seek(0)
        said = errors.read().decode(errors="replace")
    if proc.returncode != 0:
        raise HostUnreachableError(f"host {target.name} unreachable: {first_line(said)}")


def disconnect(target: SshTarget) -> None:
    """Close the host's shared connection, if open."""
    path = control_path(target)
    if _master_alive(path):
        subprocess.run(
            ["ssh", *ssh_options(target), "-O", "exit", "--", target.hostname],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=target.timeout + 5, check=False,
        )  # fmt: skip
    path.unlink(missing_ok=True)


def run(
    target: SshTarget,
    argv: Sequence[str],
    stdin: str | None = None,
    timeout: float | None = None,
    ok: tuple[int, ...] | None = (0,),
) -> Result:
    """Run one command on the host: its status and output. HostUnreachableError when ssh cannot reach it,
    SshCommandError when the status is not in `ok` (None: any status is the caller's to read)."""
    connect(target)
    limit = timeout if timeout is not None else target.timeout + 30
    try:
        proc = subprocess.run(
            ssh_argv(target, remote_command(argv)),
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
            timeout=limit,
        )
    except subprocess.TimeoutExpired:
        raise HostUnreachableError(f"host {target.name}: {argv[0]} did not finish within {limit:g} s") from None
    if proc.returncode == SSH_FAILED and _unreached(proc.stderr):
        raise HostUnreachableError(f"host {target.name} unreachable: {first_line(proc.stderr)}")
    if ok is not None and proc.returncode not in ok:
        raise SshCommandError(target.name, argv, proc.returncode, proc.stderr)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _unreached(stderr: str) -> bool:
    """Whether ssh's stderr says ssh failed (255 is also any remote command's own status 255)."""
    markers = ("ssh:", "Connection", "connect to host", "Permission denied", "Host key", "kex_exchange")
    return any(marker in stderr for marker in markers)


def run_batch(target: SshTarget, commands: Sequence[Sequence[str]], timeout: float | None = None) -> list[Result]:
    """Run the commands one after the other in one remote shell (one round trip), each with no stdin; each
    one's status and output, in order, whatever the others did."""
    if not commands:
        return []
    marker = f"MUXB{uuid.uuid4().hex}"
    lines = ['e="$(mktemp)" || exit 97']
    for index, argv in enumerate(commands):
        lines.append(
            f'{remote_command(argv)} </dev/null 2>"$e"; s=$?; printf \'\\n{marker}:{index}:%d\\n\' "$s";'
            # `cat` only after a command that wrote to stderr: a process per command doubled the batch's cost.
            f' if [ -s "$e" ]; then cat "$e"; fi; printf \'\\n{marker}:{index}:end\\n\''
        )
    lines.append('rm -f "$e"')
    found = run(target, ["sh", "-c", "\n".join(lines)], timeout=timeout, ok=None)
    return _split_batch(found.stdout, marker, len(commands), found)


def _split_batch(stdout: str, marker: str, count: int, whole: Result) -> list[Result]:
    results: list[Result] = []
    rest = stdout
    for index in range(count):
        head = f"\n{marker}:{index}:"
        out, found, rest = rest.partition(head)
        if not found:
            raise SshCommandError("?", ["sh"], whole.status, whole.stderr or "the remote shell stopped early")
        status_text, _, rest = rest.partition("\n")
        err, _, rest = rest.partition(f"\n{marker}:{index}:end\n")
        results.append(Result(int(status_text) if status_text.isdigit() else 1, out, err))
    return results


class RemoteProcesses:
    """Commands on one host as a `TmuxHost` (muxagent/tmux/runner.py) takes them: the tmux client of every call
    mux makes to the host's tmux server runs there, its stdin sent as data."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target

    def run(self, argv: Sequence[str], stdin: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
        found = run(self.target, argv, stdin=stdin, timeout=timeout + self.target.timeout, ok=None)
        return subprocess.CompletedProcess(list(argv), found.status, found.stdout, found.stderr)

    def replace_process(self, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
        """Become an ssh with a terminal running `argv` there (a tmux client attaching)."""
        connect(self.target)
        ssh = ssh_argv(self.target, remote_command(argv), tty=True)
        os.execvpe(ssh[0], ssh, dict(env))
