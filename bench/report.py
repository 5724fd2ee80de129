"""The benchmark's targets, its verdicts, and the texts made from a run's JSON: the printed table, the README's
figures and bench/README.md's targets.

`TARGETS` is the one place a target is written: the checks, the printed table, the `checks` of the JSON and the
generated README blocks all read it, so a target changed here changes everywhere (a number pasted by hand into a
README drifted from the code before, issue 11).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from figures import BusyFigures, MemoryFigures, MonitorFigures, Results
from harness import Spread, Summary

CHECKOUT = Path(__file__).resolve().parent.parent
# Where the committed figures live, and the two files whose generated blocks are made from it and from TARGETS.
RESULTS = CHECKOUT / "bench" / "results.json"
README = CHECKOUT / "README.md"
BENCH_README = CHECKOUT / "bench" / "README.md"


@dataclass(frozen=True)
class Target:
    key: str  # the figure it judges (one per kind of figure; see FIGURES)
    label: str  # what it asks, for bench/README.md's list of targets
    limit: float
    unit: str  # "x" (a ratio), "ms", "s", "%", "" (a plain number), or what a count that must stay 0 counts
    compare: Literal["<", "<="] = "<"
    tasks: int | None = None  # it judges the figure at this N only (None: at every N measured)
    above: str = ""  # the limit is counted from this figure of the run (the screen-only target: idle_after + 1 s)

    def met(self, value: float, base: float = 0.0) -> bool:
        limit = self.limit + base
        return value < limit if self.compare == "<" else value <= limit

    def text(self) -> str:
        if self.limit == 0 and self.compare == "<=":
            return f"no {self.unit}"  # a count that must stay zero: "no timeouts"
        amount = f"{self.limit:g}{self.unit}" if self.unit in ("x", "") else f"{self.limit:g} {self.unit}"
        return f"{self.compare} {self.above + ' + ' if self.above else ''}{amount}"


# How long the bench waits for a hook event, and for a file edit, to show in `mux ls` before it counts a timeout.
HOOK_EVENT_TIMEOUT_S = 10.0
EDIT_TIMEOUT_S = 10.0

# Issues 5 and 3, on medians from a 2-core machine.
TARGETS: tuple[Target, ...] = (
    Target("ls_ratio", "`mux ls --json` with 10 tasks, against its floor", 2.0, "x", "<=", tasks=10),
    Target("ls_ratio", "`mux ls --json` with 50 tasks, against its floor", 1.5, "x", "<=", tasks=50),
    # k <= 1 is at most linear; the 0.1 allows for noise between the smallest and the largest N.
    Target("ls_growth", "growth of `mux ls` with N: the exponent k of t ~ N^k", 1.1, "", "<="),
    Target("new_ratio", "`mux new` against `git worktree add` + `tmux new-window` by hand", 1.3, "x", "<="),
    Target("completion_ms", "TAB completion of task names (bash, and the `mux _tasks` it runs)", 100.0, "ms"),
    Target("hook_ms", "the agent hook command (`mux _hook`)", 60.0, "ms"),
    Target("hook_latency_s", "a hook event visible in `mux ls --json`", 1.0, "s"),
    Target(
        "hook_latency_timeouts",
        f"hook events not seen in `mux ls --json` within {HOOK_EVENT_TIMEOUT_S:g} s",
        0.0,
        "timeouts",
        "<=",
    ),
    Target("screen_latency_s", "a screen-only transition (last output to idle)", 1.0, "s", above="idle_after"),
    Target("screen_relapses", "`ls` runs that saw a quiet agent busy again afterwards", 0.0, "relapses", "<="),
    Target("monitor_cpu_pct", "the monitor's CPU (with its tmux and git children), quiet agents", 3.0, "%"),
    Target("monitor_busy_cpu_pct", "the monitor's CPU (with tmux and git children), all agents printing", 10.0, "%"),
    Target("monitor_memory_growth_kib", "the monitor's memory growth over the memory window (last fifth less first)",
           1024.0, "KiB", "<="),
    # Issue 12, on p95s.
    Target("family_entry_s", "a sub-task's state change -> the entry in its parent's inbox (p95)", 1.0, "s"),
    Target("family_notice_s", "a sub-task idle -> the notice typed into its idle parent (p95)", 2.0, "s"),
    # Issue 15, on medians.
    Target("group_new_s", "`mux new NAME -n 10` until its ten windows exist", 1.5, "s"),
    Target("group_compare_s", "`mux compare NAME` of ten members, without --check", 1.0, "s"),
    # Issue 14 (the live view), on medians.
    Target("ls_ms", "`mux ls --json` with the monitor running", 100.0, "ms"),
    Target("ls_python_ratio", "`mux ls --json` against `python -c 'import json'` reading the view file", 1.5, "x",
           "<="),
    Target("status_line_ms", "`mux status-line`", 50.0, "ms"),
    Target("status_line_cpu_pct", "`mux status-line`'s CPU at `status-interval 5`, one client", 0.5, "%"),
    Target("hook_latency_s", "a hook event visible in `mux ls --json` at N = 100", 0.5, "s", tasks=100),
    Target("edit_latency_s", "a file edit counted in `mux ls --json`", 2.0, "s"),
)  # fmt: skip


def targets_for(key: str, tasks: int | None = None) -> list[Target]:
    return [t for t in TARGETS if t.key == key and (t.tasks is None or t.tasks == tasks)]


@dataclass(frozen=True)
class Check:
    """One figure of a run against one target: `figure` is the row of the printed table it marks."""

    target: Target
    figure: str
    value: float
    base: float = 0.0

    @property
    def met(self) -> bool:
        return self.target.met(self.value, self.base)

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "key": self.target.key,
            "value": self.value,
            "unit": self.target.unit,
            "target": self.target.text(),
            "limit": self.target.limit + self.base,
            "met": self.met,
        }


# --- the figures each target judges, section by section -----------------------------------------------------


# The printed table's label of each figure measured at every N: the checks find their rows by it.
PER_N_LABELS = {
    "ls": "mux ls --json, N={n}",
    "tab": "TAB: bash `mux attach <TAB>`, N={n}",
    "tasks": "  mux _tasks (python -m), N={n}",
    "latency": "hook event -> ls shows it, N={n}",
    "edit": "file edit -> ls counts it, N={n}",
    "python_json": "  against python reading the view, N={n}",
    "status": "mux status-line, N={n}",
    "status_cpu": "  its CPU at status-interval 5, N={n}",
    "quiet": "monitor CPU, N={n} quiet agents",
}


def label_at(kind: str, n: str) -> str:
    return PER_N_LABELS[kind].format(n=n)


GROWTH_ROWS = (
    ("mux", "floor", "steady"),
    ("mux_one_changed", "floor_one_changed", "one task edited"),
    ("mux_all_changed", "floor_all_changed", "every task edited"),
)


def growth_label(label: str) -> str:
    return f"ls growth k (t ~ N^k), {label}"


HOOK_LABEL = "hook command (_hook claude, Stop)"
SCREEN_LABEL = "last output -> ls shows idle"
RELAPSE_LABEL = "  quiet agent stays idle afterwards"


FAMILY_ENTRY_LABEL = "sub-task hook -> parent's inbox entry"
FAMILY_NOTICE_LABEL = "sub-task Stop -> notice typed into idle parent"


def group_labels(size: int) -> tuple[str, str]:
    return f"mux new -n {size} until its windows exist", f"mux compare of {size} members"


def busy_label(busy: BusyFigures) -> str:
    return f"monitor CPU, {busy['agents']} agents printing {busy['seconds']:.0f}s"


def memory_label(memory: MemoryFigures) -> str:
    return f"monitor RSS over {memory['seconds'] / 60:.0f} min, N={memory['tasks']}"


def checks_of(key: str, figure: str, value: float, tasks: int | None = None, base: float = 0.0) -> Iterator[Check]:
    for target in targets_for(key, tasks):
        yield Check(target, figure, value, base)


def checks(results: Results) -> list[Check]:
    """Every figure of a run that a target judges."""
    found: list[Check] = []
    for n, ls in results["ls"].items():
        found += checks_of("ls_ratio", label_at("ls", n), ls["ratio"], int(n))
        found += checks_of("ls_ms", label_at("ls", n), ls["mux"]["median_ms"], int(n))
        if "ratio_python_json" in ls:
            found += checks_of("ls_python_ratio", label_at("python_json", n), ls["ratio_python_json"], int(n))
    for n, status in results.get("status_line", {}).items():
        found += checks_of("status_line_ms", label_at("status", n), status["mux"]["median_ms"], int(n))
        found += checks_of("status_line_cpu_pct", label_at("status_cpu", n), status["cpu_pct"], int(n))
    for n, edit in results.get("edit_latency", {}).items():
        found += checks_of("edit_latency_s", label_at("edit", n), edit["median_ms"] / 1000, int(n))
    for series, _, label in GROWTH_ROWS:
        grown = results["ls_growth"].get(series)
        if grown and grown["exponent"] is not None:
            found += checks_of("ls_growth", growth_label(label), grown["exponent"])
    found += checks_of("new_ratio", "mux new", results["new"]["ratio"])
    for n, tab in results["completion"].items():
        found += checks_of("completion_ms", label_at("tab", n), tab["bash"]["median_ms"], int(n))
        found += checks_of("completion_ms", label_at("tasks", n), tab["tasks"]["median_ms"], int(n))
    found += checks_of("hook_ms", HOOK_LABEL, results["hook"]["hook"]["median_ms"])
    for n, latency in results["hook_latency"].items():
        found += checks_of("hook_latency_s", label_at("latency", n), latency["median_ms"] / 1000, int(n))
        found += checks_of("hook_latency_timeouts", label_at("latency", n), latency["timeouts"], int(n))
    screen = results["screen_latency"]
    found += checks_of("screen_latency_s", SCREEN_LABEL, screen["median_ms"] / 1000, base=screen["idle_after_s"])
    found += checks_of("screen_relapses", RELAPSE_LABEL, len(screen["relapses"]))
    for n, quiet in results["monitor_quiet"].items():
        found += checks_of("monitor_cpu_pct", label_at("quiet", n), quiet["cpu_pct_with_children"], int(n))
    for n, busy in results["monitor_busy"].items():
        found += checks_of("monitor_busy_cpu_pct", busy_label(busy), busy["cpu_pct_with_children"], int(n))
    if "monitor_memory" in results:
        memory = results["monitor_memory"]
        found += checks_of("monitor_memory_growth_kib", memory_label(memory), memory["growth_kib"])
    if "family" in results:
        family = results["family"]
        found += checks_of("family_entry_s", FAMILY_ENTRY_LABEL, family["entry"]["p95_ms"] / 1000)
        found += checks_of("family_notice_s", FAMILY_NOTICE_LABEL, family["notice"]["p95_ms"] / 1000)
    if "group" in results:
        group = results["group"]
        new_label, compare_label = group_labels(group["size"])
        found += checks_of("group_new_s", new_label, group["new"]["median_ms"] / 1000)
        found += checks_of("group_compare_s", compare_label, group["compare"]["median_ms"] / 1000)
    return found


# --- the printed table: one function per section -------------------------------------------------------------

Row = tuple[str, str, str, str]  # figure, mux, floor / reference, ratio


def ms(s: Summary | None) -> str:
    if not s:
        return "-"
    return f"{s['median_ms']:.1f} ms [{s['min_ms']:.0f}-{s['p90_ms']:.0f}]"


def cpu(item: MonitorFigures) -> tuple[str, str]:
    return (
        f"{item['cpu_pct']:.2f}% ({item['cpu_pct_with_children']:.2f}% w/ children)",
        f"tmux server {item['tmux_server_cpu_pct']:.2f}%",
    )


def ls_rows(r: Results) -> Iterator[Row]:
    for n, item in r["ls"].items():
        yield label_at("ls", n), ms(item["mux"]), ms(item["floor"]), f"{item['ratio']:.2f}x"
        if item.get("mux_console"):
            console = f"{item['ratio_console']:.2f}x"
            yield f"  via console script, N={n}", ms(item["mux_console"]), ms(item["floor"]), console
        if "python_json" in item and "ratio_python_json" in item:
            python = f"{item['ratio_python_json']:.2f}x"
            yield (
                label_at("python_json", n),
                ms(item["mux"]),
                ms(item["python_json"]) + " python -c 'import json'",
                python,
            )


def status_rows(r: Results) -> Iterator[Row]:
    for n, item in r.get("status_line", {}).items():
        yield label_at("status", n), ms(item["mux"]), "", ""
        cpu_each = f"{item['cpu']['median_ms']:.1f} ms CPU a run, every {item['interval_s']:g} s"
        yield label_at("status_cpu", n), f"{item['cpu_pct']:.2f}%", cpu_each, ""


def churn_rows(r: Results) -> Iterator[Row]:
    for n, item in r["ls"].items():
        for part, label in ((item["one_changed"], "one task edited"), (item["all_changed"], "every task edited")):
            yield f"{label_at('ls', n)}, {label}", ms(part["mux"]), ms(part["floor"]), f"{part['ratio']:.2f}x"


def growth_rows(r: Results) -> Iterator[Row]:
    grow = r["ls_growth"]
    for series, floor_series, label in GROWTH_ROWS:
        mux_g, floor_g = grow.get(series), grow.get(floor_series)
        if not mux_g or not floor_g or mux_g["exponent"] is None:
            continue
        yield growth_label(label), f"{mux_g['exponent']:.2f}", f"{floor_g['exponent']:.2f}", ""
        yield (
            f"  ms per extra task, {label}",
            ", ".join(f"{v:.1f}" for v in mux_g["ms_per_extra_task"]),
            ", ".join(f"{v:.1f}" for v in floor_g["ms_per_extra_task"]),
            "",
        )


def new_rows(r: Results) -> Iterator[Row]:
    new = r["new"]
    yield "mux new", ms(new["mux"]), ms(new["hand"]), f"{new['ratio']:.2f}x"
    ready = f"{new['ready_ratio']:.2f}x"
    yield "  mux new until the files are checked out", ms(new["mux_ready"]), ms(new["hand"]), ready
    yield "  mux new while growing tasks", ms(new["setup_new"]), "", ""


def tab_rows(r: Results) -> Iterator[Row]:
    for n, item in r["completion"].items():
        yield label_at("tab", n), ms(item["bash"]), "", ""
        yield label_at("tasks", n), ms(item["tasks"]), "", ""
        if item.get("tasks_console"):
            yield f"  mux _tasks (console script), N={n}", ms(item["tasks_console"]), "", ""
        if item.get("tasks_path"):
            yield f"  mux _tasks via PATH ({item['path_mux']})", ms(item["tasks_path"]), "", ""


def hook_rows(r: Results) -> Iterator[Row]:
    hook = r["hook"]
    yield HOOK_LABEL, ms(hook["hook"]), ms(hook["python_floor"]) + " python -P -c pass", f"{hook['ratio']:.2f}x"
    if hook.get("hook_nosite"):
        nosite_floor = ms(hook["python_floor_nosite"]) + " python -P -S -c pass"
        yield "  the same hook under python -S (idea)", ms(hook["hook_nosite"]), nosite_floor, ""


def latency_rows(r: Results) -> Iterator[Row]:
    for kind, series in (("latency", r["hook_latency"]), ("edit", r.get("edit_latency", {}))):
        for n, item in series.items():
            timeouts = f", {item['timeouts']} timeouts" if item["timeouts"] else ""
            yield label_at(kind, n), ms(item) + timeouts, f"{item['ls_polls_median']} ls poll(s)", ""


def screen_rows(r: Results) -> Iterator[Row]:
    screen = r["screen_latency"]
    yield SCREEN_LABEL, ms(screen), f"idle_after {screen['idle_after_s']:.1f} s", ""
    relapses = screen["relapses"]
    yield RELAPSE_LABEL, "yes" if not relapses else f"no: {len(relapses)} ls runs said otherwise", "", ""


def monitor_rows(r: Results) -> Iterator[Row]:
    for n, item in r["monitor_quiet"].items():
        yield label_at("quiet", n), *cpu(item), ""
    for busy in r["monitor_busy"].values():
        yield busy_label(busy), *cpu(busy), ""
        yield "  monitor RSS start -> end (max)", rss_text(busy), "", ""
    if "monitor_memory" in r:
        memory = r["monitor_memory"]
        growth = f"growth {memory['growth_kib']} KiB"
        yield memory_label(memory), rss_text(memory), f"{memory['events']} hook events + edits", growth


def rss_text(item: MonitorFigures | MemoryFigures) -> str:
    mib = [item["rss_start_kib"] / 1024, item["rss_end_kib"] / 1024, item["rss_max_kib"] / 1024]
    return f"{mib[0]:.1f} -> {mib[1]:.1f} MiB (max {mib[2]:.1f})"


def p95(s: Spread) -> str:
    return f"p95 {s['p95_ms']:.1f} ms of {s['n']}"


def family_rows(r: Results) -> Iterator[Row]:
    if "family" in r:
        family = r["family"]
        yield FAMILY_ENTRY_LABEL, ms(family["entry"]), p95(family["entry"]), ""
        yield FAMILY_NOTICE_LABEL, ms(family["notice"]), p95(family["notice"]), ""


def group_rows(r: Results) -> Iterator[Row]:
    if "group" in r:
        group = r["group"]
        new_label, compare_label = group_labels(group["size"])
        yield new_label, ms(group["new"]), "", ""
        yield compare_label, ms(group["compare"]), "", ""


TABLE_SECTIONS: tuple[Callable[[Results], Iterator[Row]], ...] = (
    ls_rows,
    churn_rows,
    growth_rows,
    new_rows,
    tab_rows,
    status_rows,
    hook_rows,
    latency_rows,
    screen_rows,
    monitor_rows,
    family_rows,
    group_rows,
)


def verdict(found: list[Check]) -> tuple[str, str]:
    """The target and mark columns of a row: the targets its checks name, `MISSED` if any of them missed.

    A row judged by several targets shows each one's verdict, so a met ratio is not hidden behind a missed
    absolute limit on the same figure.
    """
    if not found:
        return "", ""
    mark = "ok" if all(c.met for c in found) else "MISSED"
    if len(found) == 1:
        return found[0].target.text(), mark
    return "; ".join(f"{c.target.text()} {'ok' if c.met else 'MISSED'}" for c in found), mark


def table(results: Results) -> str:
    by_row: dict[str, list[Check]] = {}
    for check in checks(results):
        by_row.setdefault(check.figure, []).append(check)
    rows = [(*row, *verdict(by_row.get(row[0], []))) for section in TABLE_SECTIONS for row in section(results)]
    header = ("figure", "mux: median [min-p90]", "floor / reference", "ratio", "target", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(6)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    machine = results["machine"]
    intro = (
        f"mux benchmark, {results['date']}: {machine['uname_m']}, {machine['cores']} cores, Python "
        f"{machine['python']}, {machine['tmux']}, {machine['git']}, typer {machine['typer']}\n"
        f"repo: {results['repo']['files']} files in {results['repo']['dirs']} dirs; "
        f"{results['options']['repeat']} timed runs per figure after {results['options']['warmup']} warm-up(s); "
        f"load average {machine['loadavg_start'][0]:.2f} -> {machine['loadavg_end'][0]:.2f}"
    )
    return intro + "\n\n" + "\n".join(lines)


# --- the generated README blocks -----------------------------------------------------------------------------

GENERATOR = "python bench/run.py --write-readme bench/results.json"
BLOCK = "<!-- bench:{name}:begin (written by `{generator}`; edit bench/report.py) -->\n{body}<!-- bench:{name}:end -->"


def medians(items: Sequence[Summary], scale: float = 1.0, digits: int = 0) -> str:
    return " / ".join(f"{item['median_ms'] / scale:.{digits}f}" for item in items)


def per_task(values: list[float]) -> str:
    low, high = round(min(values)), round(max(values))
    return f"{low}" if low == high else f"{low} to {high}"


def judged(found: list[Check]) -> str:
    """A README row's target cell: each target with the N it applies to, and whether the run met them all."""
    if not found:
        return ""
    texts = dict.fromkeys(
        c.target.text() + (f" at N = {c.target.tasks}" if c.target.tasks is not None else "") for c in found
    )
    return f"{', '.join(texts)}: {'met' if all(c.met for c in found) else '**missed**'}"


