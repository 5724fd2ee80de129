"""`mux new`: a task's branch, worktree, ports, set-up and window; the undo steps a failed creation takes back."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from muxagent import config, naming
from muxagent.commands import sandboxing, worktree_setup
from muxagent.commands.context import Context, current_dir, load_tasks, now_iso, worktree_path
from muxagent.commands.remove import remove_if_empty
from muxagent.commands.report import pane_of
from muxagent.errors import (
    AgentNotFoundError,
    BranchExistsError,
    GitError,
    MuxError,
    SandboxError,
    TaskExistsError,
    UnknownTaskError,
    UsageError,
)
from muxagent.git import repository, worktree_status, worktrees
from muxagent.model import AgentProfile, Progress, State, Task, TaskReport, no_progress
from muxagent.sandbox import bwrap
from muxagent.state import intents, prompt_queue
from muxagent.state.store import Registry, task_to_dict
from muxagent.status import adapters, classifier, events, patterns

PORT_FIRST = 20000
PORT_LAST = 60000
PORT_BLOCK = 10
# How long `mux new` waits for an agent without prompt arguments to draw its prompt before pasting the first one.
PROMPT_READY_TIMEOUT = 30.0


# tmux takes a command line of at most 16 KB and the kernel an argument of at most 128 KB: a 20 KB prompt on the
# agent's command line failed with "command too long", a 200 KB one with E2BIG. A prompt longer than this is
# pasted once the agent is ready instead, as for a profile without prompt_args.
PROMPT_ARG_MAX = 8192

# The states a child's reaching is told to its parent's agent, in the order `--notify` lists them.
NOTIFY_STATES = ("idle", "exited", "waiting")


@dataclass(frozen=True)
class NewRequest:
    name: str
    agent: str | None = None
    prompt: str | None = None
    base: str | None = None
    parent: str | None = None  # `--parent NAME`: that task, wherever mux runs
    no_parent: bool = False  # `--no-parent`: a top-level task even from inside a task
    notify: str | None = None  # `--notify idle,exited,waiting|none`; None: all three for a child, none at the top
    # Run in the new worktree once its files are checked out, before its window and agent: what the agent is to
    # find there (the conflicting merge `mux merge --resolve -a` gives a resolver). Its failure undoes the task.
    prepare: Callable[[Path], object] | None = None
    sandbox: bool = False  # `--sandbox`: the agent in a bubblewrap sandbox (also on by profile or config)
    yolo: bool = False  # `--yolo`: the profile's yolo_args added; implies the sandbox, refused without one


class Undo:
    """Steps to take back, newest first, if the operation fails before it completes."""

    def __init__(self) -> None:
        self._steps: list[Callable[[], object]] = []

    def push(self, step: Callable[[], object]) -> None:
        self._steps.append(step)

    def __enter__(self) -> Undo:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            return
        for step in reversed(self._steps):
            # Keep undoing: the original error is the one worth reporting.
            with contextlib.suppress(MuxError):
                step()


@dataclass(frozen=True)
class GroupRequest:
    """`mux new NAME` with `-n COUNT` or several `-a`: one member per agent and count, all of one prompt and base."""

    request: NewRequest  # the group's name, prompt, base, parent; its `agent` is unused
    agents: tuple[str, ...] = ()  # `-a`, in the order given; () for the configured agent
    count: int = 1
    max_running: int | None = None  # `--max-running K`: the others are queued until earlier ones go idle


@dataclass(frozen=True)
class _Member:
    """One task to create, everything about it checked before anything is made."""

    name: str
    profile: AgentProfile
    adapter: adapters.Adapter
    argv: list[str]
    prompt_on_command_line: bool
    sandbox: bool
    network: str
    yolo: bool
    queued: bool = False


@dataclass(frozen=True)
class _Start:
    """What every member shares: the base, resolved once, and the parent."""

    base: str
    commit: str
    parent: Task | None
    notify: tuple[str, ...]
    group: str | None = None
    max_running: int = 0


def new_task(ctx: Context, request: NewRequest, progress: Progress = no_progress) -> Task:
    name = naming.validate_name(request.name)
    start = _shared_start(ctx, request)
    member = _member(ctx, name, request.agent, request)
    if start.parent is not None and start.base == start.parent.branch:
        _warn_unseen_edits(ctx, start.parent, name)
    (task,) = _create(ctx, request, start, [member], progress)
    return task


def new_group(ctx: Context, group: GroupRequest, progress: Progress = no_progress) -> list[Task]:
    """Start every member of the group, or none: a member that cannot be made takes the others back with it."""
    request = group.request
    name = naming.validate_name(request.name)
    if group.count < 1:
        raise UsageError(f"-n takes a number of tasks of 1 or more, not {group.count}")
    if group.max_running is not None and group.max_running < 1:
        raise UsageError(f"--max-running takes 1 or more, not {group.max_running}")
    labels = _member_labels(ctx, group)
    if len(labels) < 2:
        raise UsageError("a group needs two members or more: give -n 2 or more, or several -a")
    start = _shared_start(ctx, request)
    running = group.max_running or len(labels)
    start = _Start(start.base, start.commit, start.parent, start.notify, group=name, max_running=running)
    members = [
        replace(_member(ctx, naming.validate_name(f"{name}-{label}"), agent, request), queued=i >= running)
        for i, (label, agent) in enumerate(labels)
    ]
    if start.parent is not None and start.base == start.parent.branch:
        _warn_unseen_edits(ctx, start.parent, name)
    return _create(ctx, request, start, members, progress)


def _member_labels(ctx: Context, group: GroupRequest) -> list[tuple[str, str | None]]:
    """(name suffix, agent) of each member: `claude`, `codex` for several `-a`, `1`..`n` for `-n`, `claude-1`
    for both."""
    agents: list[str | None] = list(group.agents) or [None]
    named = len(agents) > 1
    labels = []
    for agent in agents:
        label = config.resolve_agent(agent, ctx.settings).name if named and agent is not None else ""
        for i in range(1, group.count + 1):
            number = str(i) if group.count > 1 else ""
            labels.append(("-".join(part for part in (label, number) if part), agent))
    suffixes = [label for label, _agent in labels]
    twice = sorted({label for label in suffixes if suffixes.count(label) > 1})
    if twice:
        raise UsageError(f"-a {twice[0]} is given twice: give it once with -n COUNT")
    return labels


def _shared_start(ctx: Context, request: NewRequest) -> _Start:
    """The checks of the options every member shares, and the base commit, resolved once."""
    if request.prompt is not None:
        naming.validate_prompt(request.prompt)
    if request.base is not None and not request.base.strip():
        raise UsageError("--base is empty: give a branch or commit to start from")
    if request.no_parent and request.parent is not None:
        raise UsageError("give either --parent or --no-parent, not both")
    wanted = _notify_states(request.notify)
    _warn_untrusted(ctx)
    parent = _parent_for(ctx, request)
    notify = _notify_for(wanted, parent)
    base = request.base or (parent.branch if parent else None) or ctx.settings.base
    base = base or repository.current_branch(ctx.repo.main)
    if base is None:
        raise GitError("the main checkout is on a detached HEAD: pass --base REF")
    return _Start(base, repository.resolve_commit(ctx.repo, base), parent, notify)


def _member(ctx: Context, name: str, agent: str | None, request: NewRequest) -> _Member:
    profile = config.resolve_agent(agent or ctx.settings.agent, ctx.settings)
    if config.command_available(profile) is None:
        raise AgentNotFoundError(
            f"agent {profile.name!r} is not installed: {profile.command[0]!r} was not found on PATH"
        )
    if request.yolo and not profile.yolo_args:
        raise UsageError(f"--yolo: the profile of {profile.name!r} has no yolo_args (see `mux agents`)")
    sandbox = request.sandbox or request.yolo or profile.sandbox or ctx.settings.sandbox
    if sandbox:
        _require_sandbox(request.yolo)
    network = "none" if "none" in (profile.sandbox_network, ctx.settings.sandbox_network) else "full"
    adapter = adapters.install(profile.hooks, ctx.store.root)
    argv = [*profile.command, *adapter.args, *(profile.yolo_args if request.yolo else ())]
    prompt = request.prompt
    on_command_line = _prompt_fits(profile, prompt)
    if prompt is not None and on_command_line:
        argv += config.expand_args(profile.prompt_args or (), prompt)
    return _Member(name, profile, adapter, argv, on_command_line, sandbox, network, request.yolo)


def _require_sandbox(yolo: bool) -> None:
    """SandboxError unless sandboxes work here; for --yolo it says the agent was not started unsandboxed."""
    try:
        bwrap.check()
    except SandboxError as exc:
        if yolo:
            raise SandboxError(f"--yolo runs only in a sandbox, and {exc}") from None
        raise


def _prompt_fits(profile: AgentProfile, prompt: str | None) -> bool:
    """Whether the prompt goes on the agent's command line (else it is pasted once the agent is ready)."""
    return prompt is not None and profile.prompt_args is not None and len(prompt.encode()) <= PROMPT_ARG_MAX


