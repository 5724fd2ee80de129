"""`mux compare NAME`: the members of a group (`mux new NAME -n N`) side by side, to pick the one to keep.

What each member changed is its patch against its base (`mux diff`: committed, uncommitted and untracked work);
similarity is the Jaccard index of the changed paths and of the patch's added and removed lines. The time to
first idle comes from the agent's hook events (the first event meaning idle after the agent was started), so an
agent without hooks shows none.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxagent import naming, render
from muxagent.commands.context import Context, load_tasks
from muxagent.commands.interact import Diff
from muxagent.commands.report import list_reports
from muxagent.commands.worktree_setup import CheckRun, run_check
from muxagent.errors import MuxError, UnknownTaskError, UsageError
from muxagent.git import diffs, merging, worktrees
from muxagent.model import State, Task, TaskReport
from muxagent.status import events

# Diffs read and checks run at once: each is a child process of its own.
PARALLEL = 8
CHECK_LINES = 5


@dataclass(frozen=True)
class PatchSummary:
    """What a patch changes: its paths, its line counts, and its added/removed lines (for similarity)."""

    paths: frozenset[str]
    added: int
    removed: int
    lines: frozenset[str]


def summarize_patch(patch: str) -> PatchSummary:
    """Read a `git diff --patch` (pure): `+++ b/PATH` names a changed path, `--- a/PATH` a deleted one's."""
    paths: set[str] = set()
    lines: set[str] = set()
    added = removed = 0
    for line in patch.splitlines():
        if line.startswith(("+++ b/", "--- a/")):
            paths.add(line[6:])
        elif line.startswith(("+++ ", "--- ")):
            continue  # /dev/null: the other side names the path
        elif line.startswith("+"):
            added += 1
            lines.add(line)
        elif line.startswith("-"):
            removed += 1
            lines.add(line)
    return PatchSummary(frozenset(paths), added, removed, frozenset(lines))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets are alike (1.0)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


@dataclass(frozen=True)
class Member:
    task: Task
    state: State
    reason: str
    first_idle: float | None  # seconds from the agent's start to its first idle, from its hook events
    commits: int | None
    patch: PatchSummary | None  # None while its files are not checked out or its worktree is gone
    only: tuple[str, ...]  # the paths it changed and no other member did
    check: CheckRun | None = None

    def to_json(self) -> dict[str, Any]:
        patch, check = self.patch, self.check
        return {
            "name": self.task.name,
            "agent": self.task.agent,
            "state": self.state.value,
            "reason": self.reason,
            "first_idle_seconds": round(self.first_idle, 1) if self.first_idle is not None else None,
            "commits": self.commits,
            "files": sorted(patch.paths) if patch else None,
            "added_lines": patch.added if patch else None,
            "removed_lines": patch.removed if patch else None,
            "only_here": list(self.only),
            "check": None if check is None else {
                "exit_status": check.status,
                "timed_out": check.timed_out,
                "seconds": round(check.seconds, 2),
                "last_lines": [render.clean_line(line) for line in check.last_lines(CHECK_LINES)],
            },
        }  # fmt: skip


@dataclass(frozen=True)
class Similarity:
    a: str
    b: str
    paths: float
    lines: float


@dataclass(frozen=True)
class Comparison:
    """What `mux compare NAME` prints."""

    group: str
    members: tuple[Member, ...]
    similarity: tuple[Similarity, ...]
    check: str | None  # the command run with --check

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "check": self.check,
            "members": [member.to_json() for member in self.members],
            "similarity": [
                {"a": s.a, "b": s.b, "paths": round(s.paths, 3), "lines": round(s.lines, 3)} for s in self.similarity
            ],
        }

    def text(self) -> str:
        header = ["NAME", "AGENT", "STATE", "FIRST IDLE", "COMMITS", "FILES", "+/-", "ONLY HERE"]
        header += ["CHECK"] if self.check else []
        rows = [_row(member, bool(self.check)) for member in self.members]
        lines = [f"group {self.group}: {len(self.members)} members", *render.columns(header, rows)]
        if self.similarity:
            lines.append("similarity (changed paths / diff lines, 1 = the same):")
            lines += [f"  {s.a} ~ {s.b}: {s.paths:.2f} / {s.lines:.2f}" for s in self.similarity]
        for member in self.members:
            if member.check is not None and member.check.status != 0:
                lines.append(f"{member.task.name}: `{self.check}` {_check_cell(member.check)}:")
                lines += [f"  {render.clean_line(line)}" for line in member.check.last_lines(CHECK_LINES)]
        return "\n".join(lines)


def _row(member: Member, with_check: bool) -> list[str]:
    patch = member.patch
    cells = [
        member.task.name,
        member.task.agent,
        member.state.value,
        f"{member.first_idle:.0f}s" if member.first_idle is not None else "-",
        str(member.commits) if member.commits is not None else "-",
        str(len(patch.paths)) if patch else "-",
        f"+{patch.added} -{patch.removed}" if patch else "-",
        ", ".join(member.only) or "-",
    ]
    if with_check:
        cells.append(_check_cell(member.check) if member.check else "-")
    return cells