# A README row's target cell, from the printed table's labels of the figures the row sums up.
Judge = Callable[[Iterable[str]], str]


def ls_md(r: Results, judge: Judge) -> Iterator[Row]:
    ls, counts = r["ls"], list(r["ls"])
    ns = " / ".join(counts)
    floors = f"{medians([ls[n]['floor'] for n in counts])} ms: " + " / ".join(f"{ls[n]['ratio']:.2f}x" for n in counts)
    yield (
        f"`mux ls --json`, N = {ns}",
        f"{medians([ls[n]['mux'] for n in counts])} ms",
        floors,
        judge(label_at("ls", n) for n in counts),
    )
    edited = [ls[n]["all_changed"] for n in counts]
    yield (
        f"the same right after every agent edited a file, N = {ns}",
        f"{medians([e['mux'] for e in edited])} ms",
        f"{medians([e['floor'] for e in edited])} ms: " + " / ".join(f"{e['ratio']:.2f}x" for e in edited),
        "",
    )


def python_json_md(r: Results, judge: Judge) -> Iterator[Row]:
    ls = {n: item for n, item in r["ls"].items() if "python_json" in item and "ratio_python_json" in item}
    if not ls:
        return
    yield (
        f"`mux ls --json` against `python -c 'import json'` reading the view, N = {' / '.join(ls)}",
        " / ".join(f"{item['ratio_python_json']:.2f}x" for item in ls.values()),
        f"{medians([item['python_json'] for item in ls.values()])} ms",
        judge(label_at("python_json", n) for n in ls),
    )


