"""The one bwrap runner, and the command line that puts an agent in a sandbox.

The sandbox sees the whole filesystem read-only, with its own `/tmp`, `/run`, `/dev` and `/proc` (a pid
namespace of its own), and writes only where `Mounts.writable` says. Paths hidden under the private `/tmp`
that the agent still needs to read (a repository or a virtualenv living in /tmp) come back read-only through
`Mounts.readable`. Order matters to bwrap, which mounts in argv order: readable, then writable, then the
read-only holes punched in writable folders, then what is hidden.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from muxagent.errors import SandboxError

NETWORKS = ("full", "none")

NOT_INSTALLED = (
    "bubblewrap is not installed: install it (e.g. `apt-get install bubblewrap`) or start the task without --sandbox"
)

# Folders the sandbox replaces by empty ones of its own: /tmp (tmux's and other programs' sockets), and /run and a
# real /var/run, which hold the sockets of the machine's daemons (docker's among them, which is root on the host),
# the user's ssh and gpg agents and session bus under /run/user. What lies below them comes back only as `readable`.
PRIVATE_DIRS = ("/tmp", "/run", "/var/run")


def hidden_by_sandbox(path: Path) -> bool:
    """Whether `path` (symlinks followed) lies in one of PRIVATE_DIRS, so that the sandbox does not see it."""
    real = os.path.realpath(path)
    return any(real == folder or real.startswith(folder + "/") for folder in PRIVATE_DIRS)


# How long the probe may take: bwrap sets up its namespaces in a few milliseconds.
PROBE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Mounts:
    """What one sandbox mounts, each path absolute."""

    workdir: Path  # where the agent starts (its worktree)
    readable: tuple[Path, ...] = ()  # brought back read-only where a private folder (/tmp, /run) hid them
    writable: tuple[Path, ...] = ()  # bound read-write; those that do not exist are left out
    read_only: tuple[Path, ...] = ()  # bound read-only over a path inside a writable one
    hidden: tuple[Path, ...] = ()  # folders replaced by an empty one, files by /dev/null
    env: Mapping[str, str] = field(default_factory=dict)  # set inside the sandbox only
    network: str = "full"


def wrap(mounts: Mounts, argv: Sequence[str]) -> list[str]:
    """`argv` run inside the sandbox `mounts` describes."""
    out = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if mounts.network == "none":
        out.append("--unshare-net")
    out += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for private in PRIVATE_DIRS:
        if os.path.isdir(private) and not os.path.islink(private):  # /var/run is usually a link to /run
            out += ["--tmpfs", private]
    out += _resolver_files()
    for path in _existing(mounts.readable):
        out += ["--ro-bind", str(path), str(path)]
    for path in _existing(mounts.writable):
        out += ["--bind", str(path), str(path)]
    for path in _existing(mounts.read_only):
        out += ["--ro-bind", str(path), str(path)]
    for path in _existing(mounts.hidden):
        out += ["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]
    for key, value in mounts.env.items():
        out += ["--setenv", key, value]
    return [*out, "--chdir", str(mounts.workdir), "--", *argv]


def _existing(paths: Sequence[Path]) -> list[Path]:
    """The paths that exist (bwrap fails on a missing source), each once, in the order given."""
    return [path for path in dict.fromkeys(paths) if os.path.lexists(path)]


def _resolver_files() -> list[str]:
    """/etc/resolv.conf again when it points into the private /run (systemd-resolved's stub): without it, no
    name would resolve inside with the network on."""
    target = os.path.realpath("/etc/resolv.conf")
    if not target.startswith(("/run/", "/var/run/")) or not os.path.exists(target):
        return []
    return ["--ro-bind", target, target]


_works_at: list[str] = []  # the bwrap that made a sandbox in this process: a group of ten probes once


def check() -> None:
    """SandboxError with one line saying what to install or enable, unless a sandbox can be made here."""
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxError(NOT_INSTALLED)
    if found in _works_at:
        return
    probe = wrap(Mounts(workdir=Path("/")), ["true"])
    try:
        done = subprocess.run(
            [found, *probe[1:]], stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
            timeout=PROBE_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"bubblewrap cannot start here: {exc}") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise SandboxError(
            f"bubblewrap cannot make a sandbox here ({reason}): enable unprivileged user namespaces"
            " (sysctl kernel.unprivileged_userns_clone=1, or kernel.apparmor_restrict_unprivileged_userns=0)"
        )
    _works_at.append(found)