def _create(ctx: Context, request: NewRequest, start: _Start, members: list[_Member], progress: Progress) -> list[Task]:
    """Make the members' branches, worktrees and windows and add their records in one transaction: a failure
    undoes every member made so far, and a crash leaves intents that roll each one back (recovery.py)."""
    ctx.tmux.require()
    # One creation time for every member: `ls` orders tasks by it, and a group must not be split by a second.
    created = now_iso()
    with contextlib.ExitStack() as stack:
        for member in members:
            record = intents.NewRecord(op="new", name=member.name, worktree=str(worktree_path(ctx, member.name)),
                                       base=start.base)  # fmt: skip
            stack.enter_context(intents.intent(ctx.store.root, record))
        undo = stack.enter_context(Undo())
        registry = stack.enter_context(ctx.store.transaction())
        # Every worktree first, then every window: a window starts its checkout at once, and ten checkouts of a
        # big repository running beside the next `git worktree add` made a group of ten take 3.3 s instead of 1.
        reserved: list[Task] = []
        for member in members:
            taken = frozenset(task.port for task in reserved)
            reserved.append(_reserve(ctx, registry, undo, request, start, member, created, taken, progress))
        made = []
        for task, member in zip(reserved, members, strict=True):
            made.append((_open(ctx, registry, undo, task, member), member))
    intents.crash_point("new:after-record")
    for task, member in made:
        if ctx.settings.setup and not member.queued:
            _await_setup(ctx, task, progress)
        if request.prompt is not None and not member.prompt_on_command_line and not member.queued:
            _paste_when_ready(ctx, task, member.profile, request.prompt)
    return [task for task, _member in made]