def status_md(r: Results, judge: Judge) -> Iterator[Row]:
    status = r.get("status_line", {})
    if not status:
        return
    ns = " / ".join(status)
    yield (
        f"`mux status-line`, N = {ns}",
        f"{medians([item['mux'] for item in status.values()])} ms",
        "CPU "
        + " / ".join(f"{item['cpu_pct']:.2f}" for item in status.values())
        + " % of a core at `status-interval 5`",
        judge([*(label_at("status", n) for n in status), *(label_at("status_cpu", n) for n in status)]),
    )


def edit_md(r: Results, judge: Judge) -> Iterator[Row]:
    edits = r.get("edit_latency", {})
    if not edits:
        return
    yield (
        f"a file edit counted in `mux ls --json`, N = {' / '.join(edits)}",
        f"{medians(list(edits.values()), 1000, 2)} s",
        " / ".join(str(item["ls_polls_median"]) for item in edits.values()) + " `ls` run(s)",
        judge(label_at("edit", n) for n in edits),
    )


def growth_md(r: Results, judge: Judge) -> Iterator[Row]:
    grow = r["ls_growth"]
    for series, floor_series, label in (GROWTH_ROWS[0], GROWTH_ROWS[2]):
        mux_g, floor_g = grow.get(series), grow.get(floor_series)
        if mux_g and floor_g and mux_g["exponent"] is not None:
            yield (
                f"growth of `ls` with N (t ~ N^k), {label}",
                f"k = {mux_g['exponent']:.2f} ({per_task(mux_g['ms_per_extra_task'])} ms a task)",
                f"k = {floor_g['exponent']:.2f} ({per_task(floor_g['ms_per_extra_task'])} ms a task)",
                judge([growth_label(label)]),
            )


