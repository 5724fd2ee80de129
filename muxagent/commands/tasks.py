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

from muxagent import config, naming
from muxagent.commands import worktree_setup
from muxagent.errors import (
    AgentNotFoundError,
    BranchExistsError,
    ConfigError,
    GitError,
    MuxError,
    NotARepoError,
    TaskExistsError,
    TmuxError,
    UnknownTaskError,
    UsageError,
    WouldLoseWorkError,
)
from muxagent.git import gitops
from muxagent.model import (
    AgentProfile,
    PaneInfo,
    Progress,
    State,
    StatusRules,
    Task,
    TaskReport,
    TaskStatus,
    iso_epoch,
    no_progress,
    utc_iso,
)
from muxagent.state import intents, monitor_state, prompt_queue, trust
from muxagent.state.store import Registry, Store, task_to_dict
from muxagent.status import adapters, changes, events, patterns, radar
from muxagent.status import classifier as status
from muxagent.tmux.client import ScreenCache, Tmux

PORT_FIRST = 20000
PORT_LAST = 60000
PORT_BLOCK = 10
# How long `mux new` waits for an agent without prompt arguments to draw its prompt before pasting the first one.
PROMPT_READY_TIMEOUT = 30.0
# tmux takes a command line of at most 16 KB and the kernel an argument of at most 128 KB: a 20 KB prompt on the
# agent's command line failed with "command too long", a 200 KB one with E2BIG. A prompt longer than this is
# pasted once the agent is ready instead, as for a profile without prompt_args.
PROMPT_ARG_MAX = 8192
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


