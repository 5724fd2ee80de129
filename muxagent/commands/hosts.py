"""`mux host add | ls | rm | check`: the machines a task can live on (muxagent/hosts.py keeps the list)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from muxagent import hosts, render
from muxagent.errors import MuxError
from muxagent.hosts import Host
from muxagent.ssh import runner as ssh

MIN_GIT = (2, 38)
MIN_TMUX = (3, 2)


@dataclass(frozen=True)
class HostList:
    hosts: tuple[Host, ...]

    def to_json(self) -> list[dict[str, Any]]:
        return [host.to_json() for host in self.hosts]

    def text(self) -> str:
        if not self.hosts:
            return "no hosts (add one with `mux host add NAME [USER@]HOST[:PORT]`)"
        rows = [(h.name, h.address, h.path, " ".join(h.ssh_options)) for h in self.hosts]
        return "\n".join(render.columns(("NAME", "ADDRESS", "PATH", "SSH OPTIONS"), rows))


def add(name: str, address: str, path: str | None, options: list[str], timeout: float | None) -> Host:
    host = hosts.make_host(name, address, path, options, timeout)
    known = hosts.load_hosts()
    if name in known:
        raise MuxError(f"host {name!r} exists: `mux host rm {name}` first")
    known[name] = host
    hosts.save_hosts(known)
    return host


def listed() -> HostList:
    return HostList(tuple(sorted(hosts.load_hosts().values(), key=lambda h: h.name)))


def remove(name: str, tasks_on: list[str]) -> Host:
    """Forget a host; refused while tasks of this repository live there (their work would be out of reach)."""
    host = hosts.get_host(name)
    if tasks_on:
        raise MuxError(f"host {name!r} has tasks: {', '.join(tasks_on)} (merge or `mux rm` them first)")
    known = hosts.load_hosts()
    del known[name]
    hosts.save_hosts(known)
    ssh.disconnect(host.target)
    return host


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class HostCheck:
    host: Host
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.host.name,
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }

    def text(self) -> str:
        return "\n".join(f"{'ok' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks)


def _version(text: str) -> tuple[int, ...]:
    for word in text.replace("-", " ").split():
        numbers = [part for part in word.rstrip("abcdefghijklmnopqrstuvwxyz").split(".") if part]
        if numbers and all(part.isdigit() for part in numbers):
            return tuple(int(part) for part in numbers)
    return ()


def _shown(version: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in version)


def check(name: str) -> HostCheck:
    """Whether the host can take tasks: reachable, git and tmux new enough, mux there for hooks, disk free."""
    host = hosts.get_host(name)
    target = host.target
    try:
        home, git, tmux, mux, disk = ssh.run_batch(
            target,
            [
                ["sh", "-c", 'printf "%s" "$HOME"'],
                ["git", "--version"],
                ["tmux", "-V"],
                ["python3", "-m", "muxagent", "--version"],
                ["sh", "-c", 'df -Pk "$HOME" | tail -n 1'],
            ],
        )
    except MuxError as exc:
        return HostCheck(host, (Check("reachable", False, str(exc)),))
    found = [Check("reachable", True, f"{target.address} (home {home.stdout})")]
    found.append(_tool("git", git, MIN_GIT))
    found.append(_tool("tmux", tmux, MIN_TMUX))
    if mux.status == 0:
        found.append(Check("mux", True, f"installed ({mux.stdout.strip()}): states from the agents' hooks"))
    else:
        found.append(Check("mux", True, "not installed there: states from the screen"))
    fields = disk.stdout.split()
    free = int(fields[3]) // 1024 if len(fields) > 3 and fields[3].isdigit() else None
    found.append(Check("disk", free is None or free >= 100, f"{free} MiB free" if free is not None else "unknown"))
    return HostCheck(host, tuple(found))


def _tool(name: str, result: ssh.Result, minimum: tuple[int, ...]) -> Check:
    if result.status != 0:
        return Check(name, False, f"not installed (need {name} >= {_shown(minimum)})")
    version = _version(result.stdout)
    if version < minimum:
        return Check(name, False, f"{_shown(version)} (need >= {_shown(minimum)})")
    return Check(name, True, _shown(version))
