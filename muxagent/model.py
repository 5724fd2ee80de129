"""Typed records that cross module boundaries."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Told what a long operation is doing now, in a few words ("merging x into main"); the CLI draws it.
Progress = Callable[[str], None]


def no_progress(_step: str) -> None:
    """The Progress of callers that show none."""


class State(enum.StrEnum):
    STARTING = "starting"
    WORKING = "working"
    WAITING = "waiting"
    IDLE = "idle"
    EXITED = "exited"
    MISSING = "missing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class StatusRules:
    """Screen patterns (Python regexes over the visible screen) and the quiet time that means idle."""

    idle_after: float = 3.0
    waiting: tuple[str, ...] = ()
    working: tuple[str, ...] = ()
    idle: tuple[str, ...] = ()
    # Dialogs that are `waiting` too, named in the reason: the folder-trust question, a login screen.
    trust: tuple[str, ...] = ()
    login: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentProfile:
    name: str
    command: tuple[str, ...]
    # None: the agent takes no prompt on its command line, so mux pastes it once the agent is ready.
    prompt_args: tuple[str, ...] | None = None
    resume_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    hooks: str = "none"
    status: StatusRules = StatusRules()
    # Answer the agent's folder-trust dialog for a task's worktree when the main checkout is trusted already,
    # by choosing the menu entry that `trust_choice` (a regex) matches.
    auto_trust: bool = False
    trust_choice: str | None = None
    # `mux new --sandbox` for every task of this agent; what the agent writes besides its worktree (`~`, `$VAR`;
    # a trailing `/` makes a missing folder); "none" cuts the sandbox off the network.
    sandbox: bool = False
    sandbox_writable: tuple[str, ...] = ()
    sandbox_network: str = "full"
    # Set inside the sandbox unless the agent's environment has them; files copied before the first sandboxed
    # start, target from source (each `~` and `$VAR` expanded): where the agent keeps state a read-only home
    # cannot hold.
    sandbox_env: Mapping[str, str] = field(default_factory=dict)
    sandbox_seed: Mapping[str, str] = field(default_factory=dict)
    # Added by `mux new --yolo` (which implies the sandbox): the agent's own "ask nothing" switch.
    yolo_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """One task as recorded in the registry."""

    name: str
    agent: str
    command: tuple[str, ...]
    base: str
    branch: str
    worktree: str
    session: str
    window: str
    created: str
    port: int
    prompt: str | None = None
    # The task this one was started from (a sub-task reports to it and merges into its branch); None at the top.
    parent: str | None = None
    # The states whose reaching is told to the parent's agent as a notice (inbox entries are kept for every one).
    notify: tuple[str, ...] = ()
    # The group this task is a member of (`mux new NAME -n 3`, or several `-a`: NAME); None for a lone task.
    group: str | None = None
    # A member held back by `--max-running`: its branch, worktree and record exist, and the monitor starts its
    # agent once fewer than `max_running` members of its group are starting, working or waiting.
    queued: bool = False
    max_running: int = 0
    # The agent runs in a bubblewrap sandbox (re-entered by `mux restart`), with the network "full" or "none";
    # `yolo`: with its profile's yolo_args.
    sandbox: bool = False
    sandbox_network: str = "full"
    yolo: bool = False
    # The host (`mux host add`) the task lives on, None here: its worktree, branch and window are there, its
    # `worktree` a path on that host.
    host: str | None = None


@dataclass(frozen=True)
class PaneInfo:
    """What one batched `tmux list-panes -a` says about a pane."""

    pane_id: str
    window_id: str
    session: str
    dead: bool
    dead_status: int | None
    activity: float
    current_command: str
    task: str
    pid: int = 0  # the process tmux started in the pane (0: not known)


@dataclass(frozen=True)
class Changes:
    """A task's work against its base, uncommitted edits included."""

    dirty_files: int = 0
    added_lines: int = 0
    removed_lines: int = 0
    ahead: int = 0
    behind: int = 0


@dataclass(frozen=True)
class TaskStatus:
    state: State
    reason: str
    exit_status: int | None = None
    last_activity: float | None = None


@dataclass(frozen=True)
class TaskReport:
    """Everything `mux ls` shows about one task."""

    task: Task
    status: TaskStatus
    changes: Changes | None
    conflicts: tuple[Mapping[str, object], ...] = ()
    # When the monitor last saw files change in the worktree, if it is running.
    last_change: float | None = None
    # Entries in the task's inbox (its sub-tasks' states) that no `mux inbox` has shown yet.
    inbox_unread: int = 0
    # When the newest hook event that means a state was written, if it means the state shown (else None). A turn
    # shorter than a monitor tick leaves the state as the tick before saw it; this moves, so the monitor still tells
    # a parent of its sub-task's turn (and not of a Codex side thread's event while a dialog is open).
    hook_ts: float | None = None

    def to_json(self) -> dict[str, Any]:
        """One row of `mux ls --json` (a contract: shared/DESIGN.md)."""
        task, st, ch = self.task, self.status, self.changes
        return {
            "name": task.name,
            "agent": task.agent,
            "state": st.state.value,
            "reason": st.reason,
            "branch": task.branch,
            "base": task.base,
            "worktree": task.worktree,
            "session": task.session,
            "window": task.window or None,
            "port": task.port or None,
            "ahead": ch.ahead if ch else None,
            "behind": ch.behind if ch else None,
            "dirty_files": ch.dirty_files if ch else None,
            "added_lines": ch.added_lines if ch else None,
            "removed_lines": ch.removed_lines if ch else None,
            "created": task.created,
            "last_activity": utc_iso(st.last_activity) if st.last_activity is not None else None,
            "last_change": utc_iso(self.last_change) if self.last_change is not None else None,
            "exit_status": st.exit_status if st.state is State.EXITED else None,
            "conflicts": [dict(c) for c in self.conflicts],
            "prompt": task.prompt,
            "inbox_unread": self.inbox_unread,
            "group": task.group,
            "sandbox": task.sandbox,
            "sandbox_network": task.sandbox_network if task.sandbox else None,
            "yolo": task.yolo,
            "host": task.host,
        }


def utc_iso(epoch: float) -> str:
    """ISO 8601 UTC to the second, the form every timestamp mux writes or prints takes."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