def new_md(r: Results, judge: Judge) -> Iterator[Row]:
    new = r["new"]
    hand = medians([new["hand"]])
    yield "`mux new`", f"{medians([new['mux']])} ms", f"{hand} ms by hand: {new['ratio']:.2f}x", judge(["mux new"])
    yield (
        "`mux new` until the files are checked out",
        f"{medians([new['mux_ready']])} ms",
        f"the same {hand} ms: {new['ready_ratio']:.2f}x",
        "",
    )


def tab_md(r: Results, judge: Judge) -> Iterator[Row]:
    completion = r["completion"]
    yield (
        f"TAB completion of a task name (bash), N = {' / '.join(completion)}",
        f"{medians([tab['bash'] for tab in completion.values()])} ms",
        "",
        judge([*(label_at("tab", n) for n in completion), *(label_at("tasks", n) for n in completion)]),
    )


def hook_md(r: Results, judge: Judge) -> Iterator[Row]:
    hook, latency = r["hook"], r["hook_latency"]
    yield (
        "agent hook command (`mux _hook`)",
        f"{medians([hook['hook']])} ms",
        f"{medians([hook['python_floor']])} ms (`python -P -c pass`)",
        judge([HOOK_LABEL]),
    )
    yield (
        f"hook event visible in `mux ls --json`, N = {' / '.join(latency)}",
        f"{medians(list(latency.values()), 1000, 2)} s",
        " / ".join(str(item["ls_polls_median"]) for item in latency.values()) + " `ls` run(s)",
        judge(label_at("latency", n) for n in latency),
    )