def current_dir() -> Path:
    """The working directory; NotARepoError when it was deleted (a shell left in a removed worktree)."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise NotARepoError("the current directory no longer exists: cd into a repository") from None


def open_repo(cwd: Path | None = None) -> Context:
    repo = gitops.discover(cwd or current_dir())
    ctx = Context(repo=repo, store=Store(repo.common_dir / "mux"), tmux=Tmux())
    if intents.pending(ctx.store.root):  # a crashed command left its intent: finish or roll it back first
        from muxagent.commands import merge  # imported here only: merge builds on this module

        merge.recover(ctx)
    return ctx


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
    busy = {naming.branch_for(name) for name in intents.names(ctx.store.root)}
    worktrees = [
        wt
        for wt in gitops.list_worktrees(ctx.repo)
        if wt.branch
        and wt.branch.startswith(naming.BRANCH_PREFIX)
        and wt.path != ctx.repo.main
        and wt.branch not in busy
    ]
    if worktrees:
        recorded = _recorded_worktrees(ctx)
        worktrees = [wt for wt in worktrees if _made_by_mux(ctx, wt, recorded)]
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


def _recorded_worktrees(ctx: Context) -> set[str]:
    """The real paths of the worktrees the journal says a `mux new` or `mux restore` made."""
    found = set()
    for entry in ctx.store.read_journal():
        record = entry.get("task")
        if entry.get("action") == "new" and isinstance(record, dict) and isinstance(record.get("worktree"), str):
            found.add(os.path.realpath(record["worktree"]))
    return found


def _made_by_mux(ctx: Context, wt: gitops.WorktreeInfo, recorded: set[str]) -> bool:
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


def new_task(ctx: Context, request: NewRequest, progress: Progress = no_progress) -> Task:
    name = naming.validate_name(request.name)
    if request.prompt is not None:
        naming.validate_prompt(request.prompt)
    if request.base is not None and not request.base.strip():
        raise UsageError("--base is empty: give a branch or commit to start from")
    _warn_untrusted(ctx)
    profile = config.resolve_agent(request.agent or ctx.settings.agent, ctx.settings)
    if config.command_available(profile) is None:
        raise AgentNotFoundError(
            f"agent {profile.name!r} is not installed: {profile.command[0]!r} was not found on PATH"
        )
    base = request.base or ctx.settings.base or gitops.current_branch(ctx.repo.main)
    if base is None:
        raise GitError("the main checkout is on a detached HEAD: pass --base REF")
    start = gitops.resolve_commit(ctx.repo, base)
    ctx.tmux.require()
    worktree = worktree_path(ctx, name)
    branch = naming.branch_for(name)
    adapter = adapters.install(profile.hooks, ctx.store.root)
    argv = [*profile.command, *adapter.args]
    prompt_on_command_line = False
    if (
        request.prompt is not None
        and profile.prompt_args is not None
        and len(request.prompt.encode()) <= PROMPT_ARG_MAX
    ):
        argv += config.expand_args(profile.prompt_args, request.prompt)
        prompt_on_command_line = True

    intent = intents.intent(ctx.store.root, "new", name=name, worktree=str(worktree), base=base)
    with intent, _Undo() as undo, ctx.store.transaction() as registry:
        if name in registry:
            raise TaskExistsError(f"task {name!r} already exists")
        progress(f"creating {branch} from {base} at {worktree}")
        # The files are checked out in the task's window, before the agent: `mux new` does not wait for a big
        # checkout, and the window shows it (`mux ls` says `starting`; a failure leaves the task inspectable).
        port = reserve_worktree(
            ctx, registry, undo, name, worktree, start, if_taken="pick another task name", checkout=False
        )
        intents.crash_point("new:after-worktree")
        pane_argv = _prepare_worktree(ctx, name, worktree, argv)
        env = agent_env(ctx, name, worktree, port, profile, adapter)
        # Claude fires no hook for a prompt given on its command line: the turn it starts is marked here.
        busy = prompt_on_command_line and profile.hooks != "none"
        mark_spawn(ctx, name, State.WORKING if busy else None)
        session = naming.session_for(ctx.repo.main)
        window = ctx.tmux.new_window(session, name, worktree, gitops.pane_command(worktree, pane_argv), env, task=name)
        undo.push(lambda: ctx.tmux.kill_window(window))
        intents.crash_point("new:after-window")
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
        journal_creation(ctx, undo, task)
    intents.crash_point("new:after-record")
    if pane_argv != argv:
        _await_setup(ctx, task, progress)
    if request.prompt is not None and not prompt_on_command_line:
        _paste_when_ready(ctx, task, profile, request.prompt)
    return task


def journal_creation(ctx: Context, undo: _Undo, task: Task, **fields: object) -> None:
    """The journal's `new` line, inside the transaction that adds the record, before the registry file: written
    after it, a crash in between and then a lost `tasks.json` brought the task back as adopted, its agent and
    prompt forgotten. A transaction that then fails takes the line back with an `rm` one."""
    ctx.store.journal("new", task=task_to_dict(task), **fields)
    undo.push(lambda: ctx.store.journal("rm", name=task.name, recovery_ref=None))


def reserve_worktree(
    ctx: Context, registry: Registry, undo: _Undo, name: str, worktree: Path, start: str, if_taken: str,
    *, checkout: bool = True,
) -> int:  # fmt: skip
    """Check that the task's path and branch are free, make its branch at `start` and its worktree there (checked
    out unless `checkout` is false; undone if the caller fails later), and return the first port of its MUX_PORT
    block. `if_taken` says what to do instead."""
    branch = naming.branch_for(name)
    if worktree.exists():
        raise TaskExistsError(f"worktree path {worktree} already exists: {if_taken}")
    port = allocate_ports(name, {t.port for t in registry.values()})
    if not worktree.parent.exists():
        undo.push(lambda: _remove_if_empty(worktree.parent))
    try:
        gitops.add_worktree(ctx.repo, worktree, branch, start, checkout=checkout)
    except BranchExistsError:
        raise TaskExistsError(f"branch {branch!r} already exists: {if_taken}") from None
    except OSError as exc:  # its folder cannot be made: a file is where it should be, or no permission
        raise MuxError(f"cannot make the folder of worktree {worktree}: {exc.filename}: {exc.strerror}") from None
    undo.push(lambda: gitops.delete_branch(ctx.repo, branch))
    undo.push(lambda: gitops.remove_worktree(ctx.repo, worktree))
    return port


def agent_env(
    ctx: Context, name: str, worktree: Path, port: int, profile: AgentProfile, adapter: adapters.Adapter
) -> dict[str, str]:
    return {
        **profile.env,
        **adapter.env,
        "MUX_STATE_DIR": str(ctx.store.root),
        "MUX_TASK": name,
        "MUX_REPO": str(ctx.repo.main),
        "MUX_WORKTREE": str(worktree),
        "MUX_PORT": str(port),
    }


def mark_spawn(ctx: Context, name: str, state: State | None) -> None:
    """Start a new run in the task's event log: classification ignores events of earlier runs."""
    events.append(events.events_path(ctx.store.root, name), events.HookEvent(time.time(), "mux", events.SPAWN, state))


