"""`mux restart`: relaunch an exited or missing agent in its worktree, resuming its conversation."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from muxagent import config, naming
from muxagent.commands import context, create, report, sandboxing
from muxagent.errors import MuxError
from muxagent.git import worktrees
from muxagent.model import AgentProfile, State, Task
from muxagent.state.store import task_to_dict
from muxagent.status import adapters, events, sessions

RESTARTABLE = frozenset({State.EXITED, State.MISSING})


def restart(ctx: context.Context, name: str) -> Task:
    item = report.report(ctx, name)
    task = item.task
    if item.status.state not in RESTARTABLE:
        raise MuxError(f"task {name!r} is {item.status.state.value}: only exited or missing agents are restarted")
    restarted = _restart_on_host(ctx, task) if task.host is not None else _restart_here(ctx, task)
    with ctx.store.transaction() as registry:
        # Journaled only while the record is there: a `restart` line after a racing `mux rm`'s line would bring
        # the removed task back when the registry is rebuilt from the journal.
        if registry.get(name) is not None:
            registry.replace(restarted)
            ctx.store.journal("restart", task=task_to_dict(restarted))
    return restarted


def _restart_here(ctx: context.Context, task: Task) -> Task:
    name = task.name
    worktree = Path(task.worktree)
    if not worktree.is_dir():
        raise MuxError(f"the worktree of {name!r} is gone ({worktree}): bring it back with `mux restore {name}`")
    if task.agent == "unknown":
        raise MuxError(f"task {name!r} was adopted without a record of its agent: start one with `mux rm` + `mux new`")
    profile = config.resolve_agent(task.agent, context.settings_or_none(ctx))
    if config.command_available(profile) is None:
        raise MuxError(f"agent {profile.name!r} is not installed: {profile.command[0]!r} was not found on PATH")
    adapter = adapters.install(profile.hooks, ctx.store.root)
    if worktrees.checkout_pending(worktree):
        # The checkout failed or was cut short: the agent never ran, so it starts afresh, with its prompt.
        argv = list(task.command)
    else:
        resumed = _resume(ctx, task, profile)
        argv = [*profile.command, *adapter.args, *(profile.yolo_args if task.yolo else ()), *resumed.args]
    env = create.agent_env(ctx, name, worktree, task.port, profile, adapter)
    launch = sandboxing.launch_argv(ctx, task, profile, argv, env)  # a sandboxed task goes back in its sandbox
    create.mark_spawn(ctx, name, None, env)
    pane = report.pane_of(ctx.tmux.snapshot(), task)
    command = worktrees.pane_command(worktree, launch)
    if pane is not None:
        ctx.tmux.respawn(task.window, worktree, command, env)
        restarted = task
    else:
        window = ctx.tmux.new_window(naming.session_for(ctx.repo.main), name, worktree, command, env, task=name)
        restarted = replace(task, window=window, session=naming.session_for(ctx.repo.main))
    return restarted


def _restart_on_host(ctx: context.Context, task: Task) -> Task:
    """The agent again in the task's worktree on its host, with the profile's `resume_args` (no hook records a
    session there), in its window if the pane is left, else in a new one on the host's tmux server."""
    from muxagent.commands import remote

    profile = config.resolve_agent(task.agent, context.settings_or_none(ctx))
    remote.check_ready(remote.target_of(task.host or ""), task, profile)
    argv = [*profile.command, *profile.resume_args]
    env = remote.agent_env(task.name, task.worktree, task.port, profile)
    tmux = ctx.tmux_for(task.host)
    if report.pane_of(tmux.snapshot(), task) is not None:
        tmux.respawn(task.window, Path(task.worktree), argv, env)
        return task
    return replace(
        task, window=tmux.new_window(task.session, task.name, Path(task.worktree), argv, env, task=task.name)
    )


def _resume(ctx: context.Context, task: Task, profile: AgentProfile) -> sessions.Resume:
    """The conversation the agent had: the session its hooks recorded, if the agent's records place it in this
    task's worktree; else the profile's `resume_args` (which resume the latest conversation of the directory),
    and a note saying so."""
    recorded = events.sessions(events.events_path(ctx.store.root, task.name))
    env = {**os.environ, **profile.env}
    found = sessions.resume(profile.hooks, recorded, Path(task.worktree), env, profile.resume_args)
    if found.note:
        ctx.notes.append(f"{task.name}: {found.note}")
    return found


def restart_all(ctx: context.Context) -> tuple[list[str], dict[str, str]]:
    """Restart every exited or missing task; returns the restarted names and why the others were not."""
    done: list[str] = []
    skipped: dict[str, str] = {}
    for item in report.list_reports(ctx, with_changes=False):
        if item.status.state not in RESTARTABLE:
            continue
        try:
            restart(ctx, item.task.name)
            done.append(item.task.name)
        except MuxError as exc:
            skipped[item.task.name] = str(exc)
    return done, skipped