def screen_md(r: Results, judge: Judge) -> Iterator[Row]:
    screen = r["screen_latency"]
    yield (
        f"last output -> `ls` says idle (screen only, `idle_after` {screen['idle_after_s']:g} s)",
        f"{medians([screen], 1000, 2)} s",
        "",
        judge([SCREEN_LABEL, RELAPSE_LABEL]),
    )


def monitor_md(r: Results, judge: Judge) -> Iterator[Row]:
    quiet, busy = r["monitor_quiet"], r["monitor_busy"]
    seconds = next(iter(busy.values()))["seconds"]
    yield (
        f"monitor CPU with {' / '.join(busy)} agents all printing for {seconds:.0f} s",
        " / ".join(f"{item['cpu_pct_with_children']:.1f}" for item in busy.values()) + " % of a core",
        "tmux server " + " / ".join(f"{item['tmux_server_cpu_pct']:.1f}" for item in busy.values()) + " %",
        judge(busy_label(item) for item in busy.values()),
    )
    yield (
        f"monitor CPU with {' / '.join(quiet)} quiet agents",
        " / ".join(f"{item['cpu_pct_with_children']:.1f}" for item in quiet.values()) + " %",
        "tmux server " + " / ".join(f"{item['tmux_server_cpu_pct']:.1f}" for item in quiet.values()) + " %",
        judge(label_at("quiet", n) for n in quiet),
    )
    if "monitor_memory" in r:
        memory = r["monitor_memory"]
        yield (
            f"monitor memory over {memory['seconds'] / 60:.0f} min at N = {memory['tasks']} "
            f"(a hook event and an edit every {memory['seconds'] / max(1, memory['events']):.0f} s)",
            rss_text(memory),
            f"growth {memory['growth_kib']} KiB",
            judge([memory_label(memory)]),
        )