def _warn_untrusted(ctx: Context) -> None:
    warning = config.untrusted_warning(ctx.settings)
    if warning and warning not in ctx.notes:
        ctx.notes.append(warning)


def _prepare_worktree(ctx: Context, name: str, worktree: Path, argv: list[str]) -> list[str]:
    """Copy/link the configured files into the new worktree now; return what the task's window runs.

    The `setup` commands run inside the task's window, before the agent (the window runs the set-up runner,
    which then execs the agent), rather than here: a failing or hanging `npm ci` then leaves a whole task (record,
    worktree, window with the failure on screen, log) that `mux peek`, `mux logs` and `mux rm` work on, instead of
    a half-made one, and its output is live in the window while it runs.
    """
    settings = ctx.settings
    include = worktree_setup.read_include_file(ctx.repo.main)
    included = gitops.included_untracked(ctx.repo.main, include) if include is not None else []
    placement = worktree_setup.place_files(
        ctx.repo.main, worktree, settings.copy, settings.symlink, included,
        tracked=lambda paths: gitops.tracked_at_head(worktree, paths),
    )  # fmt: skip
    ctx.notes.extend(placement.notes)
    log = worktree_setup.start_log(ctx.store.root, name, [*placement.placed, *placement.notes])
    if not settings.setup:
        return argv
    spec = worktree_setup.Spec(
        task=name,
        worktree=str(worktree),
        commands=list(settings.setup),
        timeout=settings.setup_timeout,
        log=str(log),
        status=str(worktree_setup.status_path(ctx.store.root, name)),
        agent=argv,
    )
    return worktree_setup.runner_argv(worktree_setup.write_spec(ctx.store.root, spec))


def _await_setup(ctx: Context, task: Task, progress: Progress) -> None:
    """Wait for the set-up runner in the task's window; SetupError (task kept) if it fails."""
    steps = len(ctx.settings.setup)
    # The runner enforces each command's timeout; this only guards against a runner that never reports. The
    # window's checkout comes first and has no deadline: a big repo takes what it takes, on screen.
    allowance = steps * (ctx.settings.setup_timeout + 2 * worktree_setup.KILL_GRACE) + 30
    deadline: float | None = None
    hint = (
        f"the task is kept as it is: see `mux logs {task.name}`, then `mux restart {task.name}` to start the agent"
        f" anyway or `mux rm {task.name}`"
    )
    while True:
        state = worktree_setup.read_progress(ctx.store.root, task.name)
        if state is not None and state.state == "ok":
            return
        if state is not None and state.state == "failed":
            raise worktree_setup.SetupError(f"set-up of '{task.name}' failed: {state.describe_failure()}; {hint}")
        checking_out = gitops.checkout_pending(Path(task.worktree))
        pane = pane_of(ctx.tmux.snapshot(), task)
        if (pane is None or pane.dead) and worktree_setup.read_progress(ctx.store.root, task.name) == state:
            if checking_out:
                raise worktree_setup.SetupError(
                    f"the checkout of '{task.name}' failed, so its set-up did not run: `mux peek {task.name}` shows"
                    f" why; then `mux restart {task.name}` (checks out and starts the agent) or `mux rm {task.name}`"
                )
            raise worktree_setup.SetupError(f"the set-up of '{task.name}' stopped without a result; {hint}")
        if checking_out:
            progress(f"checking out the files of {task.name}")
        else:
            deadline = deadline or time.monotonic() + allowance
            if time.monotonic() > deadline:
                raise worktree_setup.SetupError(f"the set-up of '{task.name}' did not report back in time; {hint}")
            if state is not None:
                elapsed = time.time() - state.started
                progress(f"setting up {task.name} [{state.step}/{state.steps}] {state.command} ({elapsed:.0f}s)")
        time.sleep(0.1)


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


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
    # What the window showed before the agent ran (a post-checkout hook's output): not the agent's prompt.
    before_agent = ""
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        screen = status.normalize_screen(ctx.tmux.capture([task.window]).get(task.window, ""))
        pane = pane_of(ctx.tmux.snapshot(), task)
        if pane is None or pane.dead:
            ctx.notes.append(f"the agent of '{task.name}' exited before its prompt could be delivered")
            return
        if gitops.checkout_pending(Path(task.worktree)):
            before_agent = screen
            time.sleep(0.1)
            continue
        if screen != previous:
            previous, stable_since = screen, time.monotonic()
        ready = patterns.first_match(profile.status.idle, screen) is not None
        if screen.strip() and screen != before_agent and (ready or time.monotonic() - stable_since >= 1.0):
            ctx.tmux.send_text(task.window, text)
            return
        time.sleep(0.1)
    ctx.notes.append(f"'{task.name}' did not show a prompt within {PROMPT_READY_TIMEOUT:.0f}s; use `mux send`")


