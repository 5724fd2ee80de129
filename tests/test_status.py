"""Classification rules over plain strings and pane facts."""

from __future__ import annotations

from muxagent.model import PaneInfo, State, StatusRules
from muxagent.status import Observation, classify

RULES = StatusRules(
    idle_after=3.0,
    waiting=(r"Do you want to", r"\(y/n\)\s*\Z"),
    working=(r"esc to interrupt",),
    idle=(r"\? for shortcuts",),
)
NOW = 1_000_000.0


def pane(dead: bool = False, status: int | None = None, activity: float = NOW) -> PaneInfo:
    return PaneInfo("%1", "@1", "s", dead, status, activity, "agent", "t")


def observe(screen: str | None = "", p: PaneInfo | None = None, **kw: object) -> Observation:
    values: dict[str, object] = {
        "pane": p if p is not None else pane(),
        "screen": screen,
        "worktree_exists": True,
        "server_running": True,
        "created": NOW - 100,
        "now": NOW,
    }
    values.update(kw)
    return Observation(**values)  # type: ignore[arg-type]


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
