"""The task lifecycle: ties worktrees (gitops), windows (tmux), profiles (config) and the registry (store)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from muxagent import config, gitops, naming, status
from muxagent.errors import (
    AgentNotFoundError,
    ConfigError,
    GitError,
    MuxError,
    TaskExistsError,
    TmuxError,
    UnknownTaskError,
    WouldLoseWorkError,
)
from muxagent.model import AgentProfile, PaneInfo, State, StatusRules, Task, TaskReport, iso_epoch, utc_iso
from muxagent.store import Registry, Store, task_to_dict
from muxagent.tmux import Tmux

PORT_FIRST = 20000
PORT_LAST = 60000
PORT_BLOCK = 10
# How long `mux new` waits for an agent without prompt arguments to draw its prompt before pasting the first one.
PROMPT_READY_TIMEOUT = 30.0
# States in which an agent is busy with something the user cares about: `mux clean` leaves these alone.
ACTIVE_STATES = frozenset({State.STARTING, State.WORKING, State.WAITING, State.UNKNOWN})


@dataclass
class Context:
    """One repository as seen by one mux command."""

    repo: gitops.RepoPaths
    store: Store
    tmux: Tmux
    notes: list[str] = field(default_factory=list)
    _settings: config.Settings | None = None

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            self._settings = config.load_settings(self.repo.main)
        return self._settings


def open_repo(cwd: Path | None = None) -> Context:
    repo = gitops.discover(cwd or Path.cwd())
    return Context(repo=repo, store=Store(repo.common_dir / "mux"), tmux=Tmux())


def now_iso() -> str:
    return utc_iso(time.time())


# ---------------------------------------------------------------------------------------------- registry


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
    worktrees = [
        wt
        for wt in gitops.list_worktrees(ctx.repo)
        if wt.branch and wt.branch.startswith(naming.BRANCH_PREFIX) and wt.path != ctx.repo.main
    ]
    if not worktrees and not rebuilt:
        return ctx.store.load()
    windows = _windows_by_task(ctx)
    with ctx.store.transaction() as registry:
        for wt in worktrees:
            assert wt.branch is not None
            name = wt.branch[len(naming.BRANCH_PREFIX) :]
            if name in registry:
                continue
            task = Task(
                name=name,
                agent="unknown",
                command=(),
                base=gitops.current_branch(ctx.repo.main) or "HEAD",
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


def _windows_by_task(ctx: Context) -> dict[str, str]:
    try:
        return ctx.tmux.windows_with_task()
    except TmuxError:
        return {}


def get_task(ctx: Context, name: str) -> Task:
    for task in load_tasks(ctx):
        if task.name == name:
            return task
    raise UnknownTaskError(f"no task named {name!r} (see `mux ls`)")


# ---------------------------------------------------------------------------------------------- mux new


@dataclass(frozen=True)
class NewRequest:
    name: str
    agent: str | None = None
    prompt: str | None = None
    base: str | None = None


class _Undo:
    """Steps to take back, newest first, if the operation fails before it completes."""

    def __init__(self) -> None:
        self._steps: list[Callable[[], object]] = []

    def push(self, step: Callable[[], object]) -> None:
        self._steps.append(step)

    def __enter__(self) -> _Undo:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            return
        for step in reversed(self._steps):
            # Keep undoing: the original error is the one worth reporting.
            with contextlib.suppress(MuxError):
                step()


def new_task(ctx: Context, request: NewRequest) -> Task:
    name = naming.validate_name(request.name)
    profile = config.resolve_agent(request.agent or ctx.settings.agent, ctx.settings)
    if config.command_available(profile) is None:
        raise AgentNotFoundError(
            f"agent {profile.name!r} is not installed: {profile.command[0]!r} was not found on PATH"
        )
    base = request.base or ctx.settings.base or gitops.current_branch(ctx.repo.main)
    if base is None:
        raise GitError("the main checkout is on a detached HEAD: pass --base REF")
    gitops.resolve_commit(ctx.repo, base)
    ctx.tmux.version()
    worktree = worktree_path(ctx, name)
    branch = naming.branch_for(name)
    argv = list(profile.command)
    if request.prompt is not None and profile.prompt_args is not None:
        argv += config.expand_args(profile.prompt_args, request.prompt)

    with _Undo() as undo, ctx.store.transaction() as registry:
        if name in registry:
            raise TaskExistsError(f"task {name!r} already exists")
        if gitops.branch_exists(ctx.repo, branch):
            raise TaskExistsError(f"branch {branch!r} already exists: pick another task name")
        if worktree.exists():
            raise TaskExistsError(f"worktree path {worktree} already exists: pick another task name")
        port = allocate_ports(name, {t.port for t in registry.values()})
        if not worktree.parent.exists():
            undo.push(lambda: _remove_if_empty(worktree.parent))
        gitops.add_worktree(ctx.repo, worktree, branch, base)
        undo.push(lambda: gitops.delete_branch(ctx.repo, branch))
        undo.push(lambda: gitops.remove_worktree(ctx.repo, worktree))
        env = {
            **profile.env,
            "MUX_TASK": name,
            "MUX_REPO": str(ctx.repo.main),
            "MUX_WORKTREE": str(worktree),
            "MUX_PORT": str(port),
        }
        session = naming.session_for(ctx.repo.main)
        window = ctx.tmux.new_window(session, name, worktree, argv, env, task=name)
        undo.push(lambda: ctx.tmux.kill_window(window))
        task = Task(
            name=name,
            agent=profile.name,
            command=tuple(argv),
            base=base,
            branch=branch,
            worktree=str(worktree),
            session=session,
            window=window,
            created=now_iso(),
            port=port,
            prompt=request.prompt,
        )
        registry.add(task)
    ctx.store.journal("new", task=task_to_dict(task))
    if request.prompt is not None and profile.prompt_args is None:
        _paste_when_ready(ctx, task, profile, request.prompt)
    return task


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


def worktree_path(ctx: Context, name: str) -> Path:
    template = ctx.settings.worktree_dir
    relative = template.replace("{repo}", ctx.repo.main.name).replace("{task}", name)
    path = Path(os.path.expanduser(relative))
    if not path.is_absolute():
        path = ctx.repo.main / path
    path = Path(os.path.normpath(path))
    if path == ctx.repo.main or ctx.repo.main in path.parents:
        raise ConfigError(f"worktree_dir {template!r} puts worktrees inside the main checkout: move it outside")
    return path


def allocate_ports(name: str, taken: set[int]) -> int:
    """First port of a block of PORT_BLOCK ports, free now and not reserved by another task."""
    blocks = (PORT_LAST - PORT_FIRST) // PORT_BLOCK
    start = int(hashlib.sha1(name.encode()).hexdigest(), 16) % blocks
    for i in range(blocks):
        first = PORT_FIRST + ((start + i) % blocks) * PORT_BLOCK
        if first in taken:
            continue
        if all(_port_free(port) for port in range(first, first + PORT_BLOCK)):
            return first
    raise MuxError("no free block of ports left for the task's MUX_PORT")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _paste_when_ready(ctx: Context, task: Task, profile: AgentProfile, text: str) -> None:
    """Paste the first prompt once the agent shows its prompt (or its screen settles)."""
    deadline = time.monotonic() + PROMPT_READY_TIMEOUT
    previous: str | None = None
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        screen = status.normalize_screen(ctx.tmux.capture([task.window]).get(task.window, ""))
        pane = _pane_of(ctx.tmux.snapshot(), task)
        if pane is None or pane.dead:
            ctx.notes.append(f"the agent of '{task.name}' exited before its prompt could be delivered")
            return
        if screen != previous:
            previous, stable_since = screen, time.monotonic()
        ready = status.first_match(profile.status.idle, screen) is not None
        if screen.strip() and (ready or time.monotonic() - stable_since >= 1.0):
            ctx.tmux.send_text(task.window, text)
            return
        time.sleep(0.1)
    ctx.notes.append(f"'{task.name}' did not show a prompt within {PROMPT_READY_TIMEOUT:.0f}s; use `mux send`")


# ---------------------------------------------------------------------------------------------- mux ls


def _pane_of(panes: list[PaneInfo], task: Task) -> PaneInfo | None:
    # Window ids are reused after a tmux server restart: the @mux_task option must match too.
    for pane in panes:
        if pane.window_id == task.window and pane.task == task.name:
            return pane
    return None


def _rules_for(agent: str, settings: config.Settings | None, cache: dict[str, StatusRules]) -> StatusRules:
    if agent not in cache:
        try:
            cache[agent] = config.resolve_agent(agent, settings).status
        except MuxError:
            cache[agent] = config.resolve_agent("shell", None).status
    return cache[agent]


def list_reports(ctx: Context) -> list[TaskReport]:
    tasks = load_tasks(ctx)
    if not tasks:
        return []
    try:
        panes = ctx.tmux.snapshot()
        server_running = bool(panes) or ctx.tmux.server_running()
    except TmuxError as exc:
        ctx.notes.append(str(exc))
        panes, server_running = [], False
    pane_by_task = {task.name: _pane_of(panes, task) for task in tasks}
    live = [p.pane_id for p in pane_by_task.values() if p is not None and not p.dead]
    screens = ctx.tmux.capture(live) if live else {}
    exists = {task.name: Path(task.worktree).is_dir() for task in tasks}
    present = [task for task in tasks if exists[task.name]]
    changes = dict(
        zip(
            [t.name for t in present],
            gitops.changes_many([(Path(t.worktree), t.base, t.branch) for t in present]),
            strict=True,
        )
    )
    now = time.time()
    rules: dict[str, StatusRules] = {}
    reports = []
    for task in tasks:
        pane = pane_by_task[task.name]
        observation = status.Observation(
            pane=pane,
            screen=screens.get(pane.pane_id) if pane is not None else None,
            worktree_exists=exists[task.name],
            server_running=server_running,
            created=iso_epoch(task.created) or 0.0,
            now=now,
        )
        settings = _settings_or_none(ctx)
        task_status = status.classify(observation, _rules_for(task.agent, settings, rules))
        reports.append(TaskReport(task=task, status=task_status, changes=changes.get(task.name)))
    return reports


def _settings_or_none(ctx: Context) -> config.Settings | None:
    try:
        return ctx.settings
    except ConfigError as exc:
        if str(exc) not in ctx.notes:
            ctx.notes.append(str(exc))
        return None


def report(ctx: Context, name: str) -> TaskReport:
    for item in list_reports(ctx):
        if item.task.name == name:
            return item
    raise UnknownTaskError(f"no task named {name!r} (see `mux ls`)")


# ---------------------------------------------------------------------------------------------- attach send peek diff


def _live_pane(ctx: Context, task: Task) -> PaneInfo:
    pane = _pane_of(ctx.tmux.snapshot(), task)
    if pane is None:
        raise MuxError(f"task {task.name!r} has no tmux window (state missing): `mux rm {task.name}` or restart it")
    return pane


def attach(ctx: Context, name: str) -> None:
    task = get_task(ctx, name)
    _live_pane(ctx, task)
    ctx.tmux.attach(task.session, task.window)


def send(ctx: Context, name: str, text: str) -> None:
    task = get_task(ctx, name)
    pane = _live_pane(ctx, task)
    if pane.dead:
        raise MuxError(f"the agent of {name!r} has exited (status {pane.dead_status}): nothing to send to")
    ctx.tmux.send_text(pane.pane_id, text)


def peek(ctx: Context, name: str, lines: int | None = None) -> str:
    task = get_task(ctx, name)
    pane = _live_pane(ctx, task)
    return ctx.tmux.capture([pane.pane_id], lines=lines).get(pane.pane_id, "")


def diff(ctx: Context, name: str, stat: bool = False) -> str:
    task = get_task(ctx, name)
    if not Path(task.worktree).is_dir():
        raise MuxError(f"the worktree of {name!r} is gone ({task.worktree})")
    return gitops.diff(Path(task.worktree), task.base, stat=stat)


# ---------------------------------------------------------------------------------------------- rm, clean


@dataclass(frozen=True)
class Removal:
    task: Task
    recovery_ref: str | None

    @property
    def restore_hint(self) -> str | None:
        if self.recovery_ref is None:
            return None
        return f"git worktree add -b {self.task.branch} '{self.task.worktree}' {self.recovery_ref}"


def remove(ctx: Context, name: str, force: bool = False) -> Removal:
    with ctx.store.transaction() as registry:
        task = registry.get(name)
        if task is None:
            raise UnknownTaskError(f"no task named {name!r} (see `mux ls`)")
        removal = _remove_locked(ctx, registry, task, force)
    ctx.store.journal("rm", name=name, recovery_ref=removal.recovery_ref)
    return removal


def _remove_locked(ctx: Context, registry: Registry, task: Task, force: bool) -> Removal:
    worktree = Path(task.worktree)
    present = worktree.is_dir()
    has_branch = gitops.branch_exists(ctx.repo, task.branch)
    lost = gitops.unsaved_work(ctx.repo, worktree if present else None, task.branch, task.base) if has_branch else []
    if lost and not force:
        raise WouldLoseWorkError(
            f"task {task.name!r} has work that exists nowhere else: {'; '.join(lost)}"
            f" (merge it, or `mux rm --force {task.name}` keeps a recovery ref)"
        )
    ref = None
    if lost:
        ref = gitops.write_recovery_ref(ctx.repo, task.name, task.branch, worktree if present else None)
        ctx.store.journal("recovery", name=task.name, ref=ref, lost=lost)
    if task.window:
        ctx.tmux.kill_window(task.window)
    if present or any(wt.path == worktree for wt in gitops.list_worktrees(ctx.repo)):
        gitops.remove_worktree(ctx.repo, worktree)
    if has_branch:
        gitops.delete_branch(ctx.repo, task.branch)
    registry.remove(task.name)
    return Removal(task=task, recovery_ref=ref)


@dataclass(frozen=True)
class CleanResult:
    removed: list[str]
    kept: dict[str, str]


def clean(ctx: Context, dry_run: bool = False) -> CleanResult:
    removed: list[str] = []
    kept: dict[str, str] = {}
    for item in list_reports(ctx):
        task = item.task
        if item.status.state in ACTIVE_STATES:
            kept[task.name] = f"agent is {item.status.state.value}"
            continue
        present = Path(task.worktree).is_dir()
        has_branch = gitops.branch_exists(ctx.repo, task.branch)
        lost = gitops.unsaved_work(ctx.repo, Path(task.worktree) if present else None, task.branch, task.base)
        if has_branch and lost:
            kept[task.name] = "; ".join(lost)
            continue
        if not dry_run:
            remove(ctx, task.name)
        removed.append(task.name)
    return CleanResult(removed=removed, kept=kept)


# ---------------------------------------------------------------------------------------------- agents, doctor


def agents(ctx: Context | None) -> list[tuple[AgentProfile, str | None]]:
    settings = _settings_or_none(ctx) if ctx is not None else None
    return [(profile, config.command_available(profile)) for profile in config.list_profiles(settings)]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fatal: bool = True


MIN_GIT = (2, 38)


def doctor(cwd: Path) -> list[Check]:
    checks = [_check_git(), _check_tmux()]
    try:
        ctx = open_repo(cwd)
    except MuxError as exc:
        return [*checks, Check("repository", False, str(exc))]
    checks.append(Check("repository", True, str(ctx.repo.main)))
    checks.append(_check_server(ctx))
    checks.extend(_check_store(ctx))
    return checks


def _check_git() -> Check:
    version = gitops.git_version()
    ok = version >= MIN_GIT
    text = ".".join(map(str, version))
    detail = text if ok else f"{text}: git >= 2.38 is needed for merge pre-checks (`git merge-tree --write-tree`)"
    return Check("git", ok, detail)


def _check_tmux() -> Check:
    try:
        return Check("tmux", True, Tmux().version())
    except TmuxError as exc:
        return Check("tmux", False, str(exc))


def _check_server(ctx: Context) -> Check:
    socket_name = ctx.tmux.socket or "default"
    try:
        running = ctx.tmux.server_running()
    except TmuxError as exc:
        return Check("tmux server", False, str(exc))
    detail = "running" if running else "not running (it starts with the first task)"
    return Check("tmux server", True, f"{detail}, socket {socket_name}", fatal=False)


def _check_store(ctx: Context) -> list[Check]:
    try:
        tasks = load_tasks(ctx)
    except MuxError as exc:
        return [Check("task registry", False, str(exc))]
    checks = [Check("task registry", True, f"{len(tasks)} task(s) in {ctx.store.root}")]
    known = {task.name for task in tasks}
    problems: list[str] = []
    for wt in gitops.list_worktrees(ctx.repo):
        if wt.branch and wt.branch.startswith(naming.BRANCH_PREFIX) and wt.branch[4:] not in known:
            problems.append(f"worktree {wt.path} has no task record")
    for task in tasks:
        if not Path(task.worktree).is_dir():
            problems.append(f"task '{task.name}' has no worktree ({task.worktree})")
    session = naming.session_for(ctx.repo.main)
    try:
        panes = ctx.tmux.snapshot()
    except TmuxError:
        panes = []
    for pane in panes:
        if pane.session == session and pane.task and pane.task not in known:
            problems.append(f"window {pane.window_id} belongs to no task ('{pane.task}')")
    checks.extend(Check("orphan", False, problem, fatal=False) for problem in problems)
    if not problems:
        checks.append(Check("orphans", True, "none"))
    return checks