# ---------------------------------------------------------------------------------------------- mux ls


def pane_of(panes: list[PaneInfo], task: Task) -> PaneInfo | None:
    # Window ids are reused after a tmux server restart: the @mux_task option must match too, and so must the
    # session, since another repository on the same server may have a task of the same name.
    for pane in panes:
        if pane.window_id == task.window and pane.task == task.name and pane.session == task.session:
            return pane
    return None


def _rules_for(agent: str, settings: config.Settings | None, cache: dict[str, StatusRules]) -> StatusRules:
    if agent not in cache:
        try:
            cache[agent] = config.resolve_agent(agent, settings).status
        except MuxError:
            cache[agent] = config.resolve_agent("shell", None).status
    return cache[agent]


def list_reports(ctx: Context, with_changes: bool = True, screens: ScreenCache | None = None) -> list[TaskReport]:
    """Every task's state (and, unless asked not to, its changes): two tmux calls and parallel git reads. With
    `screens`, the panes that have not drawn since its last read are not read again."""
    tasks = load_tasks(ctx)
    if not tasks:
        return []
    try:
        panes = ctx.tmux.snapshot()
        server_running = bool(panes) or ctx.tmux.server_running()
    except TmuxError as exc:
        ctx.notes.append(str(exc))
        panes, server_running = [], False
    pane_by_task = {task.name: pane_of(panes, task) for task in tasks}
    live = [p for p in pane_by_task.values() if p is not None and not p.dead]
    screen_of = (screens or ScreenCache()).read(ctx.tmux, live)  # a new cache reads every screen
    exists = {task.name: Path(task.worktree).is_dir() for task in tasks}
    pending = {task.name for task in tasks if exists[task.name] and gitops.checkout_pending(Path(task.worktree))}
    present = [task for task in tasks if exists[task.name] and task.name not in pending and with_changes]
    works = _works(ctx, present)
    conflicts = radar.for_tasks(ctx.repo, ctx.store.root, present, works) if works else {}
    now = time.time()
    rules: dict[str, StatusRules] = {}
    watched = monitor_state.read(ctx.store.root)
    last_change = watched.last_change if watched is not None else {}
    reports = []
    for task in tasks:
        pane = pane_by_task[task.name]
        observation = status.Observation(
            pane=pane,
            screen=screen_of.get(pane.pane_id) if pane is not None else None,
            worktree_exists=exists[task.name],
            server_running=server_running,
            created=iso_epoch(task.created) or 0.0,
            now=now,
            events=events.read_current_run(events.events_path(ctx.store.root, task.name)),
        )
        settings = settings_or_none(ctx)
        task_status = status.classify(observation, _rules_for(task.agent, settings, rules))
        if task.name in pending:
            task_status = _while_checking_out(task_status)
        task_status = _with_setup(ctx, task, pane, task_status)
        task_status = radar.sync_override(ctx.store.root, Path(task.worktree), task.name, task_status)
        found = works.get(task.name)
        reports.append(
            TaskReport(
                task,
                task_status,
                found.changes if found is not None else None,
                conflicts.get(task.name, ()),
                last_change.get(task.name),
            )
        )
    return reports


