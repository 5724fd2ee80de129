"""Classification rules over plain strings and pane facts."""

from __future__ import annotations

from collections.abc import Sequence

from muxagent.model import PaneInfo, State, StatusRules
from muxagent.status.classifier import Observation, classify
from muxagent.status.events import HookEvent
from muxagent.status.hooks import interpret

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
    assert (died.state, died.reason) == (State.IDLE, r"screen: \? for shortcuts (hook PreToolUse 30s old)")


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


CLAUDE_IDLE = (
    "● Let me think\n  ⎿  Interrupted · What should Claude do instead?\n❯\n  ⏸ manual mode on · ? for shortcuts"
)


def test_an_interrupted_turn_is_idle_however_often_its_screen_redraws() -> None:
    """Claude Code fires no hook when Esc ends its turn, and its idle screen redraws now and then: each redraw
    once brought the old UserPromptSubmit back (working, idle, working... for as long as one watched)."""
    events = [hook(NOW - 12, State.WORKING, "UserPromptSubmit")]
    for redrawn in (NOW, NOW - 1, NOW - 2, NOW - 5):
        result = classify(observe(CLAUDE_IDLE, pane(activity=redrawn), events=events), RULES)
        assert (result.state, result.reason) == (
            State.IDLE,
            r"screen: \? for shortcuts (hook UserPromptSubmit 12s old)",
        )


def test_a_fresh_working_hook_holds_until_the_agent_draws_its_busy_screen() -> None:
    events = [hook(NOW - 1, State.WORKING, "UserPromptSubmit")]
    result = classify(observe(CLAUDE_IDLE, pane(activity=NOW), events=events), RULES)
    assert (result.state, result.reason) == (State.WORKING, "hook: UserPromptSubmit")
    gate_passed = classify(observe(CLAUDE_IDLE, pane(activity=NOW), events=[hook(NOW - 3, State.WORKING)]), RULES)
    assert gate_passed.state is State.IDLE


def test_an_old_working_hook_holds_while_the_busy_marker_shows() -> None:
    events = [hook(NOW - 300, State.WORKING, "PreToolUse")]
    result = classify(
        observe("● Bash(sleep 300)\n✽ Waiting… (esc to interrupt)", pane(activity=NOW), events=events), RULES
    )
    assert (result.state, result.reason) == (State.WORKING, "hook: PreToolUse")


def test_without_markers_an_old_working_hook_gives_way_to_pane_activity() -> None:
    events = [hook(NOW - 30, State.WORKING, "PreToolUse")]
    printing = classify(observe("compiling...", pane(activity=NOW), events=events), RULES)
    assert (printing.state, printing.reason) == (State.WORKING, "pane output 0s ago (hook PreToolUse 30s old)")
    quiet = classify(observe("compiling...", pane(activity=NOW - 5), events=events), RULES)
    assert quiet.state is State.IDLE
    # A profile with no busy marker cannot tell a redraw from work: its hook holds until the pane is quiet.
    bare = StatusRules(idle_after=3.0)
    assert classify(observe("compiling...", pane(activity=NOW), events=events), bare).reason == "hook: PreToolUse"
    assert classify(observe("compiling...", pane(activity=NOW - 5), events=events), bare).state is State.IDLE


def test_unchanged_evidence_never_flips_the_state() -> None:
    """A watcher sampling at 4 Hz for 20 s after an interrupt, the idle screen redrawn every 2.5 s: one state."""
    start = NOW - 20
    events = [hook(start - 8, State.WORKING, "UserPromptSubmit")]
    seen = []
    for tick in range(80):
        now = start + tick / 4
        activity = float(int(start + 2.5 * int((now - start) / 2.5)))  # whole seconds, as tmux reports them
        obs = Observation(pane(activity=activity), CLAUDE_IDLE, True, True, start - 100, now, events)
        seen.append(classify(obs, RULES).state)
    assert set(seen) == {State.IDLE}


def test_turns_that_fail_or_are_interrupted_map_to_idle() -> None:
    assert interpret("claude", {"hook_event_name": "StopFailure", "error": "rate_limit"}) == (
        "StopFailure:rate_limit",
        State.IDLE,
        "",
    )
    assert interpret("claude", {"hook_event_name": "StopFailure", "error": "\x1b[2J"})[:2] == (
        "StopFailure",
        State.IDLE,
    )
    interrupted = {"hook_event_name": "PostToolUseFailure", "is_interrupt": True, "error": "Interrupted"}
    assert interpret("claude", interrupted) == ("PostToolUseFailure:interrupt", State.IDLE, "")
    failed = {"hook_event_name": "PostToolUseFailure", "is_interrupt": False, "error": "exit 1"}
    assert interpret("claude", failed)[:2] == ("PostToolUseFailure", State.WORKING)  # the model gets the error
    assert interpret("claude", {"hook_event_name": "PermissionDenied"})[:2] == ("PermissionDenied", State.WORKING)


def test_a_granted_permission_is_working_as_soon_as_the_busy_screen_shows() -> None:
    """Without waiting for tmux's one-second activity clock to pass the hook (it cost up to 2 s)."""
    events = [hook(NOW - 0.5, State.WAITING, "PermissionRequest")]
    result = classify(observe("● Bash(make)\n✽ Running… (esc to interrupt)", pane(activity=NOW), events=events), RULES)
    assert (result.state, result.reason) == (State.WORKING, "screen: esc to interrupt")
