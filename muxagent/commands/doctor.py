"""`mux doctor`: the environment and the repository's health, one check per line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxagent import naming, render
from muxagent.commands import context, recovery, repo_config, report
from muxagent.errors import MuxError, SandboxError, TmuxError
from muxagent.git import runner, worktrees
from muxagent.model import State
from muxagent.sandbox import bwrap
from muxagent.state import intents, monitor_state
from muxagent.tmux.client import Tmux


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fatal: bool = True


@dataclass(frozen=True)
class DoctorReport:
    """What `mux doctor` prints: one line per check, `ok`, `warn` (not fatal) or `FAIL`."""

    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(not check.ok and check.fatal for check in self.checks)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "ok": c.ok, "fatal": c.fatal, "detail": c.detail} for c in self.checks]

    def lines(self) -> list[str]:
        marks = [("ok" if c.ok else ("FAIL" if c.fatal else "warn"), c) for c in self.checks]
        return [f"{mark:<5} {check.name}: {render.clean_text(check.detail)}" for mark, check in marks]


MIN_GIT = (2, 38)


def run(cwd: Path | None = None) -> DoctorReport:
    """Every check, for the repository at `cwd` (default: the current directory)."""
    return DoctorReport(tuple(_checks(cwd)))


def _checks(cwd: Path | None) -> list[Check]:
    checks = [_check_git(), _check_tmux(), _check_sandbox()]
    try:
        ctx = recovery.open_and_recover(cwd)
    except MuxError as exc:
        return [*checks, Check("repository", False, str(exc))]
    checks.append(Check("repository", True, str(ctx.repo.main)))
    checks.append(_check_server(ctx))
    checks.append(_check_monitor(ctx))
    checks.extend(_check_store(ctx))
    checks.append(_check_windows(ctx))
    checks.append(_check_interrupted(ctx))
    ok, detail, fatal = repo_config.config_health(ctx)
    checks.append(Check("repo config", ok, detail, fatal))
    return checks


def _check_git() -> Check:
    version = runner.git_version()
    ok = version >= MIN_GIT
    text = ".".join(map(str, version))
    detail = text if ok else f"{text}: git >= 2.38 is needed for merge pre-checks (`git merge-tree --write-tree`)"
    return Check("git", ok, detail)


def _check_sandbox() -> Check:
    """Whether `mux new --sandbox` (and --yolo) can work here: not fatal, most tasks run without one."""
    try:
        bwrap.check()
    except SandboxError as exc:
        return Check("sandbox", False, str(exc), fatal=False)
    return Check("sandbox", True, "bubblewrap makes sandboxes here (`mux new --sandbox`, `--yolo`)")


def _check_tmux() -> Check:
    try:
        return Check("tmux", True, Tmux().version())
    except TmuxError as exc:
        return Check("tmux", False, str(exc))


def _check_server(ctx: context.Context) -> Check:
    socket_name = ctx.tmux.socket or "default"
    try:
        running = ctx.tmux.server_running()
    except TmuxError as exc:
        return Check("tmux server", False, str(exc))
    detail = "running" if running else "not running (it starts with the first task)"
    return Check("tmux server", True, f"{detail}, socket {socket_name}", fatal=False)


def _check_store(ctx: context.Context) -> list[Check]:
    try:
        listed = context.load_tasks(ctx)
    except MuxError as exc:
        return [Check("task registry", False, str(exc))]
    checks = [Check("task registry", True, f"{len(listed)} task(s) in {ctx.store.root}")]
    known = {task.name for task in listed}
    problems: list[str] = []
    for wt in worktrees.list_worktrees(ctx.repo):
        if wt.branch and wt.branch.startswith(naming.BRANCH_PREFIX) and wt.branch[4:] not in known:
            problems.append(f"worktree {wt.path} has no task record")
    for task in listed:
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


def _check_interrupted(ctx: context.Context) -> Check:
    """Commands that died half-way and that the automatic recovery (run as this command opened the repo) could not
    finish: each stays on disk, with what it was doing, until a later mux manages it."""
    with intents.orphaned(ctx.store.root) as found:
        left = [_describe_intent(intent.fields, intent.path) for intent in found]
    if not left:
        return Check("interrupted commands", True, "none")
    return Check("interrupted commands", False, "; ".join(left), fatal=False)


def _describe_intent(fields: Mapping[str, object], path: Path) -> str:
    # A removal `mux clean` made is named as the clean the user ran.
    command = fields.get("command", fields.get("op", "?"))
    what = f"`mux {command}`" + (f" of '{fields['name']}'" if "name" in fields else "")
    why = fields.get("recovery_failed", "not tried yet")
    return f"{what} was interrupted and is not finished or rolled back ({why}); its record: {path}"


def _check_monitor(ctx: context.Context) -> Check:
    state = monitor_state.read(ctx.store.root)
    if state is None:
        return Check("monitor", True, "not running (it starts with the next task)", fatal=False)
    if not monitor_state.alive(ctx.store.root, state):
        # Its file outlives it when it is killed (the tmux server that ran it died): the file is no proof.
        detail = f"not running (pid {state.pid} of its last record is gone); `mux new` or `mux restart` starts it"
        return Check("monitor", False, detail, fatal=False)
    if state.polling:
        why = "; ".join(f"{name}: {reason}" for name, reason in sorted(state.polling.items()))
        return Check("monitor", False, f"cannot watch some worktrees, polling git instead ({why})", fatal=False)
    return Check("monitor", True, f"running (pid {state.pid}), watching {len(state.watching)} worktree(s)")


def _check_windows(ctx: context.Context) -> Check:
    """Tasks whose agent window is gone (the tmux server died or was restarted): their work is in their worktrees,
    and one command starts their agents again."""
    try:
        missing = [
            item.task.name
            for item in report.list_reports(ctx, with_changes=False)
            if item.status.state is State.MISSING
        ]
    except MuxError as exc:
        return Check("task windows", False, str(exc), fatal=False)
    if not missing:
        return Check("task windows", True, "every task has its window")
    names = ", ".join(f"'{name}'" for name in missing)
    detail = f"{len(missing)} task(s) without their window ({names}): start their agents again with `mux restart --all`"
    return Check("task windows", False, detail, fatal=False)
