"""Classification rules over plain strings and pane facts."""

from __future__ import annotations

from collections.abc import Sequence

from muxagent.model import PaneInfo, State, StatusRules
from muxagent.status.classifier import Observation, classify
from muxagent.status.events import HookEvent

RULES = StatusRules(
    idle_after=3.0,
    waiting=(r"Do you want to", r"\(y/n\)\s*\Z"),
    working=(r"esc to interrupt",),
    idle=(r"\? for shortcuts",),
)
NOW = 1_000_000.0


def pane(dead: bool = False, status: int | None = None, activity: float = NOW) -> PaneInfo:
    return PaneInfo("%1", "@1", "s", dead, status, activity, "agent", "t")


def observe(
    screen: str | None = "",
    p: PaneInfo | None = None,
    *,
    worktree_exists: bool = True,
    created: float = NOW - 100,
    events: Sequence[HookEvent] = (),
) -> Observation:
    return Observation(
        pane=p if p is not None else pane(),
        screen=screen,
        worktree_exists=worktree_exists,
        server_running=True,
        created=created,
        now=NOW,
        events=events,
    )


def test_dead_pane_is_exited_with_its_status() -> None:
    result = classify(observe("esc to interrupt", pane(dead=True, status=3)), RULES)
    assert (result.state, result.exit_status) == (State.EXITED, 3)
    assert "exit 3" in result.reason


def test_missing_worktree_wins_over_everything() -> None:
    result = classify(observe("esc to interrupt", worktree_exists=False), RULES)
    assert result.state is State.MISSING
    assert result.reason == "worktree gone"


def test_missing_window_says_whether_the_server_is_running() -> None:
    obs = Observation(None, None, True, False, NOW, NOW)
    assert classify(obs, RULES).reason == "tmux server not running"


def test_waiting_beats_working_beats_idle() -> None:
    both = "Do you want to create hello.txt?\n❯ 1. Yes\nesc to interrupt\n? for shortcuts"
    assert classify(observe(both), RULES).state is State.WAITING
    assert classify(observe("esc to interrupt\n? for shortcuts"), RULES).state is State.WORKING
    idle = classify(observe("? for shortcuts"), RULES)
    assert idle.state is State.IDLE
    assert idle.reason == r"screen: \? for shortcuts"


def test_an_answered_question_no_longer_counts_as_waiting() -> None:
    screen = "Apply? (y/n) y\nanswer: y\nfake>   \n\n\n"
    assert classify(observe(screen, pane(activity=NOW - 10)), RULES).state is State.IDLE
    assert classify(observe("Apply? (y/n)   \n\n"), RULES).state is State.WAITING


def test_unclassified_screen_uses_output_activity() -> None:
    busy = classify(observe("compiling...", pane(activity=NOW - 1)), RULES)
    assert (busy.state, busy.reason) == (State.WORKING, "pane output 1s ago")
    quiet = classify(observe("compiling...", pane(activity=NOW - 5)), RULES)
    assert (quiet.state, quiet.reason) == (State.IDLE, "pane quiet 5s")


def test_blank_screen_is_starting_only_at_first() -> None:
    assert classify(observe("\n\n", created=NOW - 2), RULES).state is State.STARTING
    assert classify(observe("\n\n", pane(activity=NOW - 60), created=NOW - 100), RULES).state is State.IDLE


def test_unreadable_screen_is_unknown_not_idle() -> None:
    assert classify(observe(None), RULES).state is State.UNKNOWN


def hook(ts: float, state: State | None, name: str = "Ev", source: str = "claude", detail: str = "") -> HookEvent:
    return HookEvent(ts, source, name, state, detail)


CLAUDE_DIALOG = "Do you want to create hello.txt?\n❯ 1. Yes\n  2. No\nEsc to cancel"


def test_hook_state_wins_over_a_quiet_screen() -> None:
    events = [hook(NOW - 20, State.WORKING, "spawn", "mux"), hook(NOW - 10, State.IDLE, "Stop")]
    result = classify(observe("some output", pane(activity=NOW - 10), events=events), RULES)
    assert (result.state, result.reason) == (State.IDLE, "hook: Stop")


def test_stop_after_a_waiting_notification_does_not_hide_an_open_dialog() -> None:
    events = [hook(NOW - 3, State.WAITING, "PermissionRequest"), hook(NOW - 2, State.IDLE, "Stop")]
    result = classify(observe(CLAUDE_DIALOG, pane(activity=NOW), events=events), RULES)
    assert result.state is State.WAITING
    assert "after hook: Stop" in result.reason


def test_answered_permission_leaves_waiting() -> None:
    events = [hook(NOW - 10, State.WAITING, "PermissionRequest")]
    still_open = classify(observe(CLAUDE_DIALOG, pane(activity=NOW), events=events), RULES)
    assert (still_open.state, still_open.reason) == (State.WAITING, "hook: PermissionRequest")
    answered = classify(observe("Writing hello.txt\nesc to interrupt", pane(activity=NOW), events=events), RULES)
    assert (answered.state, answered.reason) == (State.WORKING, "screen: esc to interrupt")


def test_dialog_on_screen_before_its_hook_arrives_is_waiting() -> None:
    events = [hook(NOW - 5, State.WORKING, "PreToolUse")]
    assert classify(observe(CLAUDE_DIALOG, events=events), RULES).state is State.WAITING


def test_working_hook_does_not_stick_when_the_turn_died_without_a_hook() -> None:
    events = [hook(NOW - 30, State.WORKING, "PreToolUse")]
    busy = classify(observe("esc to interrupt", pane(activity=NOW - 30), events=events), RULES)
    assert busy.state is State.WORKING
    died = classify(
        observe("API Error: connection refused\n? for shortcuts", pane(activity=NOW - 30), events=events), RULES
    )
    assert (died.state, died.reason) == (State.IDLE, r"screen: \? for shortcuts")


def test_codex_title_thread_completion_does_not_hide_its_open_approval() -> None:
    title_done = [hook(NOW - 4, State.IDLE, "agent-turn-complete", "codex", "title-thread")]
    approval = "Would you like to run the following command?\n› 1. Yes, proceed (y)\nPress enter to confirm or esc"
    rules = StatusRules(waiting=(r"Would you like to run the following command",), working=(r"esc to interrupt",))
    result = classify(observe(approval, pane(activity=NOW), events=title_done), rules)
    assert result.state is State.WAITING
    answered = classify(observe("• Working (3s • esc to interrupt)", pane(activity=NOW), events=title_done), rules)
    assert answered.state is State.WORKING


def test_new_turn_without_a_hook_after_idle_is_working() -> None:
    events = [hook(NOW - 10, State.IDLE, "agent-turn-complete", "codex", "t")]
    result = classify(observe("• Working (2s • esc to interrupt)", pane(activity=NOW), events=events), RULES)
    assert result.state is State.WORKING


def test_trust_and_login_screens_are_waiting_and_say_so() -> None:
    rules = StatusRules(trust=(r"Trust this folder\?",), login=(r"Sign in with ChatGPT",), idle=(r"›",))
    trust = classify(observe("> Trust this folder?\n 1. Trust and continue\n›"), rules)
    assert (trust.state, trust.reason) == (State.WAITING, r"trust dialog: Trust this folder\?")
    login = classify(observe("Sign in with ChatGPT\nPress enter to continue"), rules)
    assert (login.state, login.reason) == (State.WAITING, "login: Sign in with ChatGPT")