def _works(ctx: Context, tasks: list[Task]) -> dict[str, changes.Work]:
    if not tasks:
        return {}
    try:
        tips = gitops.ref_tips(ctx.repo)
    except MuxError as exc:
        ctx.notes.append(str(exc))
        return {}
    return changes.read_many(ctx.repo, ctx.store.root, tasks, tips)


def settings_or_none(ctx: Context) -> config.Settings | None:
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
    pane = pane_of(ctx.tmux.snapshot(), task)
    if pane is None:
        raise MuxError(f"task {task.name!r} has no tmux window (state missing): `mux rm {task.name}` or restart it")
    return pane


def attach(ctx: Context, name: str) -> None:
    task = get_task(ctx, name)
    _live_pane(ctx, task)
    ctx.tmux.attach(task.session, task.window)


def send(ctx: Context, name: str, text: str) -> None:
    naming.validate_prompt(text)
    task = get_task(ctx, name)
    pane = _live_pane(ctx, task)
    if pane.dead:
        raise MuxError(f"the agent of {name!r} has exited (status {pane.dead_status}): nothing to send to")
    if gitops.checkout_pending(Path(task.worktree)):
        raise MuxError(
            f"{name!r} is still checking out its files, its agent not started: `mux send --when-idle` waits for it"
        )
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
        return f"mux restore {self.task.name} --at {self.recovery_ref.rsplit('/', 1)[-1]}"


def remove(ctx: Context, name: str, force: bool = False, command: str = "rm") -> Removal:
    # The intent lets the next mux finish a removal a crash cut short once it is past its point of no return
    # (muxagent.commands.merge.recover), and drop one cut short before: that changed nothing. `command` is what the user
    # ran, for the note that tells them.
    with intents.intent(ctx.store.root, "rm", name=name, command=command) as intent:
        with ctx.store.transaction() as registry:
            task = registry.get(name)
            if task is None:
                raise UnknownTaskError(f"no task named {name!r} (see `mux ls`)")
            removal = _remove_locked(ctx, registry, task, force, on_removing=lambda: intent.update(removing=True))
            journal_removal(ctx, removal)
        intents.crash_point("rm:after-record")
    return removal


def journal_removal(ctx: Context, removal: Removal) -> None:
    """The journal's `rm` line, written inside the transaction that drops the record, before the registry file:
    written after it, a crash in between and then a lost `tasks.json` brought the removed task back."""
    ctx.store.journal("rm", name=removal.task.name, recovery_ref=removal.recovery_ref)


def _remove_locked(
    ctx: Context, registry: Registry, task: Task, force: bool, save: bool = True,
    on_removing: Callable[[], object] | None = None,
) -> Removal:  # fmt: skip
    """Window, worktree, branch, record, in that order, after a recovery ref of everything they hold.

    The ref is written even when nothing would be lost, so every removal can be undone with `mux restore`;
    `save=False` skips it, for callers that know the work is saved already (or that there is none).
    `on_removing` is called at the point of no return: the decision taken, the work saved, nothing removed yet.
    """
    worktree = Path(task.worktree)
    present = worktree.is_dir()
    has_branch = gitops.branch_exists(ctx.repo, task.branch)
    intents.crash_point("rm:while-checking")
    # Also without a branch (deleted by hand): the worktree's files may still be the only copy.
    lost = gitops.unsaved_work(ctx.repo, worktree if present else None, task.branch, task.base)
    if lost and not force:
        raise WouldLoseWorkError(
            f"task {task.name!r} has work that exists nowhere else: {'; '.join(lost)}"
            f" (merge it, or `mux rm --force {task.name}` keeps a recovery ref)"
        )
    ref = None
    if save and (lost or has_branch):
        ref = gitops.write_recovery_ref(ctx.repo, task.name, task.branch, worktree if present else None)
        ctx.store.journal("recovery", name=task.name, ref=ref, lost=lost, record=task_to_dict(task))
    if on_removing is not None:
        on_removing()
    intents.crash_point("rm:after-recovery-ref")
    window = _own_window(ctx, task)
    if window:
        ctx.tmux.kill_window(window)
        intents.crash_point("rm:after-window")
    if present or any(wt.path == worktree for wt in gitops.list_worktrees(ctx.repo)):
        gitops.remove_worktree(ctx.repo, worktree)
        intents.crash_point("rm:after-worktree")
    if has_branch:
        gitops.delete_branch(ctx.repo, task.branch)
        intents.crash_point("rm:after-branch")
    registry.remove(task.name)
    _forget(ctx, task.name)
    return Removal(task=task, recovery_ref=ref)