def _check_cell(check: CheckRun) -> str:
    if check.timed_out:
        return f"timed out ({check.seconds:.1f}s)"
    verdict = "passed" if check.status == 0 else f"failed (exit {check.status}"
    return f"{verdict}, {check.seconds:.1f}s)" if check.status else f"{verdict} ({check.seconds:.1f}s)"


def group_members(ctx: Context, group: str) -> list[Task]:
    """The tasks of group `group`, in creation order; UnknownTaskError if there are none."""
    name = naming.validate_name(group)
    members = [task for task in load_tasks(ctx) if task.group == name]
    if not members:
        raise UnknownTaskError(f"no group named {name!r}: `mux ls --json` shows each task's group")
    return members


def compare(ctx: Context, group: str, run_checks: bool = False) -> Comparison:
    members = group_members(ctx, group)
    command = _check_command(ctx) if run_checks else None
    names = {task.name for task in members}
    reports = {item.task.name: item for item in list_reports(ctx, only=names)}
    with ThreadPoolExecutor(PARALLEL) as pool:
        patches = list(pool.map(_patch, members))
        checks = (
            list(pool.map(lambda task: check_task(ctx, task, command), members)) if command else [None] * len(members)
        )
    found = [
        Member(
            task,
            reports[task.name].status.state,
            reports[task.name].status.reason,
            _first_idle(ctx, task),
            _commits(reports[task.name]),
            patch,
            _only_here(patch, [other for other in patches if other is not patch]),
            check,
        )
        for task, patch, check in zip(members, patches, checks, strict=True)
    ]
    pairs = [(a, b) for a, b in itertools.combinations(found, 2) if a.patch is not None and b.patch is not None]
    similarity = tuple(_similarity(a, b) for a, b in pairs)
    return Comparison(naming.validate_name(group), tuple(found), similarity, command)


def _similarity(a: Member, b: Member) -> Similarity:
    assert a.patch is not None and b.patch is not None  # compare() pairs only members with a patch
    paths, lines = jaccard(a.patch.paths, b.patch.paths), jaccard(a.patch.lines, b.patch.lines)
    return Similarity(a.task.name, b.task.name, paths, lines)


def _check_command(ctx: Context) -> str:
    """The repository's `check`, once `mux trust` approved it (it runs code, as `setup` does)."""
    if "check" in ctx.settings.ignored_keys:
        where = ctx.settings.repo_config
        raise UsageError(f"{where} is not trusted, so its check does not run: read it, then `mux trust`")
    if ctx.settings.check is None:
        raise UsageError('no check command: set check = "..." (e.g. "pytest -q") in .mux.toml, then `mux trust`')
    return ctx.settings.check


def check_task(ctx: Context, task: Task, command: str | None) -> CheckRun | None:
    """The repository's check run in the task's worktree (None without a command or a worktree)."""
    worktree = Path(task.worktree)
    if command is None or not worktree.is_dir():
        return None
    # Each member's own MUX_PORT: checks that start servers run side by side without taking each other's port.
    env = {"MUX_TASK": task.name, "MUX_PORT": str(task.port), "MUX_WORKTREE": str(worktree)}
    env["MUX_REPO"] = str(ctx.repo.main)
    return run_check(command, worktree, env, ctx.settings.setup_timeout)


def _patch(task: Task) -> PatchSummary | None:
    try:
        return summarize_patch(diffs.diff(Path(task.worktree), task.base))
    except MuxError:  # not checked out yet, or the worktree is gone: nothing to compare
        return None


def _commits(item: TaskReport) -> int | None:
    return item.changes.ahead if item.changes is not None else None


def _only_here(patch: PatchSummary | None, others: list[PatchSummary | None]) -> tuple[str, ...]:
    if patch is None:
        return ()
    elsewhere = set().union(*(other.paths for other in others if other is not None))
    return tuple(sorted(patch.paths - elsewhere))


def _first_idle(ctx: Context, task: Task) -> float | None:
    run = events.read_current_run(events.events_path(ctx.store.root, task.name))
    spawn = next((event.ts for event in run if event.name == events.SPAWN), None)
    idle = next((event.ts for event in run if event.state is State.IDLE and event.name != events.SPAWN), None)
    return idle - spawn if spawn is not None and idle is not None else None


def diff_between(ctx: Context, group: str, a: str, b: str) -> Diff:
    """`mux compare NAME --diff A B`: from member A's work to member B's, uncommitted files included. A member is
    named in full (`fix-2`) or by what follows the group's name (`2`)."""
    members = {task.name: task for task in group_members(ctx, group)}
    snapshots = []
    for given in (a, b):
        task = members.get(given) or members.get(f"{group}-{given}")
        if task is None:
            raise UnknownTaskError(f"{given!r} is no member of group {group!r}: {', '.join(members)}")
        worktree = Path(task.worktree)
        if not worktree.is_dir():
            raise MuxError(f"the worktree of {task.name!r} is gone ({worktree}): `mux restore {task.name}` first")
        worktrees.require_checkout(worktree)
        snapshots.append(merging.worktree_snapshot(worktree, task.branch))
    return Diff(f"{a}..{b}", diffs.between(ctx.repo, snapshots[0], snapshots[1]), stat=False)
