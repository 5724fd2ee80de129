"""What `mux ls` shows: each task's state (tmux, hook events, set-up progress) and changes; the waiting ones."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from muxagent import config, naming, render
from muxagent.commands import worktree_setup
from muxagent.commands.context import Context, get_task, load_tasks, settings_or_none
from muxagent.errors import MuxError, TmuxError, UnknownTaskError
from muxagent.git import repository, worktrees
from muxagent.listing import iso_epoch
from muxagent.model import AgentProfile, PaneInfo, State, Task, TaskReport, TaskStatus
from muxagent.state import files, inbox, monitor_state, view
from muxagent.status import changes, classifier, claude_status_file, events, radar
from muxagent.tmux.client import ScreenCache


def pane_of(panes: list[PaneInfo], task: Task) -> PaneInfo | None:
    # Window ids are reused after a tmux server restart: the @mux_task option must match too, and so must the
    # session, since another repository on the same server may have a task of the same name.
    for pane in panes:
        if pane.window_id == task.window and pane.task == task.name and pane.session == task.session:
            return pane
    return None


def _profile_for(agent: str, settings: config.Settings | None, cache: dict[str, AgentProfile]) -> AgentProfile:
    if agent not in cache:
        try:
            cache[agent] = config.resolve_agent(agent, settings)
        except MuxError:
            cache[agent] = config.resolve_agent("shell", None)
    return cache[agent]


def _task_events(
    path: Path, pane: PaneInfo | None, hooks: str, hook_events: events.EventsCache
) -> list[events.HookEvent]:
    """The task's hook events (in `path`) of its current launch, and for Claude Code the state its own status file
    gives when that differs from the hooks', in the order they happened: the newest is the agent's latest word (see
    status/classifier.py). A status file that agrees adds nothing: the hook's name is the better reason."""
    found = hook_events.read(path)
    if hooks != "claude" or pane is None or pane.dead:
        return found
    launch = events.launch_of(found)
    own = claude_status_file.event(pane.pid, launch)
    latest = classifier.latest_hook(found)
    if own is None or (latest is not None and latest.state is own.state):
        return found
    return sorted([*found, own], key=lambda event: event.ts)


@dataclass(frozen=True)
class TaskList:
    """What `mux ls` prints: every task's report."""

    reports: tuple[TaskReport, ...]

    def to_json(self) -> list[dict[str, Any]]:
        return render.rows(self.reports)

    def text(self, colour: bool) -> str:
        return render.ls_text(self.reports, colour)


@dataclass(frozen=True)
class StatusSummary:
    """What `mux status-line` prints: tasks per state and the names of those that wait."""

    reports: tuple[TaskReport, ...]

    def to_json(self) -> dict[str, Any]:
        return render.status_json(self.reports)

    def text(self, tmux_styles: bool) -> str:
        return render.status_line(self.reports, tmux_styles=tmux_styles)


@dataclass(frozen=True)
class SetupLog:
    """What `mux logs` prints: the task's set-up log, empty when nothing was copied and no set-up command ran."""

    name: str
    log: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "log": render.clean_text(self.log)}

    def text(self) -> str:
        if self.log:
            return render.clean_text(self.log)
        return f"{self.name} has no set-up log (nothing was copied and no set-up command ran)\n"


def task_list(ctx: Context) -> TaskList:
    return TaskList(tuple(shown_reports(ctx)))


def status_summary(ctx: Context) -> StatusSummary:
    return StatusSummary(tuple(shown_reports(ctx, with_changes=False)))


def shown_reports(ctx: Context, with_changes: bool = True) -> list[TaskReport]:
    """What to show the user: the monitor's live view when it can be trusted (state/view.py), else the full work of
    `list_reports`; the same reports either way, so what is printed does not say which. Never for deciding: what
    changes or deletes anything reads tmux and git itself."""
    tasks = load_tasks(ctx)
    found = view_reports(ctx, with_changes, tasks)
    return found if found is not None else list_reports(ctx, with_changes, tasks=tasks)