def _own_window(ctx: Context, task: Task) -> str | None:
    """The task's window in its own session: the recorded id if it still carries the task, else the one that
    does. A recorded id may since belong to another repository's agent or to one of the user's own windows
    (tmux reuses ids after a server restart): killing it by id alone killed another repository's agent."""
    try:
        panes = ctx.tmux.snapshot()
    except TmuxError:
        return task.window or None  # killing it then says why tmux cannot be reached, as before
    mine = [p.window_id for p in panes if p.session == task.session and p.task == task.name]
    return task.window if task.window in mine else next(iter(mine), None)


def _forget(ctx: Context, name: str) -> None:
    """Drop the removed task's queued prompts, hook events and sync marker: none is for a later task of that name."""
    prompt_queue.drop(ctx.store.root, name)
    events.events_path(ctx.store.root, name).unlink(missing_ok=True)
    radar.sync_marker(ctx.store.root, name).unlink(missing_ok=True)


@dataclass(frozen=True)
class CleanResult:
    removed: list[str]
    kept: dict[str, str]
    restore_hints: dict[str, str] = field(default_factory=dict)


def clean(ctx: Context, dry_run: bool = False) -> CleanResult:
    removed: list[str] = []
    kept: dict[str, str] = {}
    hints: dict[str, str] = {}
    for item in list_reports(ctx):
        task = item.task
        if item.status.state in ACTIVE_STATES:
            kept[task.name] = f"agent is {item.status.state.value}"
            continue
        try:
            hint = _clean_one(ctx, task, dry_run)
        except WouldLoseWorkError as exc:
            kept[task.name] = str(exc)
            continue
        except MuxError as exc:
            # One task mux cannot read or remove must not stop the others.
            kept[task.name] = f"cannot be removed: {exc}"
            continue
        if hint:
            hints[task.name] = hint
        removed.append(task.name)
    return CleanResult(removed=removed, kept=kept, restore_hints=hints)


def _clean_one(ctx: Context, task: Task, dry_run: bool) -> str | None:
    """Remove one task whose work is all elsewhere (WouldLoseWorkError naming it otherwise); its restore hint."""
    present = Path(task.worktree).is_dir()
    has_branch = gitops.branch_exists(ctx.repo, task.branch)
    lost = gitops.unsaved_work(ctx.repo, Path(task.worktree) if present else None, task.branch, task.base)
    if lost:
        raise WouldLoseWorkError("; ".join(lost) + ("" if has_branch else f" (branch {task.branch} is gone)"))
    return None if dry_run else remove(ctx, task.name, command="clean").restore_hint


# ---------------------------------------------------------------------------------------------- set-up, trust, tmux


def _while_checking_out(found: TaskStatus) -> TaskStatus:
    """Before its files are there the window runs git's checkout, not the agent: `starting`, or a failure."""
    if found.state is State.EXITED:
        return replace(found, reason=f"checkout failed (exit {found.exit_status})")
    if found.state is State.MISSING:
        return found
    return replace(found, state=State.STARTING, reason="checking out")


def _with_setup(ctx: Context, task: Task, pane: PaneInfo | None, found: TaskStatus) -> TaskStatus:
    """While the set-up commands run, the task is `starting` (its pane shows their output, not the agent); a
    pane that died in set-up says so instead of looking like an agent that exited."""
    if pane is None or found.state not in (State.WORKING, State.IDLE, State.STARTING, State.EXITED, State.WAITING):
        return found
    progress = worktree_setup.read_progress(ctx.store.root, task.name)
    if progress is None or progress.state == "ok" or progress.pane not in (None, pane.pane_id):
        return found
    if progress.state == "running" and found.state is not State.EXITED:
        step = f"[{progress.step}/{progress.steps}] {progress.command}"
        return replace(found, state=State.STARTING, reason=f"set-up {step}")
    if progress.state == "failed" and found.state is State.EXITED:
        return replace(found, reason=f"set-up failed: {progress.describe_failure()}")
    return found