def _reserve(
    ctx: Context, registry: Registry, undo: Undo, request: NewRequest, start: _Start, member: _Member,
    created: str, taken: frozenset[int], progress: Progress,
) -> Task:  # fmt: skip
    """One member's branch and worktree inside `_create`'s transaction (its port not one of `taken`, those of the
    members reserved before it): its record, not added yet, without a window."""
    name = member.name
    if name in registry:
        raise TaskExistsError(f"task {name!r} already exists")
    if start.parent is not None and start.parent.name not in registry:
        raise UnknownTaskError(f"parent task {start.parent.name!r} was removed meanwhile: nothing was created")
    worktree = worktree_path(ctx, name)
    progress(f"creating {naming.branch_for(name)} from {start.base} at {worktree}")
    # The files are checked out in the task's window, before the agent: `mux new` does not wait for a big
    # checkout, and the window shows it (`mux ls` says `starting`; a failure leaves the task inspectable). A
    # worktree to prepare before the agent starts is checked out here, as the preparation needs its files.
    prepare = request.prepare
    port = reserve_worktree(
        ctx, registry, undo, name, worktree, start.commit, if_taken="pick another task name", checkout=bool(prepare),
        also_taken=taken,
    )  # fmt: skip
    if prepare is not None:
        prepare(worktree)
    intents.crash_point("new:after-worktree")
    return Task(
        name=name, agent=member.profile.name, command=tuple(member.argv), base=start.base,
        branch=naming.branch_for(name), worktree=str(worktree), session=naming.session_for(ctx.repo.main),
        window="", created=created, port=port, prompt=request.prompt,
        parent=start.parent.name if start.parent is not None else None, notify=start.notify,
        group=start.group, queued=member.queued, max_running=start.max_running, sandbox=member.sandbox,
        sandbox_network=member.network, yolo=member.yolo,
    )  # fmt: skip


def _open(ctx: Context, registry: Registry, undo: Undo, task: Task, member: _Member) -> Task:
    """One reserved member's window (unless it is queued) and its record added."""
    if not member.queued:
        task = _open_agent(ctx, undo, task, member.profile, member.adapter, member.prompt_on_command_line)
    intents.crash_point("new:after-window")
    registry.add(task)
    journal_creation(ctx, undo, task)
    return task


def _open_agent(
    ctx: Context, undo: Undo, task: Task, profile: AgentProfile, adapter: adapters.Adapter, busy_prompt: bool
) -> Task:
    """Place the configured files in the task's worktree and open its window running the agent (after the
    set-up commands, if any, which run outside its sandbox): the task with its window."""
    worktree = Path(task.worktree)
    env = agent_env(ctx, task.name, worktree, task.port, profile, adapter)
    launch = sandboxing.launch_argv(ctx, task, profile, list(task.command), env)
    pane_argv = _prepare_worktree(ctx, task.name, worktree, launch)
    # Claude fires no hook for a prompt given on its command line: the turn it starts is marked here.
    busy = busy_prompt and profile.hooks != "none"
    mark_spawn(ctx, task.name, State.WORKING if busy else None, env)
    session, window = open_window(ctx, undo, task.name, worktree, pane_argv, env)
    return replace(task, session=session, window=window)