def view_reports(ctx: Context, with_changes: bool = True, tasks: list[Task] | None = None) -> list[TaskReport] | None:
    """Every task's report from the live view, or None when the view may not be shown. `tasks`: the registry's, if
    the caller has just loaded it."""
    if tasks is None:
        tasks = load_tasks(ctx)
    if not tasks:
        return []
    found = view.usable(ctx.store.root, ctx.store.generation, ctx.store.stamp, time.time())
    # Every task of this machine is in a view; one on another host is there only while the monitor's look at its
    # host is current (monitor/hostwatch.py), else asked afresh.
    if found is None or any(task.name not in found.tasks for task in tasks if task.host is None):
        return None
    asked = [task for task in tasks if task.host is not None and task.name not in found.tasks]
    remote = remote_reports(ctx, asked, with_changes)
    # Read now, not from the view: one listing of the inbox folder, and `mux inbox` then `mux ls` must show the
    # entries read at once (test_inbox saw the count a tick old).
    unread = inbox.unread_counts(ctx.store.root, {task.name: task.created for task in tasks}) if with_changes else {}
    reports = []
    for task in tasks:
        if task.name in remote:
            reports.append(replace(remote[task.name], inbox_unread=unread.get(task.name, 0)))
            continue
        entry = found.tasks[task.name]
        reports.append(
            TaskReport(
                task,
                entry.status,
                entry.changes if with_changes else None,
                entry.conflicts if with_changes else (),
                entry.last_change,
                unread.get(task.name, 0),
                entry.hook_ts,
            )
        )
    return reports


def list_reports(
    ctx: Context,
    with_changes: bool = True,
    screens: ScreenCache | None = None,
    hook_events: events.EventsCache | None = None,
    tasks: list[Task] | None = None,
    only: set[str] | None = None,
) -> list[TaskReport]:
    """Every task's state (and, unless asked not to, its changes): two tmux calls and parallel git reads. With
    `screens`, the panes that have not drawn since its last read are not read again; with `hook_events`, the events
    files that did not change are not read again; `tasks`: the registry's, if the caller has just loaded it; with
    `only`, those tasks' alone."""
    if tasks is None:
        tasks = load_tasks(ctx)
    if only is not None:
        tasks = [task for task in tasks if task.name in only]
    if not tasks:
        return []
    found, present = statuses(ctx, tasks, screens, hook_events or events.EventsCache())
    if not with_changes:
        return found
    works = _works(ctx, present)
    return with_work(ctx, found, works, conflicts_of(ctx, present, works))


def conflicts_of(ctx: Context, present: list[Task], works: dict[str, changes.Work]) -> radar.Found:
    return radar.for_tasks(ctx.repo, ctx.store.root, present, works) if works else {}


def with_work(
    ctx: Context,
    reports: list[TaskReport],
    works: dict[str, changes.Work],
    conflicts: radar.Found,
    last_change: Mapping[str, float] | None = None,
) -> list[TaskReport]:
    """The reports with each task's changes, conflicts and unread inbox entries (and `last_change`, if given: the
    monitor's own, fresher than what its status file held when the reports were made)."""
    unread = inbox.unread_counts(ctx.store.root, {item.task.name: item.task.created for item in reports})
    return [
        replace(
            item,
            changes=works[item.task.name].changes if item.task.name in works else item.changes,
            conflicts=conflicts.get(item.task.name, ()),
            inbox_unread=unread.get(item.task.name, 0),
            last_change=item.last_change if last_change is None else last_change.get(item.task.name),
        )
        for item in reports
    ]


