"""The accuracy benchmark's judging (bench/accuracy.py): agreement outside the grace windows, detection latency,
and flaps, on hand-made truth and samples whose right answers are known."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from accuracy import HOOK_GRACE_S, IDLE_AFTER_S, Shown, Transition, judge

# idle from 0, working from 10 (a hook says so), idle from 20 (only the screen shows it).
TRUTH = [
    Transition(0.0, "idle", "screen", "starting"),
    Transition(10.0, "working", "hook", "idle"),
    Transition(20.0, "idle", "screen", "working"),
]


def looks(*points: tuple[float, str]) -> list[Shown]:
    """`ls` runs of 0.1 s each, starting at the given times."""
    return [Shown(at, at + 0.1, state) for at, state in points]


def test_agreement_leaves_out_the_grace_window_after_each_transition() -> None:
    shown = looks((5, "idle"), (10.5, "idle"), (12, "working"), (15, "working"), (21, "working"), (25, "idle"))
    result = judge(TRUTH, shown)
    # 10.5 is inside the hook's grace, 21 inside the screen's: judged are 5, 12, 15 and 25, all right.
    assert HOOK_GRACE_S > 10.5 - 10 and IDLE_AFTER_S + 1 > 21 - 20
    assert (result["judged"], result["agreement_pct"], result["flaps"], result["missed"]) == (4, 100.0, [], 0)
    assert result["latency_s"]["idle->working (hook)"]["p50"] == 2.1  # first seen by the look that ended at 12.1
    assert result["latency_s"]["working->idle (screen)"]["p50"] == 5.1


def test_a_state_shown_wrong_long_after_the_truth_settled_is_a_flap_and_a_disagreement() -> None:
    shown = looks((5, "idle"), (12, "working"), (15, "working"), (16, "idle"), (17, "working"), (25, "idle"))
    result = judge(TRUTH, shown)
    assert [(flap["from"], flap["to"], flap["truth"]) for flap in result["flaps"]] == [
        ("working", "idle", "working"),
        ("idle", "working", "working"),
    ]
    assert result["agreement_pct"] == round(100 * 5 / 6, 2)


def test_a_transition_never_shown_is_counted_missed() -> None:
    result = judge(TRUTH, looks((5, "idle"), (25, "idle")))  # the working spell fell between two looks
    assert result["missed"] == 1 and result["flaps"] == []
    assert list(result["latency_s"]) == ["working->idle (screen)"]


def test_the_readme_block_is_what_the_committed_run_makes() -> None:
    """README.md's accuracy figures are generated from the committed runs (the stand-ins', the real Claude
    Code's), never pasted (they drifted before)."""
    from accuracy import markdown
    from report import README, with_block

    runs = ["bench/accuracy.json", "bench/accuracy-real.json"]
    checkout = Path(__file__).resolve().parent.parent
    text = README.read_text(encoding="utf-8")
    generator = f"python bench/accuracy.py --write-readme {' '.join(runs)}"
    body = markdown([json.loads((checkout / run).read_text()) for run in runs])
    assert with_block(text, "accuracy", body, generator) == text