def family_md(r: Results, judge: Judge) -> Iterator[Row]:
    if "family" not in r:
        return
    for label, item in ((FAMILY_ENTRY_LABEL, r["family"]["entry"]), (FAMILY_NOTICE_LABEL, r["family"]["notice"])):
        yield (
            label,
            f"{medians([item], 1000, 2)} s (p95 {item['p95_ms'] / 1000:.2f} s, {item['n']} signals)",
            "",
            judge([label]),
        )


def group_md(r: Results, judge: Judge) -> Iterator[Row]:
    if "group" not in r:
        return
    group = r["group"]
    for label, item in zip(group_labels(group["size"]), (group["new"], group["compare"]), strict=True):
        yield f"`{label}`", f"{medians([item], 1000, 2)} s", "", judge([label])


README_SECTIONS: tuple[Callable[[Results, Judge], Iterator[Row]], ...] = (
    ls_md,
    python_json_md,
    growth_md,
    new_md,
    tab_md,
    status_md,
    hook_md,
    edit_md,
    screen_md,
    monitor_md,
    family_md,
    group_md,
)


def heading(r: Results) -> str:
    """The line saying where the figures come from: date, command, machine, load."""
    machine = r["machine"]
    text = (
        f"Figures of {r['date'][:10]} (`{r['command']}`), on a {machine['cores']}-core {machine['uname_m']} "
        f"{str(machine['uname']).split()[0]} machine with Python {machine['python']}, {machine['tmux']}, "
        f"{str(machine['git']).replace('git version', 'git')} and typer {machine['typer']}, a generated repo of "
        f"{r['repo']['files']:,} files (load average {machine['loadavg_start'][0]:.2f} at the start, "
        f"{machine['loadavg_end'][0]:.2f} at the end); medians, with the raw work underneath measured in the same run:"
    )
    # Wrapped like the README's prose around it (a line of 120 at most).
    return textwrap.fill(text, 120, break_long_words=False, break_on_hyphens=False)


