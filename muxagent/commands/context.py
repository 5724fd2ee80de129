"""One repository as seen by one mux command, and the task registry read through it (lost records brought back)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from muxagent import config, naming
from muxagent.errors import ConfigError, NotARepoError, TmuxError, UnknownTaskError
from muxagent.git import repository, worktrees
from muxagent.git.repository import RepoPaths
from muxagent.git.worktrees import WorktreeInfo
from muxagent.model import Task, utc_iso
from muxagent.state import intents
from muxagent.state.store import Registry, Store, task_to_dict
from muxagent.tmux.client import Tmux

# The socket of the tmux server mux runs on another host (`mux new --host`): its own, not the user's there.
REMOTE_SOCKET = "mux"


@dataclass
class Context:
    """One repository as seen by one mux command."""

    repo: RepoPaths
    store: Store
    tmux: Tmux
    notes: list[str] = field(default_factory=list)
    _settings: config.Settings | None = None
    _remote_tmux: dict[str, Tmux] = field(default_factory=dict)

    def tmux_for(self, host: str | None) -> Tmux:
        """The tmux server of a task on `host` (None: this machine's, `tmux`), every call of it over SSH there."""
        if host is None:
            return self.tmux
        if host not in self._remote_tmux:
            from muxagent import hosts
            from muxagent.ssh.runner import RemoteProcesses

            self._remote_tmux[host] = Tmux(REMOTE_SOCKET, host=RemoteProcesses(hosts.get_host(host).target), utf8=True)
        return self._remote_tmux[host]

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            self._settings = config.load_settings(self.repo.main)
        return self._settings


def current_dir() -> Path:
    """The working directory; NotARepoError when it was deleted (a shell left in a removed worktree)."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise NotARepoError("the current directory no longer exists: cd into a repository") from None


def open_repo(cwd: Path | None = None) -> Context:
    """The repository at `cwd` (default: the working directory), as found: a command that acts on its tasks opens
    it with muxagent.commands.recovery.open_and_recover, which first finishes what a crashed command left."""
    repo = repository.discover(cwd or current_dir())
    return Context(repo=repo, store=Store(repo.common_dir / "mux"), tmux=Tmux())


def now_iso() -> str:
    return utc_iso(time.time())


def load_tasks(ctx: Context) -> list[Task]:
    registry = ctx.store.load()
    rebuilt = ctx.store.rebuilt
    if rebuilt:
        ctx.notes.append(rebuilt)
    if rebuilt or len(registry) == 0:
        registry = _reconcile(ctx, rebuilt=rebuilt is not None)
    return sorted(registry.values(), key=lambda t: (t.created, t.name))


def _reconcile(ctx: Context, rebuilt: bool) -> Registry:
    """Bring back tasks the registry lost (missing or corrupt file) from git worktrees and tmux windows."""
    busy = {naming.branch_for(name) for name in intents.names(ctx.store.root)}
    task_worktrees = [
        wt
        for wt in worktrees.list_worktrees(ctx.repo)
        if wt.branch
        and wt.branch.startswith(naming.BRANCH_PREFIX)
        and wt.path != ctx.repo.main
        and wt.branch not in busy
    ]
    if task_worktrees:
        recorded = _recorded_worktrees(ctx)
        task_worktrees = [wt for wt in task_worktrees if _made_by_mux(ctx, wt, recorded)]
    if not task_worktrees and not rebuilt:
        return ctx.store.load()
    windows = _windows_by_task(ctx)
    with ctx.store.transaction() as registry:
        for wt in task_worktrees:
            assert wt.branch is not None
            name = wt.branch[len(naming.BRANCH_PREFIX) :]
            if name in registry:
                continue
            task = Task(
                name=name,
                agent="unknown",
                command=(),
                base=repository.current_branch(ctx.repo.main) or "HEAD",
                branch=wt.branch,
                worktree=str(wt.path),
                session=naming.session_for(ctx.repo.main),
                window=windows.get(name, ""),
                created=now_iso(),
                port=0,
            )
            registry.add(task)
            ctx.store.journal("adopt", task=task_to_dict(task))
            ctx.notes.append(f"task '{name}' was not in the registry; adopted from its worktree {wt.path}")
        for task in registry.values():
            window = windows.get(task.name)
            if window and window != task.window:
                registry.replace(replace(task, window=window))
        return registry


def _recorded_worktrees(ctx: Context) -> set[str]:
    """The real paths of the worktrees the journal says a `mux new` or `mux restore` made."""
    found = set()
    for entry in ctx.store.read_journal():
        record = entry.get("task")
        if entry.get("action") == "new" and isinstance(record, dict) and isinstance(record.get("worktree"), str):
            found.add(os.path.realpath(record["worktree"]))
    return found


def _made_by_mux(ctx: Context, wt: WorktreeInfo, recorded: set[str]) -> bool:
    """Whether mux made this worktree of a `mux/` branch: it is where worktree_dir puts it, or the journal says so.
    Only those are adopted: `clean` then removing a merged `git worktree add -b mux/x ~/elsewhere/x` of the
    user's deleted a worktree mux did not create."""
    real = os.path.realpath(wt.path)
    if real in recorded:
        return True
    try:
        return real == os.path.realpath(worktree_path(ctx, (wt.branch or "")[len(naming.BRANCH_PREFIX) :]))
    except ConfigError:
        return False


def _windows_by_task(ctx: Context) -> dict[str, str]:
    try:
        return ctx.tmux.windows_with_task(naming.session_for(ctx.repo.main))
    except TmuxError:
        return {}


def get_task(ctx: Context, name: str) -> Task:
    naming.validate_name(name)  # a name no task can have says which rule it breaks, not "no task named"
    for task in load_tasks(ctx):
        if task.name == name:
            return task
    raise UnknownTaskError(f"no task named {name!r} (see `mux ls`)")


def worktree_path(ctx: Context, name: str) -> Path:
    template = ctx.settings.worktree_dir
    path = config.worktree_location(template, ctx.repo.main, name)
    if ctx.settings.confine_worktrees and config.confined_worktree(template, ctx.repo.main, name) is None:
        raise ConfigError(
            f"worktree_dir {template!r} of the untrusted {ctx.settings.repo_config} puts {name!r} outside the"
            f" default worktree folder (through a symlink): read it, then `mux trust`, or pick another name"
        )
    if path == ctx.repo.main or ctx.repo.main in path.parents:
        raise ConfigError(f"worktree_dir {template!r} puts worktrees inside the main checkout: move it outside")
    return path


def settings_or_none(ctx: Context) -> config.Settings | None:
    try:
        return ctx.settings
    except ConfigError as exc:
        if str(exc) not in ctx.notes:
            ctx.notes.append(str(exc))
        return None