def setup_log(ctx: Context, name: str) -> str:
    """The task's set-up log: files copied or linked, each set-up command and its output."""
    naming.validate_name(name)
    path = worktree_setup.log_path(ctx.store.root, name)
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        get_task(ctx, name)  # an unknown name is the likelier mistake
        return ""
    except OSError as exc:
        raise MuxError(f"cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class TrustInfo:
    """What `mux trust` knows about the repo's `.mux.toml`."""

    path: Path
    text: str
    sha256: str
    trusted: bool
    approved: trust.Approval | None
    code_keys: tuple[str, ...]  # the keys that run code or need trust, present in the file


def trust_info(ctx: Context) -> TrustInfo:
    path = ctx.repo.main / ".mux.toml"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: nothing to trust (`mux init` writes one)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    # Everything, as if trusted: the user must see what approving would allow. Parsed from the very bytes that
    # are hashed, so what is shown is what is approved.
    seen: list[str] = []

    def trusted_for_display(_main: Path, digest: str) -> bool:
        seen.append(digest)
        return False

    settings = config.load_settings(ctx.repo.main, is_trusted=trusted_for_display)
    digest = hashlib.sha256(data).hexdigest()
    if not seen or seen[0] != digest:
        raise ConfigError(f"{path} changed while it was read: run the command again")
    approved = trust.approval(ctx.repo.main)
    return TrustInfo(
        path=path,
        text=data.decode("utf-8", errors="replace"),
        sha256=digest,
        trusted=approved is not None and approved.sha256 == digest,
        approved=approved,
        code_keys=settings.ignored_keys,
    )


def approve_config(ctx: Context, info: TrustInfo) -> trust.Approval:
    """Approve exactly the content `info` showed (a file changed since is not approved by this)."""
    return trust.approve(ctx.repo.main, info.sha256)


def revoke_trust(ctx: Context) -> bool:
    return trust.revoke(ctx.repo.main)


def config_health(ctx: Context) -> tuple[bool, str, bool]:
    """For `mux doctor`: (ok, detail, fatal) about the settings and the repo config's trust."""
    try:
        settings = config.load_settings(ctx.repo.main)
    except ConfigError as exc:
        return False, str(exc), True
    if settings.repo_config is None:
        return True, "no .mux.toml (`mux init` writes one)", False
    if settings.ignored_keys:
        return False, config.untrusted_warning(settings) or "", False
    state = "trusted" if settings.repo_trusted else "nothing in it needs trust"
    return True, f"{settings.repo_config}: {state}", False


def init_config(ctx: Context) -> Path:
    """Write a commented `.mux.toml` at the main checkout's root; never over an existing one."""
    path = ctx.repo.main / ".mux.toml"
    try:
        with open(path, "x", encoding="utf-8") as file:
            file.write(config.INIT_TEMPLATE)
    except FileExistsError:
        raise MuxError(f"{path} already exists: edit it (then `mux trust`)") from None
    except OSError as exc:
        raise MuxError(f"cannot write {path}: {exc.strerror}") from None
    return path


def next_waiting(ctx: Context, current_window: str | None = None) -> Task | None:
    """The waiting task after the one in `current_window` (in creation order, wrapping), or the first."""
    waiting = [item.task for item in list_reports(ctx, with_changes=False) if item.status.state is State.WAITING]
    if not waiting:
        return None
    windows = [task.window for task in waiting]
    if current_window in windows:
        return waiting[(windows.index(current_window) + 1) % len(waiting)]
    return waiting[0]


def current_window(ctx: Context) -> str | None:
    """The window of the pane this command runs in (TMUX_PANE), if it is on mux's tmux server."""
    pane_id = os.environ.get("TMUX_PANE")
    if not pane_id:
        return None
    try:
        panes = ctx.tmux.snapshot()
    except TmuxError:
        return None
    return next((pane.window_id for pane in panes if pane.pane_id == pane_id), None)


# ---------------------------------------------------------------------------------------------- agents, doctor


def agents(ctx: Context | None) -> list[tuple[AgentProfile, str | None]]:
    settings = settings_or_none(ctx) if ctx is not None else None
    return [(profile, config.command_available(profile)) for profile in config.list_profiles(settings)]