# Members that count against their group's --max-running: the others are done for now (idle) or gone.
RUNNING_STATES = frozenset({State.STARTING, State.WORKING, State.WAITING})


def start_queued(ctx: Context, reports: list[TaskReport]) -> list[str]:
    """Start the agents of queued group members while fewer than the group's `max_running` run (the monitor calls
    this each tick); the names started."""
    groups: dict[str, list[TaskReport]] = {}
    for item in reports:
        if item.task.group is not None:
            groups.setdefault(item.task.group, []).append(item)
    started = []
    for members in groups.values():
        queued = [item.task for item in members if item.task.queued]
        running = sum(1 for item in members if not item.task.queued and item.status.state in RUNNING_STATES)
        for task in queued[: max(0, queued[0].max_running - running) if queued else 0]:
            _start_member(ctx, task)
            started.append(task.name)
    return started


def _start_member(ctx: Context, task: Task) -> None:
    """Open a queued member's window with its agent; its prompt is queued for it when it cannot go on the agent's
    command line (the monitor delivers it once the agent is idle)."""
    profile = config.resolve_agent(task.agent, ctx.settings)
    adapter = adapters.install(profile.hooks, ctx.store.root)
    on_command_line = _prompt_fits(profile, task.prompt)
    with Undo() as undo, ctx.store.transaction() as registry:
        if registry.get(task.name) != task:
            return  # removed or started meanwhile
        started = _open_agent(ctx, undo, replace(task, queued=False), profile, adapter, on_command_line)
        registry.replace(started)
        ctx.store.journal("restart", task=task_to_dict(started))
    if task.prompt is not None and not on_command_line:
        prompt_queue.enqueue(ctx.store.root, task.name, task.prompt)


def calling_task(ctx: Context) -> str | None:
    """The task whose pane this command runs in (its MUX_TASK), when that pane is one of this repository's (its
    MUX_REPO): an agent that cd'd into another repository must not make that one's same-named task its parent."""
    name = os.environ.get("MUX_TASK") or None
    repo = os.environ.get("MUX_REPO")
    if repo and os.path.realpath(repo) != os.path.realpath(ctx.repo.main):
        return None
    return name


def _parent_for(ctx: Context, request: NewRequest) -> Task | None:
    """The task the new one is a sub-task of: `--parent`, else the task whose pane runs mux (MUX_TASK), else the
    one whose worktree holds the current directory; None with `--no-parent` or from outside every task.

    A MUX_TASK naming no task (a stale variable in a shell that outlived its task) means no parent, not an
    error: it must not stop `mux new`."""
    if request.no_parent:
        return None
    tasks = {task.name: task for task in load_tasks(ctx)}
    if request.parent is not None:
        found = tasks.get(naming.validate_name(request.parent))
        if found is None:
            raise UnknownTaskError(f"--parent {request.parent!r} is not a task (see `mux ls`)")
        return found
    caller = calling_task(ctx)
    if caller is not None and caller in tasks:
        return tasks[caller]
    here = Path(os.path.realpath(current_dir()))
    for task in tasks.values():
        worktree = Path(os.path.realpath(task.worktree))
        if here == worktree or worktree in here.parents:
            return task
    return None


def _notify_states(text: str | None) -> tuple[str, ...] | None:
    """`--notify` read: the states listed (in NOTIFY_STATES' order), () for `none`, None when not given."""
    if text is None:
        return None
    words = [word.strip() for word in text.split(",")]
    if words == ["none"]:
        return ()
    if not all(word in NOTIFY_STATES for word in words):
        listed = ",".join(NOTIFY_STATES)
        raise UsageError(f"--notify takes {listed} (any of them, comma-separated) or none, not {text!r}")
    return tuple(state for state in NOTIFY_STATES if state in words)


def _notify_for(wanted: tuple[str, ...] | None, parent: Task | None) -> tuple[str, ...]:
    if parent is None:
        if wanted:
            raise UsageError("--notify tells a parent task's agent, and this task has no parent (see --parent)")
        return ()
    return NOTIFY_STATES if wanted is None else wanted


