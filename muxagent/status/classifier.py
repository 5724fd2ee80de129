"""Pure classification of a task's state from hook events, the screen and what tmux says about the pane.

Signals, strongest first: a missing window or worktree, a dead pane, the latest hook event (checked against the
screen, see `_from_hook`), the profile's screen patterns (waiting beats working beats idle), then how recently
the pane printed something.

The rule for conflicting evidence (a hook says one thing, the screen another):
- A hook decides until the screen contradicts it. No state flips back and forth on unchanged evidence: each test
  below depends on the hook's age, the screen's markers and whether the pane printed since the hook, so a
  screen showing one of the profile's markers gives the same state however often it redraws (only a screen
  with no marker at all is judged by how recently it printed).
- working (UserPromptSubmit, PreToolUse, ...): holds while the screen shows a busy marker, and for a gate of
  `idle_after` seconds after the event (the agent may not have drawn its busy screen yet). Past the gate, a screen
  without a busy marker decides: idle on the idle prompt, reason `screen: ... (hook UserPromptSubmit 12s old)`.
  The same old event never takes the state back; only a busy marker or a newer event does. (A profile without
  busy markers can only tell by quiet: then the hook holds until the pane is quiet for `idle_after`.)
- waiting (PermissionRequest, ...): holds until the question is off the screen and the busy marker shows or the
  pane printed since; then the screen decides (a permission granted: working; denied: the idle prompt).
- idle (Stop, StopFailure, ...): holds until a busy marker shows with output since (a turn started without a hook).
- A question on screen beats a working or idle hook: a dialog shows before its hook arrives and outlives a
  Stop that raced it.
So a turn that ends with no hook (Esc or Ctrl-C in Claude Code, a model server gone) is idle within
`idle_after` of its last event, and a failed request ends in idle through StopFailure or the idle prompt.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from muxagent.model import PaneInfo, State, StatusRules, TaskStatus
from muxagent.status.events import HookEvent
from muxagent.status.patterns import (
    first_match,  # RE2, linear time: a repo's pattern cannot stall `ls`, `wait`, the monitor
)

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
    events: Sequence[HookEvent] = ()


# Cached: the monitor normalizes every unchanged screen twice a second, and the same text object back lets the
# pattern searches' cache (patterns.first_match) find it without hashing it again.
@functools.lru_cache(maxsize=512)
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
    hook = latest_hook(obs.events)
    if hook is not None:
        from_hook = _from_hook(hook, pane, screen, rules, obs.now)
        if from_hook is not None:
            return from_hook
    return _from_screen(pane, screen, rules, obs.now)


def latest_hook(events: Sequence[HookEvent]) -> HookEvent | None:
    """The newest event that means a state.

    Codex also reports the turn of a side thread that titles the session, early, while the real turn may still
    wait for an approval: no thread filter is needed for that, because an open dialog on screen beats an idle
    hook and output after an idle hook hands over to the screen (see `_from_hook`).
    """
    return next((event for event in reversed(events) if event.state is not None), None)


def question_on_screen(rules: StatusRules, screen: str) -> str | None:
    """The reason, if the screen shows something the agent asks a person: trust, login, any other question."""
    for label, patterns in (("trust dialog", rules.trust), ("login", rules.login), ("screen", rules.waiting)):
        pattern = first_match(patterns, screen)
        if pattern is not None:
            return f"{label}: {pattern}"
    return None


def _from_hook(hook: HookEvent, pane: PaneInfo, screen: str, rules: StatusRules, now: float) -> TaskStatus | None:
    """The hook's state unless the screen has moved on since; None hands over to the screen rules (see the
    module's docstring for the rule and why each branch is there)."""
    waiting = question_on_screen(rules, screen)
    working = first_match(rules.working, screen)
    # window_activity has one-second resolution: only output a full second after the event is newer for sure.
    output_since = pane.activity > hook.ts + 1
    reason = f"hook: {hook.name}"
    if hook.state is State.WAITING:
        if waiting is None and (working is not None or output_since):
            return None  # the question was answered (a busy screen says so at once): the agent has moved on
        return TaskStatus(State.WAITING, reason, last_activity=pane.activity)
    if waiting is not None:
        # A dialog on screen outlives a Stop that raced it, and shows before its own hook arrives.
        return TaskStatus(State.WAITING, f"{waiting} (after {reason})", last_activity=pane.activity)
    if hook.state is State.IDLE:
        if working is not None and output_since:
            return None  # a new turn the agent has no hook for (a prompt typed in its window)
        return TaskStatus(State.IDLE, reason, last_activity=pane.activity)
    if hook.state is State.WORKING:
        if working is None and _turn_over_without_hook(hook, pane, rules, now):
            status = _from_screen(pane, screen, rules, now)
            age = max(0.0, now - hook.ts)
            return replace(status, reason=f"{status.reason} (hook {hook.name} {age:.0f}s old)")
        return TaskStatus(State.WORKING, reason, last_activity=pane.activity)
    return None  # an exit hook with a live pane: the pane decides


def _turn_over_without_hook(hook: HookEvent, pane: PaneInfo, rules: StatusRules, now: float) -> bool:
    """Whether a working hook no longer speaks for the pane, whose screen shows no busy marker.

    Only after the gate (`idle_after` since the hook): the agent may not have drawn its busy screen yet. Then a
    profile with busy markers is believed at once, and for good: Claude Code fires no hook when Esc interrupts
    its turn, and its idle screen keeps redrawing now and then; judging by quiet alone, each redraw brought the
    old UserPromptSubmit back (`mux ls` flapped between idle and working forever). Without busy markers,
    only quiet for `idle_after` can say so.
    """
    if now - hook.ts < rules.idle_after:
        return False
    return bool(rules.working) or now - pane.activity >= rules.idle_after


def _from_screen(pane: PaneInfo, screen: str, rules: StatusRules, now: float) -> TaskStatus:
    question = question_on_screen(rules, screen)
    if question is not None:
        return TaskStatus(State.WAITING, question, last_activity=pane.activity)
    for state, patterns in (
        (State.WORKING, rules.working),
        (State.IDLE, rules.idle),
    ):
        pattern = first_match(patterns, screen)
        if pattern is not None:
            return TaskStatus(state, f"screen: {pattern}", last_activity=pane.activity)
    quiet = max(0.0, now - pane.activity)
    # window_activity has one-second resolution, so "quiet for idle_after" is judged to within a second.
    if quiet < rules.idle_after:
        return TaskStatus(State.WORKING, f"pane output {quiet:.0f}s ago", last_activity=pane.activity)
    return TaskStatus(State.IDLE, f"pane quiet {quiet:.0f}s", last_activity=pane.activity)
