"""A real sshd on 127.0.0.1 standing in for another machine: its own host key, config, authorized key, a separate
"remote" home and tmux folder (so the host's tmux server is not the caller's), closed with every process it
started: the shared connections, the host's tmux server, sshd and its children. Used by the tests
(remote_helpers.py) and the benchmark (bench/remote.py); no pytest here."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass(frozen=True)
class RemoteHost:
    """A host the test can `mux host add`: how to reach it, and what lies on its side."""

    port: int
    key: Path
    known_hosts: Path
    home: Path  # HOME of every session on the host
    tmux_dir: Path  # TMUX_TMPDIR there: the host's tmux server has its socket in here
    sshd_pid: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def options(self) -> list[str]:
        return [
            "--ssh-option", f"IdentityFile={self.key}",
            "--ssh-option", f"UserKnownHostsFile={self.known_hosts}",
            "--ssh-option", "IdentitiesOnly=yes",
        ]  # fmt: skip

    def add_args(self, name: str = "box", timeout: float | None = None) -> list[str]:
        """The arguments of the `mux host add` that records this host as `name`."""
        extra = ["--ssh-timeout", str(timeout)] if timeout else []
        return ["host", "add", name, self.address, *self.options, *extra]

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A tmux command on the host's own server (`mux`'s socket there)."""
        socket_path = self.tmux_dir / f"tmux-{os.getuid()}" / "mux"
        return subprocess.run(["tmux", "-S", str(socket_path), *args], capture_output=True, text=True, check=False)

    def stop(self) -> None:
        """The host disappears: sshd and every connection it serves (the shared ones included) end."""
        for child in _children(self.sshd_pid):
            _signal(child, signal.SIGKILL)
        _signal(self.sshd_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(self.sshd_pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _start(folder: Path, remote: Path) -> tuple[subprocess.Popen[bytes], int]:
    for _ in range(5):  # another worker may take the free port first
        port = _free_port()
        config = folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {port}",
                    f"HostKey {folder / 'hostkey'}",
                    "PidFile none",
                    f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    f"SetEnv HOME={remote / 'home'} TMUX_TMPDIR={remote / 'tmux'}",
                    "",
                ]
            )
        )
        log = folder / "sshd.log"
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log.open("wb"),
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if "Server listening" in log.read_text(errors="replace"):
                return proc, port
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise RuntimeError(f"sshd did not start: {(folder / 'sshd.log').read_text(errors='replace')}")


def open_host(folder: Path, remote: Path) -> tuple[RemoteHost, subprocess.Popen[bytes]]:
    """Start sshd with its keys in `folder` (short: the shared connections' sockets go under it too, as
    XDG_RUNTIME_DIR) and the host's home and tmux folder under `remote`."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    (remote / "home").mkdir(parents=True)
    (remote / "tmux").mkdir()
    (remote / "home" / ".gitconfig").write_text("[user]\n\tname = Remote\n\temail = remote@example.com\n")
    _keygen(folder / "hostkey")
    _keygen(folder / "userkey")
    shutil.copy(folder / "userkey.pub", folder / "authorized_keys")
    proc, port = _start(folder, remote)
    host_key = " ".join((folder / "hostkey.pub").read_text().split()[:2])
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    host = RemoteHost(port, folder / "userkey", folder / "known_hosts", remote / "home", remote / "tmux", proc.pid)
    return host, proc


def close_host(host: RemoteHost, proc: subprocess.Popen[bytes], folder: Path, runtime: Path | None = None) -> None:
    """The host's tmux server, the shared connections to it (their sockets under `runtime`, default `folder`), then
    sshd: nothing outlives the caller."""
    host.tmux("kill-server")
    sockets = (runtime or folder) / "mux" / "ssh"
    for control in sockets.glob("*") if sockets.is_dir() else ():
        subprocess.run(["ssh", "-o", f"ControlPath={control}", "-O", "exit", "x"], capture_output=True, check=False)
    host.stop()
    proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


def available() -> bool:
    return shutil.which("ssh") is not None and os.path.exists(SSHD)