def statuses(
    ctx: Context, tasks: list[Task], screens: ScreenCache | None, hook_events: events.EventsCache
) -> tuple[list[TaskReport], list[Task]]:
    """Every task's state (see `list_reports`), and the tasks whose worktree is there and checked out (their changes
    can be read), from the same stats: asking again cost the monitor a third of its stat calls each tick. A task on
    another host comes with its changes, read there in the same round trip."""
    remote = remote_reports(ctx, [task for task in tasks if task.host is not None], with_changes=True)
    if remote:
        order = [task.name for task in tasks]
        tasks = [task for task in tasks if task.host is None]
        local, present = statuses(ctx, tasks, screens, hook_events) if tasks else ([], [])
        by_name = {**{item.task.name: item for item in local}, **remote}
        return [by_name[name] for name in order if name in by_name], present
    try:
        panes = ctx.tmux.snapshot()
        server_running = bool(panes) or ctx.tmux.server_running()
    except TmuxError as exc:
        ctx.notes.append(str(exc))
        panes, server_running = [], False
    # pane_of's rule, indexed once: every task looking through every pane was quadratic, at 100 tasks each tick.
    indexed: dict[tuple[str, str, str], PaneInfo] = {}
    for listed in panes:
        indexed.setdefault((listed.window_id, listed.task, listed.session), listed)
    pane_by_task = {task.name: indexed.get((task.window, task.name, task.session)) for task in tasks}
    live = [p for p in pane_by_task.values() if p is not None and not p.dead]
    screen_of = (screens or ScreenCache()).read(ctx.tmux, live)  # a new cache reads every screen
    exists = {task.name: os.path.isdir(task.worktree) for task in tasks}
    events_paths = {task.name: events.events_path(ctx.store.root, task.name) for task in tasks}
    pending = {task.name for task in tasks if exists[task.name] and worktrees.checkout_pending(task.worktree)}
    # One listdir per kind of marker, not a stat per task: few tasks have any of them.
    synced = files.names_in(ctx.store.root / radar.SYNC_DIR)
    resolving = files.names_in(ctx.store.root / radar.RESOLVE_DIR)
    set_up = files.names_in(worktree_setup.log_dir(ctx.store.root))
    now = time.time()
    profiles: dict[str, AgentProfile] = {}
    watched = monitor_state.read(ctx.store.root)
    last_change = watched.last_change if watched is not None else {}
    reports = []
    settings = settings_or_none(ctx)
    for task in tasks:
        pane = pane_by_task[task.name]
        profile = _profile_for(task.agent, settings, profiles)
        observation = classifier.Observation(
            pane=pane,
            screen=screen_of.get(pane.pane_id) if pane is not None else None,
            worktree_exists=exists[task.name],
            server_running=server_running,
            created=iso_epoch(task.created) or 0.0,
            now=now,
            events=_task_events(events_paths[task.name], pane, profile.hooks, hook_events),
        )
        hook = classifier.latest_hook(observation.events)
        task_status = classifier.classify(observation, profile.status)
        if task.name in pending:
            task_status = _while_checking_out(task_status)
        if task.name + worktree_setup.STATUS_SUFFIX in set_up:
            task_status = _with_setup(ctx, task, pane, task_status)
        if task.name in synced:
            task_status = radar.sync_override(ctx.store.root, Path(task.worktree), task.name, task_status)
        if task.name in resolving:
            task_status = radar.resolve_override(ctx.store.root, task, task_status)
        if task.queued:  # no window yet, by design: not `missing`
            task_status = TaskStatus(State.STARTING, f"queued: starts when a member of {task.group} goes idle")
        reports.append(
            TaskReport(
                task,
                task_status,
                None,
                (),
                last_change.get(task.name),
                0,
                hook.ts if hook is not None and hook.state is task_status.state else None,
            )
        )
    hook_events.keep(set(events_paths.values()))
    return reports, [task for task in tasks if exists[task.name] and task.name not in pending]


def remote_reports(ctx: Context, tasks: list[Task], with_changes: bool) -> dict[str, TaskReport]:
    """The reports of `tasks`, each on another host: one round trip per host (commands/remote.py)."""
    if not tasks:
        return {}
    from muxagent.commands import remote

    settings = settings_or_none(ctx)
    profiles: dict[str, AgentProfile] = {}
    return remote.reports(ctx, tasks, lambda agent: _profile_for(agent, settings, profiles), with_changes)


def _works(ctx: Context, tasks: list[Task]) -> dict[str, changes.Work]:
    if not tasks:
        return {}
    try:
        tips = repository.ref_tips(ctx.repo)
    except MuxError as exc:
        ctx.notes.append(str(exc))
        return {}
    return changes.read_many(ctx.repo, ctx.store.root, tasks, tips)


def report(ctx: Context, name: str) -> TaskReport:
    for item in list_reports(ctx):
        if item.task.name == name:
            return item
    raise UnknownTaskError(f"no task named {name!r} (see `mux ls`)")


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


def setup_log(ctx: Context, name: str) -> SetupLog:
    """The task's set-up log: files copied or linked, each set-up command and its output."""
    naming.validate_name(name)
    path = worktree_setup.log_path(ctx.store.root, name)
    try:
        return SetupLog(name, path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        get_task(ctx, name)  # an unknown name is the likelier mistake
        return SetupLog(name, "")
    except OSError as exc:
        raise MuxError(f"cannot read {path}: {exc.strerror}") from None


def next_waiting(ctx: Context, current_window: str | None = None) -> Task | None:
    """The waiting task after the one in `current_window` (in creation order, wrapping), or the first."""
    waiting = [item.task for item in shown_reports(ctx, with_changes=False) if item.status.state is State.WAITING]
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