def _warn_unseen_edits(ctx: Context, parent: Task, name: str) -> None:
    """One line when the child starts from the parent's last commit while the parent's worktree holds more."""
    worktree = Path(parent.worktree)
    if not worktree.is_dir() or worktrees.checkout_pending(worktree):
        return
    if worktree_status.has_changes(worktree):
        ctx.notes.append(
            f"{parent.name!r} has uncommitted changes that {name!r} will not see: it starts from"
            f" {parent.branch}'s last commit"
        )


def journal_creation(ctx: Context, undo: Undo, task: Task, **fields: object) -> None:
    """The journal's `new` line, inside the transaction that adds the record, before the registry file: written
    after it, a crash in between and then a lost `tasks.json` brought the task back as adopted, its agent and
    prompt forgotten. A transaction that then fails takes the line back with an `rm` one."""
    ctx.store.journal("new", task=task_to_dict(task), **fields)
    undo.push(lambda: ctx.store.journal("rm", name=task.name, recovery_ref=None))


def reserve_worktree(
    ctx: Context, registry: Registry, undo: Undo, name: str, worktree: Path, start: str, if_taken: str,
    *, checkout: bool = True, also_taken: frozenset[int] = frozenset(),
) -> int:  # fmt: skip
    """Check that the task's path and branch are free, make its branch at `start` and its worktree there (checked
    out unless `checkout` is false; undone if the caller fails later), and return the first port of its MUX_PORT
    block, neither a registered task's nor one of `also_taken`. `if_taken` says what to do instead."""
    branch = naming.branch_for(name)
    if worktree.exists():
        raise TaskExistsError(f"worktree path {worktree} already exists: {if_taken}")
    port = allocate_ports(name, {t.port for t in registry.values()} | also_taken)
    if not worktree.parent.exists():
        undo.push(lambda: remove_if_empty(worktree.parent))
    try:
        worktrees.add_worktree(ctx.repo, worktree, branch, start, checkout=checkout)
    except BranchExistsError:
        raise TaskExistsError(f"branch {branch!r} already exists: {if_taken}") from None
    except OSError as exc:  # its folder cannot be made: a file is where it should be, or no permission
        raise MuxError(f"cannot make the folder of worktree {worktree}: {exc.filename}: {exc.strerror}") from None
    undo.push(lambda: repository.delete_branch(ctx.repo, branch))
    undo.push(lambda: worktrees.remove_worktree(ctx.repo, worktree))
    return port


def open_task(ctx: Context, undo: Undo, task: Task, profile: AgentProfile, env: dict[str, str]) -> Task:
    """The task's window running its agent (in its sandbox for a sandboxed task): its record with the window,
    for the caller to add to the registry."""
    launch = sandboxing.launch_argv(ctx, task, profile, list(task.command), env)
    session, window = open_window(ctx, undo, task.name, Path(task.worktree), launch, env)
    return replace(task, session=session, window=window)


def open_window(
    ctx: Context, undo: Undo, name: str, worktree: Path, argv: list[str], env: dict[str, str]
) -> tuple[str, str]:
    """The task's window in the repository's session, running `argv` once the worktree's files are checked out
    (killed if the caller fails later): its session and window id."""
    session = naming.session_for(ctx.repo.main)
    window = ctx.tmux.new_window(session, name, worktree, worktrees.pane_command(worktree, argv), env, task=name)
    undo.push(lambda: ctx.tmux.kill_window(window))
    return session, window


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
        events.LAUNCH_ENV: events.new_launch(),  # this start's own: see status/events.py
    }


def mark_spawn(ctx: Context, name: str, state: State | None, env: dict[str, str]) -> None:
    """Start a new run in the task's event log, of the launch in `env` (`agent_env`): classification ignores
    events of earlier runs and of other launches."""
    spawn = events.HookEvent(time.time(), "mux", events.SPAWN, state, launch=env[events.LAUNCH_ENV])
    events.append(events.events_path(ctx.store.root, name), spawn)


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
    included = worktrees.included_untracked(ctx.repo.main, include) if include is not None else []
    placement = worktree_setup.place_files(
        ctx.repo.main, worktree, settings.copy, settings.symlink, included,
        tracked=lambda paths: worktrees.tracked_at_head(worktree, paths),
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
        checking_out = worktrees.checkout_pending(Path(task.worktree))
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
        screen = classifier.normalize_screen(ctx.tmux.capture([task.window]).get(task.window, ""))
        pane = pane_of(ctx.tmux.snapshot(), task)
        if pane is None or pane.dead:
            ctx.notes.append(f"the agent of '{task.name}' exited before its prompt could be delivered")
            return
        if worktrees.checkout_pending(Path(task.worktree)):
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