def figures_markdown(results: Results) -> str:
    """The README's table of figures (and the line saying where they come from), made from a run's JSON."""
    if not results.get("complete"):
        raise ValueError('the run did not complete ("complete" is not true): no README figures from it')
    by_figure: dict[str, list[Check]] = {}
    for check in checks(results):
        by_figure.setdefault(check.figure, []).append(check)

    def judge(labels: Iterable[str]) -> str:
        return judged([c for label in labels for c in by_figure.get(label, [])])

    lines = ["| figure | mux | underneath | target |", "| --- | --- | --- | --- |"]
    for section in README_SECTIONS:
        for row in section(results, judge):
            lines.append("|" + "|".join(f" {cell} " if cell else " " for cell in row) + "|")
    return heading(results) + "\n\n" + "\n".join(lines) + "\n"


def targets_markdown() -> str:
    """bench/README.md's list of targets, made from TARGETS."""
    lines = ["| figure | target |", "|---|---|"]
    for t in TARGETS:
        lines.append(f"| {t.label} | {t.text()} |")
    return "\n".join(lines) + "\n"


def with_block(text: str, name: str, body: str, generator: str = GENERATOR) -> str:
    """`text` with its generated block `name` holding `body`; ValueError when the text has no such block."""
    pattern = re.compile(rf"<!-- bench:{name}:begin[^\n]*-->\n.*?<!-- bench:{name}:end -->", re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- bench:{name}:begin --> ... <!-- bench:{name}:end --> block")
    block = BLOCK.format(name=name, generator=generator, body=body)
    return pattern.sub(lambda _: block, text, count=1)


def readme_texts(results: Results) -> dict[Path, str]:
    """What README.md and bench/README.md should hold, their generated blocks made from `results` and TARGETS."""
    return {
        README: with_block(README.read_text(encoding="utf-8"), "figures", figures_markdown(results)),
        BENCH_README: with_block(BENCH_README.read_text(encoding="utf-8"), "targets", targets_markdown()),
    }
