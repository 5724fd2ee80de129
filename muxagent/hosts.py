"""The hosts a task can live on: `$XDG_CONFIG_HOME/mux/hosts.toml`, written by `mux host add` (hand edits are
fine), read into SshTargets.

    [hosts.gpu1]
    address = "me@gpu1.example.com:2222"   # [USER@]HOST[:PORT]
    path = "~/.cache/mux/repos"            # where mux keeps its repositories on the host
    ssh_options = ["IdentityFile=~/.ssh/gpu1"]
    ssh_timeout = 5.0                       # seconds before the host counts as unreachable
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxagent import naming
from muxagent.errors import ConfigError, InvalidNameError, MuxError
from muxagent.ssh.runner import SshTarget, parse_address, parse_option

DEFAULT_PATH = "~/.cache/mux/repos"
DEFAULT_TIMEOUT = 5.0
_KEYS = ("address", "path", "ssh_options", "ssh_timeout")


@dataclass(frozen=True)
class Host:
    """One host as recorded: its name, how to reach it, where its repositories go."""

    name: str
    address: str
    path: str = DEFAULT_PATH
    ssh_options: tuple[str, ...] = ()
    ssh_timeout: float = DEFAULT_TIMEOUT

    @property
    def target(self) -> SshTarget:
        user, hostname, port = parse_address(self.address)
        options = tuple(parse_option(option) for option in self.ssh_options)
        return SshTarget(self.name, hostname, user, port, options, self.ssh_timeout)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "path": self.path,
            "ssh_options": list(self.ssh_options),
            "ssh_timeout": self.ssh_timeout,
        }


def hosts_file() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return base / "mux" / "hosts.toml"


def validate_host_name(name: str) -> str:
    """A host's name follows the task-name rules (it names a window, a folder, a control socket)."""
    try:
        return naming.validate_name(name)
    except InvalidNameError as exc:
        raise InvalidNameError(str(exc).replace("task name", "host name")) from None


def make_host(name: str, address: str, path: str | None, options: Sequence[str], timeout: float | None) -> Host:
    """A host record from what the user typed, every part checked: MuxError naming the part that is wrong."""
    validate_host_name(name)
    parse_address(address)
    for option in options:
        parse_option(option)
    if path is not None and (not path or "\0" in path or "\n" in path):
        raise MuxError(f"invalid host path {path!r}")
    if timeout is not None and not 0 < timeout <= 600:
        raise MuxError(f"invalid ssh_timeout {timeout!r}: seconds, more than 0 and at most 600")
    return Host(name, address, path or DEFAULT_PATH, tuple(options), timeout or DEFAULT_TIMEOUT)


def load_hosts() -> dict[str, Host]:
    """Every recorded host by name; ConfigError naming the file and the entry when one is malformed."""
    path = hosts_file()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    table = data.get("hosts", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: `hosts` should be a table of hosts")
    found = {}
    for name, entry in table.items():
        found[name] = _host_from(path, name, entry)
    return found


def _host_from(path: Path, name: str, entry: object) -> Host:
    where = f"{path}: host {name!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} should be a table")
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})")
    address, base, options, timeout = (entry.get(key) for key in _KEYS)
    if not isinstance(address, str):
        raise ConfigError(f"{where}: `address` should be a string, [USER@]HOST[:PORT]")
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{where}: `path` should be a string")
    if options is not None and not (isinstance(options, list) and all(isinstance(o, str) for o in options)):
        raise ConfigError(f"{where}: `ssh_options` should be a list of KEY=VALUE strings")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise ConfigError(f"{where}: `ssh_timeout` should be a number of seconds")
    try:
        return make_host(name, address, base, options or (), float(timeout) if timeout is not None else None)
    except MuxError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def get_host(name: str) -> Host:
    validate_host_name(name)
    hosts = load_hosts()
    if name not in hosts:
        raise MuxError(f"no host named {name!r} (see `mux host ls`; add one with `mux host add`)")
    return hosts[name]


def save_hosts(hosts: dict[str, Host]) -> None:
    """Write the file whole and atomically: a crash leaves the old file or the new one, never half of one."""
    import tomli_w  # only `mux host add` and `rm` write

    path = hosts_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    table = {name: {k: v for k, v in host.to_json().items() if k != "name"} for name, host in sorted(hosts.items())}
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        temporary.write_text(tomli_w.dumps({"hosts": table}), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
