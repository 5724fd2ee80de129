"""What each section of the benchmark returns: the figures it measured, as they are written to the JSON."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from harness import Spread, Summary


class Churn(TypedDict):
    """`mux ls` and its floor right after edits."""

    mux: Summary
    floor: Summary
    ratio: float


class LsFigures(TypedDict):
    mux: Summary
    floor: Summary
    mux_console: NotRequired[Summary]  # when a `mux` console script sits beside the interpreter
    ratio: float
    ratio_console: float | None
    # Issue 14's reference: `python -c 'import json'` reading one file (the view), and mux's ratio to it.
    python_json: NotRequired[Summary]
    ratio_python_json: NotRequired[float]
    one_changed: Churn
    all_changed: Churn


class CompletionFigures(TypedDict):
    tasks: Summary
    tasks_console: Summary | None
    path_mux: str | None  # the `mux` on PATH, timed when it is not the console script
    tasks_path: Summary | None
    tasks_path_error: NotRequired[str]
    bash: Summary
    bash_prog: str
    candidates: int


class HookFigures(TypedDict):
    hook: Summary
    python_floor: Summary
    python_floor_nosite: Summary
    hook_nosite: Summary
    ratio: float


class LatencyFigures(Summary):
    timeouts: int
    ls_polls_median: int


class StatusLineFigures(TypedDict):
    """`mux status-line` as tmux's status-right runs it: its wall time, and the CPU (user + system) each run
    costs, as a share of a core at one run per `interval_s` (tmux's `status-interval`)."""

    mux: Summary
    cpu: Summary
    interval_s: float
    cpu_pct: float


class ScreenFigures(Summary):
    idle_after_s: float
    reasons: list[str]
    stays_idle: bool
    relapses: list[str]


class FamilyFigures(TypedDict):
    """From a sub-task's Stop hook: to its entry in the parent's inbox, and to the notice typed into the parent."""

    entry: Spread
    notice: Spread


class GroupFigures(TypedDict):
    """`mux new NAME -n size` until every window exists, and `mux compare NAME` of that group."""

    size: int
    new: Summary
    compare: Summary


class MonitorFigures(TypedDict):
    seconds: float
    cpu_pct: float
    cpu_pct_with_children: float
    tmux_server_cpu_pct: float
    rss_start_kib: int
    rss_end_kib: int
    rss_max_kib: int
    rss_samples_kib: list[int]


class BusyFigures(MonitorFigures):
    agents: int
    tasks: int


class MemoryFigures(TypedDict):
    seconds: float
    tasks: int
    events: int  # hook events (each with an edit) given meanwhile
    rss_start_kib: int
    rss_end_kib: int
    rss_max_kib: int
    growth_kib: int  # the median of the last fifth of the samples less that of the first fifth
    rss_samples_kib: list[int]


class NewFigures(TypedDict):
    mux: Summary
    hand: Summary
    mux_ready: Summary
    ratio: float
    ready_ratio: float
    setup_new: NotRequired[Summary]  # every `mux new` that built up the tasks, added at the end of the run


class Results(TypedDict):
    """A whole run, as `--json` writes it (sections measured at every N are keyed by N, as text)."""

    date: str
    command: str
    machine: dict[str, Any]
    options: dict[str, Any]
    repo: dict[str, Any]
    ls: dict[str, LsFigures]
    completion: dict[str, CompletionFigures]
    hook: HookFigures
    hook_latency: dict[str, LatencyFigures]
    status_line: NotRequired[dict[str, StatusLineFigures]]  # runs from before issue 14's last step have none
    edit_latency: NotRequired[dict[str, LatencyFigures]]  # nor this
    new: NewFigures
    monitor_quiet: dict[str, MonitorFigures]
    screen_latency: ScreenFigures
    family: NotRequired[FamilyFigures]  # runs from before issue 12 have none
    group: NotRequired[GroupFigures]  # nor from before issue 15
    monitor_busy: dict[str, BusyFigures]
    monitor_memory: NotRequired[MemoryFigures]  # only with --memory-seconds
    ls_growth: dict[str, Any]  # "counts", then one entry per series (see run.GROWTH_SERIES)
    elapsed_s: float
    complete: bool
    checks: list[dict[str, Any]]
