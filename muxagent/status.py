"""Pure classification of a task's state from what tmux and the filesystem say about it.

Signals, strongest first: a missing window or worktree, a dead pane, the profile's screen rules (waiting beats
working beats idle), then how recently the pane printed something.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from muxagent.model import PaneInfo, State, StatusRules, TaskStatus

# A window whose screen is still blank this long after creation is starting, not idle: agents such as Claude Code
# take a few seconds to draw their first frame.
STARTING_GRACE = 30.0


@dataclass(frozen=True)
class Observation:
    """What one snapshot saw of a task; `screen` is None when it could not be captured."""

    pane: PaneInfo | None
    screen: str | None
    worktree_exists: bool
    server_running: bool
    created: float
    now: float


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.MULTILINE)


def first_match(patterns: tuple[str, ...], screen: str) -> str | None:
    """The first pattern found on the screen."""
    for pattern in patterns:
        if _compile(pattern).search(screen):
            return pattern
    return None


def normalize_screen(text: str) -> str:
    """Trailing blanks removed from each line and from the end, so patterns can anchor on the cursor line."""
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n")


def classify(obs: Observation, rules: StatusRules) -> TaskStatus:
    pane = obs.pane
    if not obs.worktree_exists:
        return TaskStatus(State.MISSING, "worktree gone")
    if pane is None:
        reason = "window gone" if obs.server_running else "tmux server not running"
        return TaskStatus(State.MISSING, reason)
    if pane.dead:
        code = pane.dead_status
        return TaskStatus(State.EXITED, f"pane dead (exit {code})", exit_status=code, last_activity=pane.activity)
    if obs.screen is None:
        return TaskStatus(State.UNKNOWN, "screen could not be read", last_activity=pane.activity)
    screen = normalize_screen(obs.screen)
    if not screen.strip() and obs.now - obs.created < STARTING_GRACE:
        return TaskStatus(State.STARTING, "nothing drawn yet", last_activity=pane.activity)
    for state, patterns in (
        (State.WAITING, rules.waiting),
        (State.WORKING, rules.working),
        (State.IDLE, rules.idle),
    ):
        pattern = first_match(patterns, screen)
        if pattern is not None:
            return TaskStatus(state, f"screen: {pattern}", last_activity=pane.activity)
    quiet = max(0.0, obs.now - pane.activity)
    # window_activity has one-second resolution, so "quiet for idle_after" is judged to within a second.
    if quiet < rules.idle_after:
        return TaskStatus(State.WORKING, f"pane output {quiet:.0f}s ago", last_activity=pane.activity)
    return TaskStatus(State.IDLE, f"pane quiet {quiet:.0f}s", last_activity=pane.activity)
