"""The shipped profiles against real screens captured from the real agents (tests/fixtures/screens/).

A new agent release that changes its UI shows up here as a failing fixture: recapture the screens (see the
README beside them) and adjust the profile's patterns in config/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from realagents.install import PACKAGES

from muxagent.config import load_profile
from muxagent.model import PaneInfo, State
from muxagent.status.classifier import Observation, classify
from muxagent.status.events import HookEvent

SCREENS = Path(__file__).parent / "fixtures" / "screens"
NOW = 1_000_000.0
EXPECTED = {
    "working": State.WORKING,
    "idle": State.IDLE,
    "waiting": State.WAITING,
    "trust": State.WAITING,
    "login": State.WAITING,  # not signed in: a person has to act
    # After a failed request Claude is back at its prompt: ready for the next one.
    "api": State.IDLE,
    "server": State.IDLE,
}
# `<agent>/<version>/<state>[-how].txt`: every version's screens, the pinned ones and older ones kept as
# regression fixtures (a pattern refreshed for a new release must still read the screens of the last).
FIXTURES = sorted(p for p in SCREENS.glob("*/*/*.txt") if p.stem.split("-")[0] in EXPECTED)


def screen_of(agent: str, state: str) -> str:
    return (SCREENS / agent / PACKAGES[agent][1] / f"{state}.txt").read_text()


def test_every_agent_has_fixtures_for_its_main_states_at_its_pinned_version() -> None:
    for agent, (_, version) in PACKAGES.items():
        names = {p.stem for p in (SCREENS / agent / version).glob("*.txt")}
        assert {"idle", "working"} <= names and any(n.startswith("waiting-") for n in names), (agent, names)
    for agent in ("claude", "codex"):
        assert "trust" in {p.stem for p in (SCREENS / agent / PACKAGES[agent][1]).glob("*.txt")}


@pytest.mark.parametrize("fixture", FIXTURES, ids=["/".join(p.parts[-3:]) for p in FIXTURES])
def test_shipped_profile_classifies_the_real_screen(fixture: Path) -> None:
    agent, kind = fixture.parts[-3], fixture.stem.split("-")[0]
    pane = PaneInfo("%1", "@1", "s", False, None, NOW - 30, agent, "t")
    observation = Observation(pane, fixture.read_text(), True, True, NOW - 300, NOW)
    result = classify(observation, load_profile(agent).status)
    assert result.state is EXPECTED[kind], result.reason
    if kind in ("trust", "login"):
        assert result.reason.startswith("trust dialog: " if kind == "trust" else "login: "), result.reason


@pytest.mark.parametrize(
    ("agent", "state", "hook"),
    [
        ("claude", "idle-interrupted", "UserPromptSubmit"),
        ("codex", "idle-interrupted", "UserPromptSubmit"),
        ("opencode", "idle-after-turn", "session.status:busy"),
    ],
)
def test_a_turn_ended_without_its_hook_is_idle_though_its_last_hook_said_working(
    agent: str, state: str, hook: str
) -> None:
    """Esc ends the turn with no hook (OpenCode's idle event may come late or not at all): the idle prompt on the
    real screen, redrawn just now, outweighs the old working hook. Judged by quiet alone, each redraw of the
    screen would bring `working` back."""
    pane = PaneInfo("%1", "@1", "s", False, None, NOW, agent, "t")
    events = [HookEvent(NOW - 10, agent, hook, State.WORKING)]
    observation = Observation(pane, screen_of(agent, state), True, True, NOW - 300, NOW, events)
    result = classify(observation, load_profile(agent).status)
    assert result.state is State.IDLE, result.reason
    assert result.reason.startswith("screen: ") and result.reason.endswith(f"(hook {hook} 10s old)")
