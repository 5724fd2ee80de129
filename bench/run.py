#!/usr/bin/env python3
"""Benchmark mux against the raw tmux and git work underneath it (issues 3 and 5).

    python bench/run.py                      # N = 10, 25, 50 tasks; 11 timed runs of each figure
    python bench/run.py --quick              # a shorter run (fewer tasks, repeats and seconds)
    python bench/run.py --tasks 10,50 --repeat 21 --json bench.json
    python bench/run.py --write-readme bench.json   # the READMEs' generated figures and targets, from that run

Everything runs in a sandbox: a private tmux server (`-L mux-bench-<random>`, `-f /dev/null`), a temp HOME and
XDG dirs, and a generated repository of a few thousand files. The server and the temp dir are removed at the
end, on failure and on Ctrl-C too. See bench/README.md for what each figure means and the targets.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report
from figures import (
    BusyFigures,
    Churn,
    CompletionFigures,
    FamilyFigures,
    GroupFigures,
    HookFigures,
    LatencyFigures,
    LsFigures,
    MemoryFigures,
    MonitorFigures,
    NewFigures,
    Results,
    ScreenFigures,
    StatusLineFigures,
)
from harness import (
    CHECKOUT,
    BenchError,
    CpuSample,
    Sandbox,
    Terminated,
    install_signal_handlers,
    interleaved,
    ratio,
    read_cpu,
    spread,
    summary,
    timed_run,
)

# tmux's `status-interval` as the README sets it: how often tmux runs `mux status-line` per client.
STATUS_INTERVAL_S = 5.0
# How often the memory figure's window gives one task a hook event and an edit.
MEMORY_EVENT_EVERY_S = 5.0
# The group `mux new -n` starts in the best-of-N figures (issue 15's targets are for ten).
GROUP_SIZE = 10


@dataclass(frozen=True)
class Options:
    tasks: list[int]
    repeat: int
    warmup: int
    monitor_seconds: float
    memory_seconds: float
    quiet_seconds: float
    screen_repeat: int
    family_repeat: int
    churn_repeat: int
    files: int
    json_path: Path | None
    keep: bool
    quick: bool
    render_from: Path | None  # --render or --write-readme: make README text from this JSON instead of running
    write_readme: bool
    command: str  # how this run was started, for the README's line saying where its figures come from


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter run: N = 5,10, 3 repeats, 10 s of monitor")
    parser.add_argument("--tasks", help="comma-separated task counts (default 10,25,50; quick 5,10)")
    parser.add_argument("--repeat", type=int, help="timed runs per figure (default 11; quick 3)")
    parser.add_argument("--warmup", type=int, help="untimed runs before each figure (default 2; quick 1)")
    parser.add_argument("--monitor-seconds", type=float, help="busy agents' printing time (default 30; quick 10)")
    parser.add_argument(
        "--memory-seconds", type=float, help="the monitor's memory watched at the largest N (default 0: not measured)"
    )
    parser.add_argument("--quiet-seconds", type=float, help="monitor CPU window with quiet agents (default 10)")
    parser.add_argument("--screen-repeat", type=int, help="screen-only idle transitions timed (default 3; quick 1)")
    parser.add_argument("--family-repeat", type=int, help="sub-task signals timed (default 20; quick 5)")
    parser.add_argument("--churn-repeat", type=int, help="timed ls runs after edits (default min(repeat, 5))")
    parser.add_argument("--files", type=int, help="tracked files in the generated repo (default 3000)")
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the sandbox dir (the tmux server is still killed)")
    parser.add_argument("--render", type=Path, metavar="JSON", help="print the README's figures made from a run's JSON")
    parser.add_argument(
        "--write-readme", type=Path, metavar="JSON", help="rewrite README.md's and bench/README.md's generated blocks"
    )
    args = parser.parse_args(argv)
    if args.render and args.write_readme:
        parser.error("--render and --write-readme: one or the other")
    quick = bool(args.quick)
    tasks_text = args.tasks or ("5,10" if quick else "10,25,50")
    try:
        tasks = sorted({int(part) for part in tasks_text.split(",") if part.strip()})
    except ValueError:
        parser.error(f"--tasks: not a list of numbers: {tasks_text!r}")
    if not tasks or tasks[0] < 2:
        parser.error("--tasks: every count must be at least 2 (one task takes hook events, one goes quiet)")
    repeat = args.repeat if args.repeat is not None else (3 if quick else 11)
    monitor_seconds = args.monitor_seconds if args.monitor_seconds is not None else (10.0 if quick else 30.0)
    quiet_default = min(10.0, monitor_seconds) if not quick else min(3.0, monitor_seconds)
    options = Options(
        tasks=tasks,
        repeat=max(1, repeat),
        warmup=max(0, args.warmup if args.warmup is not None else (1 if quick else 2)),
        monitor_seconds=max(1.0, monitor_seconds),
        memory_seconds=max(0.0, args.memory_seconds or 0.0),
        quiet_seconds=max(1.0, args.quiet_seconds if args.quiet_seconds is not None else quiet_default),
        screen_repeat=max(1, args.screen_repeat if args.screen_repeat is not None else (1 if quick else 3)),
        family_repeat=max(1, args.family_repeat if args.family_repeat is not None else (5 if quick else 20)),
        churn_repeat=max(1, args.churn_repeat if args.churn_repeat is not None else min(repeat, 5)),
        files=max(50, args.files if args.files is not None else 3000),
        json_path=args.json_path,
        keep=bool(args.keep),
        quick=quick,
        render_from=args.write_readme or args.render,
        write_readme=args.write_readme is not None,
        command=" ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
    )
    return options


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def version_of(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "not found"
    return out.splitlines()[0] if out else "unknown"


def machine_info() -> dict[str, Any]:
    import importlib.metadata

    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "uname_m": platform.machine(),
        "uname": " ".join(platform.uname()),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "tmux": version_of(["tmux", "-V"]),
        "git": version_of(["git", "--version"]),
        "typer": dist("typer"),
        "libtmux": dist("libtmux"),
        "gitpython": dist("GitPython"),
        "watchdog": dist("watchdog"),
        "muxagent_checkout": str(CHECKOUT),
        # .pth files run code at every interpreter start (they are part of the Python startup floor).
        "site_pth": sorted(p.name for d in site_dirs() for p in Path(d).glob("*.pth")),
        "loadavg_start": list(os.getloadavg()),
    }


def site_dirs() -> list[str]:
    import site

    return [d for d in site.getsitepackages() if Path(d).is_dir()]


def console_script() -> Path | None:
    """The `mux` console script installed beside this interpreter, if any."""
    path = Path(sys.executable).parent / "mux"
    return path if path.is_file() and os.access(path, os.X_OK) else None


# --- the run ------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, box: Sandbox, options: Options) -> None:
        self.box = box
        self.opt = options
        self.console = console_script()
        self.results: dict[str, Any] = {}
        self.names: list[str] = []
        self.window_of: dict[str, str] = {}
        self.setup_new: list[float] = []
        self.tracked: list[str] = []
        self.edits = 0

    # -- helpers ---------------------------------------------------------------------------------------------

    def ls_rows(self) -> dict[str, dict[str, Any]]:
        _, rows = self.box.ls()
        return {row["name"]: row for row in rows}

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(interval)

    def grow_to(self, count: int) -> None:
        while len(self.names) < count:
            name = f"t{len(self.names):03d}"
            elapsed, _ = self.box.mux("new", name, "-a", self.box.agent_command)
            self.setup_new.append(elapsed)
            self.names.append(name)
            self.wait_for("its files", checked_out(self.worktree(name)), timeout=60, interval=0.01)
            # Work in progress, as an agent leaves it: a modified tracked file of its own and a new file.
            self.edit(name)
            (self.worktree(name) / f"notes_{name}.txt").write_text("todo\n")
        rows = self.ls_rows()
        missing = [n for n in self.names if n not in rows]
        if missing:
            raise BenchError(f"mux ls does not list {missing}")
        self.window_of = {name: str(rows[name]["window"]) for name in self.names}
        self.wait_for(
            "every task to draw its prompt",
            lambda: all(row["state"] not in ("starting", "unknown") for row in self.ls_rows().values()),
            timeout=60,
        )

    def worktree(self, name: str) -> Path:
        return self.box.root / "repo.worktrees" / name

    def edit(self, name: str) -> None:
        """Append a new line to the task's own tracked file: new content, so a new snapshot for the radar."""
        if not self.tracked:
            self.tracked = sorted(p for p in self.box.git(self.box.repo, "ls-files").splitlines() if p.endswith(".py"))
        index = int(name.lstrip("t")) if name.lstrip("t").isdigit() else len(name)
        path = self.worktree(name) / self.tracked[(index * 97) % len(self.tracked)]
        self.edits += 1
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"# edit {self.edits} by {name}\n")

    def send_line(self, name: str, text: str) -> None:
        window = self.window_of[name]
        self.box.tmux("send-keys", "-t", window, "-l", text)
        self.box.tmux("send-keys", "-t", window, "Enter")

    # -- ls against its floor --------------------------------------------------------------------------------

    def measure_ls(self, count: int) -> LsFigures:
        """`mux ls --json` against its floor, steady (nothing changed since the last ls), then right after one
        task's agent edited a file, then right after every agent did (each timed run preceded by fresh edits)."""
        box = self.box
        worktrees = [self.worktree(name) for name in self.names]
        for path in worktrees:
            if not path.is_dir():
                raise BenchError(f"worktree {path} is missing")
        panes = [
            "tmux",
            "-L",
            box.socket,
            "list-panes",
            "-a",
            "-F",
            "#{pane_id} #{window_id} #{window_activity} #{pane_dead} #{pane_current_command}",
        ]

        def floor() -> float:
            total, _ = timed_run(panes, box.repo, box.env)
            for path in worktrees:
                elapsed, _ = timed_run(["git", "--no-optional-locks", "status", "--porcelain"], path, box.env)
                total += elapsed
            return total

        def mux_ls(console: Path | None = None) -> float:
            elapsed, rows = box.ls(console=console)
            if len(rows) != count:
                raise BenchError(f"mux ls --json listed {len(rows)} tasks, expected {count}")
            return elapsed

        def after(edit: Callable[[], None], timed: Callable[[], float]) -> Callable[[], float]:
            def go() -> float:
                edit()  # untimed
                return timed()

            return go

        view_file = box.state_dir / "view.json"
        python_json = [sys.executable, "-c", "import json, sys; open(sys.argv[1], 'rb').read()", str(view_file)]

        def python_floor() -> float:
            elapsed, _ = timed_run(python_json, box.repo, box.env)
            return elapsed

        subjects: dict[str, Callable[[], float]] = {"mux": mux_ls, "floor": floor, "python_json": python_floor}
        if self.console is not None:
            console = self.console
            subjects["mux_console"] = lambda: mux_ls(console)
        steady = {
            name: summary(values) for name, values in interleaved(subjects, self.opt.repeat, self.opt.warmup).items()
        }

        turn = {"next": 0}

        def edit_one() -> None:
            self.edit(self.names[turn["next"] % len(self.names)])
            turn["next"] += 1

        def edit_all() -> None:
            for name in self.names:
                self.edit(name)

        churns: dict[str, Churn] = {}
        for key, edit in (("one_changed", edit_one), ("all_changed", edit_all)):
            churn = interleaved(
                {"mux": after(edit, mux_ls), "floor": after(edit, floor)},
                self.opt.churn_repeat,
                min(1, self.opt.warmup),
            )
            mux_s, floor_s = summary(churn["mux"]), summary(churn["floor"])
            churns[key] = {"mux": mux_s, "floor": floor_s, "ratio": ratio(mux_s, floor_s)}
        result: LsFigures = {
            "mux": steady["mux"],
            "floor": steady["floor"],
            "ratio": ratio(steady["mux"], steady["floor"]),
            "ratio_console": ratio(steady["mux_console"], steady["floor"]) if "mux_console" in steady else None,
            "python_json": steady["python_json"],
            "ratio_python_json": ratio(steady["mux"], steady["python_json"]),
            "one_changed": churns["one_changed"],
            "all_changed": churns["all_changed"],
        }
        if "mux_console" in steady:
            result["mux_console"] = steady["mux_console"]
        return result

    # -- completion ------------------------------------------------------------------------------------------

    def measure_completion(self, count: int) -> CompletionFigures:
        box = self.box

        def tasks_via(argv: list[str]) -> Callable[[], float]:
            def go() -> float:
                elapsed, proc = timed_run(argv, box.repo, box.env)
                if len(proc.stdout.split()) != count:
                    raise BenchError(f"{' '.join(argv)} printed {proc.stdout!r}, expected {count} names")
                return elapsed

            return go

        subjects = {"tasks": tasks_via(box.mux_argv("_tasks"))}
        if self.console is not None:
            subjects["tasks_console"] = tasks_via([str(self.console), "_tasks"])
        samples = {
            name: summary(values) for name, values in interleaved(subjects, self.opt.repeat, self.opt.warmup).items()
        }
        # What a user whose PATH finds another `mux` waits for, say a pyenv shim (`pyenv exec` puts the version's
        # bin dir first on this process's PATH, so the shim is looked for in $PYENV_ROOT/shims too). Informative.
        on_path = shutil.which("mux", path=box.env.get("PATH"))
        shim = Path(os.environ.get("PYENV_ROOT", "/nonexistent"), "shims", "mux")
        if shim.is_file() and os.access(shim, os.X_OK):
            on_path = str(shim)
        tasks_path, path_error = None, None
        same = self.console is not None and on_path is not None and Path(on_path).resolve() == self.console.resolve()
        if on_path and not same:
            try:
                tasks_path = summary(interleaved({"p": tasks_via([on_path, "_tasks"])}, 3, 1)["p"])
            except BenchError as exc:
                path_error = str(exc).splitlines()[0]
        prog = self.console or box.mux_wrapper
        bash_samples, candidates = self.bash_completion(prog)
        if candidates != count:
            raise BenchError(f"bash completion of `mux attach <TAB>` offered {candidates} names, expected {count}")
        result: CompletionFigures = {
            "tasks": samples["tasks"],
            "tasks_console": samples.get("tasks_console"),
            "path_mux": on_path,
            "tasks_path": tasks_path,
            "bash": summary(bash_samples),
            "bash_prog": str(prog),
            "candidates": candidates,
        }
        if path_error is not None:
            result["tasks_path_error"] = path_error
        return result

    def bash_completion(self, prog: Path) -> tuple[list[float], int]:
        """`mux attach <TAB>` in a bash that sourced completions/mux.bash: the time of the completion function,
        measured inside that shell (what a user waits for after pressing TAB)."""
        script = r"""
source "$1"
prog=$2; reps=$3; warm=$4
for (( k = 0; k < warm + reps; k++ )); do
    COMP_WORDS=("$prog" attach ""); COMP_CWORD=2; COMP_LINE="$prog attach "; COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    t0=$EPOCHREALTIME; _mux; t1=$EPOCHREALTIME
    (( k >= warm )) && echo "$t0 $t1 ${#COMPREPLY[@]}"
done
"""
        completions = CHECKOUT / "completions" / "mux.bash"
        argv = [
            "bash",
            "--norc",
            "--noprofile",
            "-c",
            script,
            "bench",
            str(completions),
            str(prog),
            str(self.opt.repeat),
            str(self.opt.warmup),
        ]
        _, proc = timed_run(argv, self.box.repo, self.box.env)
        samples, candidates = [], -1
        for line in proc.stdout.splitlines():
            t0, t1, n = line.split()
            samples.append(float(t1) - float(t0))
            candidates = int(n)
        if len(samples) != self.opt.repeat:
            raise BenchError(f"bash completion loop printed {proc.stdout!r} / {proc.stderr!r}")
        return samples, candidates

    # -- the hook command ------------------------------------------------------------------------------------

    def hook_env(self, name: str) -> dict[str, str]:
        from muxagent.status import events

        # As the agent's own hooks run: with its launch id, or the event would not count (status/events.py).
        launch = events.current_launch(events.events_path(self.box.state_dir, name))
        return {**self.box.env, "MUX_TASK": name, "MUX_STATE_DIR": str(self.box.state_dir), events.LAUNCH_ENV: launch}

    def run_hook(self, name: str, event: str) -> float:
        payload = json.dumps({"session_id": "bench", "cwd": str(self.worktree(name)), "hook_event_name": event})
        argv = [sys.executable, "-P", "-m", "muxagent", "_hook", "claude"]
        elapsed, _ = timed_run(argv, self.worktree(name), self.hook_env(name), stdin=payload)
        return elapsed

    def measure_hook(self) -> HookFigures:
        name = self.names[0]
        cwd, env = self.worktree(name), self.hook_env(name)
        payload = json.dumps({"session_id": "bench", "cwd": str(cwd), "hook_event_name": "Stop"})

        def run(argv: list[str], stdin: str | None = None) -> Callable[[], float]:
            def go() -> float:
                elapsed, _ = timed_run(argv, cwd, env, stdin=stdin)
                return elapsed

            return go

        # For comparison only: the same hook without `site` (-S), which is what every interpreter start pays for
        # .pth files in site-packages; the package is then found through an explicit path.
        package_parent = str(CHECKOUT)
        nosite = (
            f"import sys; sys.path.insert(0, {package_parent!r}); from muxagent.status.hooks import main; "
            "sys.exit(main(sys.argv[1:]))"
        )

        events_file = self.box.state_dir / "events" / f"{name}.jsonl"
        before = events_file.stat().st_size if events_file.exists() else 0
        subjects = {
            "hook": lambda: self.run_hook(name, "Stop"),
            "python_floor": run([sys.executable, "-P", "-c", "pass"]),
            "python_floor_nosite": run([sys.executable, "-P", "-S", "-c", "pass"]),
            "hook_nosite": run([sys.executable, "-P", "-S", "-c", nosite, "claude"], payload),
        }
        samples = interleaved(subjects, self.opt.repeat * 3, self.opt.warmup)
        if not events_file.exists() or events_file.stat().st_size <= before:
            raise BenchError(f"the hook command appended nothing to {events_file}")
        hook, floor = summary(samples["hook"]), summary(samples["python_floor"])
        return {
            "hook": hook,
            "python_floor": floor,
            "python_floor_nosite": summary(samples["python_floor_nosite"]),
            "hook_nosite": summary(samples["hook_nosite"]),
            "ratio": ratio(hook, floor),
        }

    # -- transition latency ----------------------------------------------------------------------------------

    def hook_latency(self) -> LatencyFigures:
        """Run the real hook command, then poll `mux ls --json` until it shows the state the event means."""
        name = self.names[0]
        state = self.ls_rows()[name]["state"]
        timing = Latencies(self.opt.warmup)
        for _ in range(self.opt.warmup + self.opt.repeat):
            event, target = ("Stop", "idle") if state == "waiting" else ("PermissionRequest", "waiting")
            time.sleep(random.uniform(0.0, 0.3))
            start = time.perf_counter()
            self.run_hook(name, event)
            row = timing.poll(
                self.box,
                name,
                start,
                report.HOOK_EVENT_TIMEOUT_S,
                functools.partial(shows_event, target, event),
            )
            state = row["state"]
        return timing.figures("hook event")

    def status_line(self) -> StatusLineFigures:
        """`mux status-line` run as tmux runs it, one after another: wall time, and the CPU each run took (the
        child's user + system time, from getrusage of the reaped children)."""
        walls: list[float] = []
        cpus: list[float] = []
        for index in range(self.opt.warmup + self.opt.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            elapsed, _ = self.box.mux("status-line")
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if index >= self.opt.warmup:
                walls.append(elapsed)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        cpu = summary(cpus)
        share = 100.0 * cpu["median_ms"] / 1000.0 / STATUS_INTERVAL_S
        return {"mux": summary(walls), "cpu": cpu, "interval_s": STATUS_INTERVAL_S, "cpu_pct": round(share, 3)}

    def edit_latency(self) -> LatencyFigures:
        """A new file in a quiet task's worktree, then `mux ls --json` polled until that task's count of changed
        files takes it in (the monitor's watcher, then its read of the worktree, then the view). The files go
        afterwards (untimed)."""
        name = self.names[-1]
        worktree = self.worktree(name)
        timing = Latencies(self.opt.warmup)
        made: list[Path] = []
        for index in range(self.opt.warmup + self.opt.repeat):
            before = int(self.ls_rows()[name]["dirty_files"] or 0)
            time.sleep(random.uniform(0.0, 0.3))
            made.append(worktree / f"bench-edit-{index}.txt")
            start = time.perf_counter()
            made[-1].write_text("an agent's edit\n")
            timing.poll(
                self.box,
                name,
                start,
                report.EDIT_TIMEOUT_S,
                functools.partial(counts_more, before),
            )
        for path in made:
            path.unlink(missing_ok=True)
        return timing.figures(f"file edit in {name}'s worktree")

    def screen_latency(self) -> ScreenFigures:
        """A command agent (no hooks) prints for 1 s and goes quiet: time from its last output to `mux ls` idle.

        Then `ls` keeps being polled for idle_after + 2 s: a quiet agent must stay idle (anything that writes to
        its pane, a terminal bell included, refreshes tmux's window activity and would make it look busy)."""
        name = self.names[1]
        marker = self.box.markers / name
        idle_after = generic_idle_after(self.box.agent_command)
        samples: list[float] = []
        reasons: list[str] = []
        relapses: list[str] = []
        for _ in range(self.opt.screen_repeat):
            marker.unlink(missing_ok=True)
            self.send_line(name, "busy 1")
            self.wait_for(f"{name} to be working", lambda: self.ls_rows()[name]["state"] == "working", timeout=10)
            deadline = time.monotonic() + 30 + idle_after
            while True:
                row = self.ls_rows()[name]
                seen = time.time()
                if row["state"] == "idle" and marker.exists():
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"{name} never went idle in mux ls (last: {row['state']}, {row['reason']})")
                time.sleep(0.02)
            samples.append(seen - float(marker.read_text().strip()))
            reasons.append(str(row["reason"]))
            watch_until = time.monotonic() + idle_after + 2
            while time.monotonic() < watch_until:
                row = self.ls_rows()[name]
                if row["state"] != "idle":
                    relapses.append(f"{time.time() - seen:.1f}s after idle: {row['state']} ({row['reason']})")
                time.sleep(0.1)
        return {
            **summary(samples),
            "idle_after_s": idle_after,
            "reasons": reasons,
            "stays_idle": not relapses,
            "relapses": relapses,
        }

    # -- the monitor -----------------------------------------------------------------------------------------

    def cpu_window(self, pids: dict[str, int], seconds: float) -> MonitorFigures:
        first = {key: read_cpu(pid) for key, pid in pids.items()}
        rss: list[int] = [first["monitor"].rss_kib]
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            rss.append(read_cpu(pids["monitor"]).rss_kib)
        last = {key: read_cpu(pid) for key, pid in pids.items()}

        def pct(a: CpuSample, b: CpuSample, with_children: bool) -> float:
            used = b.own_s - a.own_s + ((b.children_s - a.children_s) if with_children else 0.0)
            return round(100.0 * used / (b.at - a.at), 2)

        return {
            "seconds": round(last["monitor"].at - first["monitor"].at, 2),
            "cpu_pct": pct(first["monitor"], last["monitor"], False),
            "cpu_pct_with_children": pct(first["monitor"], last["monitor"], True),
            "tmux_server_cpu_pct": pct(first["tmux"], last["tmux"], False),
            "rss_start_kib": rss[0],
            "rss_end_kib": rss[-1],
            "rss_max_kib": max(rss),
            "rss_samples_kib": rss,
        }

    def monitor_quiet(self) -> MonitorFigures:
        pids = {"monitor": self.box.monitor_pid(), "tmux": self.box.server_pid()}
        return self.cpu_window(pids, self.opt.quiet_seconds)

    def monitor_busy(self, count: int) -> BusyFigures:
        busy = list(self.names)
        pids = {"monitor": self.box.monitor_pid(), "tmux": self.box.server_pid()}
        seconds = self.opt.monitor_seconds
        for name in busy:
            (self.box.markers / name).unlink(missing_ok=True)
        for name in busy:
            self.send_line(name, f"busy {math.ceil(seconds + 1)}")
        time.sleep(0.5)
        result: BusyFigures = {**self.cpu_window(pids, seconds), "agents": len(busy), "tasks": count}
        self.wait_for(
            "the busy agents to finish", lambda: all((self.box.markers / n).exists() for n in busy), timeout=30
        )
        return result

    def monitor_memory(self) -> MemoryFigures:
        """The monitor's RSS, once a second for --memory-seconds at the largest N: the agents quiet, and every
        MEMORY_EVENT_EVERY_S one of them, in turn, takes a hook event and an edit (the view, the events cache, the
        watcher and the worktree reader all move, as in a day's work)."""
        pid = self.box.monitor_pid()
        rss = [read_cpu(pid).rss_kib]
        start = time.monotonic()
        end = start + self.opt.memory_seconds
        turn = 0
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            rss.append(read_cpu(pid).rss_kib)
            if time.monotonic() - start >= turn * MEMORY_EVENT_EVERY_S:
                name = self.names[turn % len(self.names)]
                self.run_hook(name, "Stop" if turn % 2 else "PermissionRequest")
                self.edit(name)
                turn += 1
        fifth = max(1, len(rss) // 5)
        first, last = sorted(rss[:fifth]), sorted(rss[-fifth:])
        return {
            "seconds": round(time.monotonic() - start, 1),
            "tasks": len(self.names),
            "events": turn,
            "rss_start_kib": rss[0],
            "rss_end_kib": rss[-1],
            "rss_max_kib": max(rss),
            "growth_kib": last[len(last) // 2] - first[len(first) // 2],
            "rss_samples_kib": rss,
        }

    # -- best of N (issue 15) -------------------------------------------------------------------------------

    def group(self) -> GroupFigures:
        """`mux new g -n 10` until all ten windows exist (their files are checked out in the windows, as for one
        task), then `mux compare g` of those ten; the group is removed afterwards (untimed)."""
        box = self.box
        size = GROUP_SIZE
        news: list[float] = []
        compares: list[float] = []
        for index in range(self.opt.warmup + max(1, self.opt.repeat // 2)):
            name = f"grp{index:02d}"
            start = time.perf_counter()
            box.mux("new", name, "-n", str(size), "-a", box.agent_command)
            windows = {f"{name}-{n}" for n in range(1, size + 1)}
            self.wait_for(f"the windows of {name}", self.windows_exist(windows), timeout=60, interval=0.01)
            elapsed = time.perf_counter() - start
            for member in sorted(windows):
                self.wait_for(f"{member}'s files", checked_out(self.worktree(member)), timeout=60, interval=0.01)
            compared, _ = box.mux("compare", name)
            if index >= self.opt.warmup:
                news.append(elapsed)
                compares.append(compared)
            for member in sorted(windows):
                box.mux("rm", member, "--force")
        return {"size": size, "new": summary(news), "compare": summary(compares)}

    def windows_exist(self, names: set[str]) -> Callable[[], bool]:
        # The monitor may have marked a name already ("grp00-1 ✓"): its first word is the task's.
        return lambda: names <= set(self.box.tmux("list-windows", "-a", "-F", "#{window_name}").split())

    # -- a sub-task's signal to its parent (issue 12) -------------------------------------------------------

    def family(self) -> FamilyFigures:
        """A sub-task's hooks, waiting (PermissionRequest) then idle (Stop): the time from each to its entry in the
        parent's inbox (polled), and from the Stop to the notice typed into the parent's idle agent (which notes
        when the line arrived). Both tasks are removed afterwards, so the next N is N tasks again."""
        parent, child = "fam-parent", "fam-child"
        self.box.mux("new", parent, "-a", self.box.agent_command, "--no-parent")
        self.box.mux("new", child, "-a", self.box.agent_command, "--parent", parent, "--notify", "idle")
        for name in (parent, child):
            self.wait_for(f"{name}'s files", checked_out(self.worktree(name)), timeout=60, interval=0.01)
        entries_file = self.box.state_dir / "inbox" / f"{parent}.jsonl"
        heard = self.box.markers / f"{parent}.heard"

        def entries() -> int:
            return len(entries_file.read_bytes().splitlines()) if entries_file.exists() else 0

        def heard_at() -> float:
            try:
                return float(heard.read_text().strip())
            except (OSError, ValueError):
                return float("-inf")  # not yet, or being replaced

        def heard_after(moment: float) -> Callable[[], bool]:
            return lambda: heard_at() > moment

        def signal(event: str) -> tuple[float, float]:
            """The hook `event` run for the sub-task at a random phase of the monitor's tick: (its start, seconds
            to the inbox entry)."""
            before = entries()
            time.sleep(random.uniform(0.0, 0.5))
            start = time.time()
            self.run_hook(child, event)
            self.wait_for(f"the inbox entry of {event}", lambda: entries() > before, timeout=10, interval=0.005)
            return start, time.time() - start

        to_entry: list[float] = []
        to_notice: list[float] = []
        for index in range(self.opt.warmup + self.opt.family_repeat):
            # The notice goes only to an idle agent; each one makes the parent print, so it is busy a while.
            self.wait_for(f"{parent} to be idle", lambda: self.ls_rows()[parent]["state"] == "idle", timeout=60)
            heard.unlink(missing_ok=True)
            _, waiting_s = signal("PermissionRequest")  # recorded, not told: the sub-task asked for idle only
            stopped, idle_s = signal("Stop")
            # Only a line that arrived after the Stop: a notice typed again late (one whose typing the monitor could
            # not confirm) must not pass for this round's (it once gave -560 ms).
            self.wait_for("the notice", heard_after(stopped), timeout=10, interval=0.01)
            # `ls` may show the live view up to a second old: until it has seen the parent take the notice, its
            # "idle" would be from before it, and the next round's notice would wait for the parent's next idle.
            self.wait_for(f"{parent} to take the notice", lambda: self.ls_rows()[parent]["state"] != "idle", timeout=10)
            if index >= self.opt.warmup:
                to_entry += [waiting_s, idle_s]
                to_notice.append(heard_at() - stopped)
        self.box.mux("rm", parent, "--recursive")
        return {"entry": spread(to_entry), "notice": spread(to_notice)}

    # -- mux new against git worktree add + tmux new-window ------------------------------------------------

    def measure_new(self) -> NewFigures:
        box = self.box
        session = str(self.ls_rows()[self.names[0]]["session"])
        counter = {"mux": 0, "hand": 0}
        ready: list[float] = []

        def mux_new() -> float:
            counter["mux"] += 1
            name = f"new{counter['mux']:03d}"
            elapsed, _ = box.mux("new", name, "-a", box.agent_command)
            # mux new returns once branch, worktree, record and window exist; the window then checks the files
            # out before the agent starts. git writes the worktree's index last, when the files are all there.
            started = time.perf_counter()
            files_there = checked_out(self.worktree(name))
            while not files_there():
                time.sleep(0.002)
            ready.append(elapsed + time.perf_counter() - started)
            box.mux("rm", name, "--force")  # untimed
            return elapsed

        def hand_new() -> float:
            counter["hand"] += 1
            name = f"hand{counter['hand']:03d}"
            path = box.root / "hand" / name
            add = ["git", "worktree", "add", "-q", "-b", f"hand/{name}", str(path), "main"]
            window = [
                "tmux", "-L", box.socket, "new-window", "-d", "-P", "-F", "#{window_id}", "-t", f"={session}:",
                "-n", name, "-c", str(path), "--", *box.agent_command.split(),
            ]  # fmt: skip
            first, _ = timed_run(add, box.repo, box.env)
            second, proc = timed_run(window, box.repo, box.env)
            # untimed clean-up
            box.tmux("kill-window", "-t", proc.stdout.strip(), check=False)
            box.git(box.repo, "worktree", "remove", "--force", str(path))
            box.git(box.repo, "branch", "-D", f"hand/{name}")
            return first + second

        samples = interleaved({"mux": mux_new, "hand": hand_new}, self.opt.repeat, self.opt.warmup)
        samples["mux_ready"] = ready[self.opt.warmup :]
        mux, hand, mux_ready = summary(samples["mux"]), summary(samples["hand"]), summary(samples["mux_ready"])
        return {
            "mux": mux,
            "hand": hand,
            "mux_ready": mux_ready,
            "ratio": ratio(mux, hand),
            "ready_ratio": ratio(mux_ready, hand),
        }

    # -- the whole run ---------------------------------------------------------------------------------------

    def run(self) -> Results:
        opt = self.opt
        box = self.box
        results = self.results
        results["date"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["command"] = opt.command
        results["machine"] = machine_info()
        results["options"] = {
            "tasks": opt.tasks,
            "repeat": opt.repeat,
            "warmup": opt.warmup,
            "monitor_seconds": opt.monitor_seconds,
            "memory_seconds": opt.memory_seconds,
            "quiet_seconds": opt.quiet_seconds,
            "screen_repeat": opt.screen_repeat,
            "family_repeat": opt.family_repeat,
            "churn_repeat": opt.churn_repeat,
            "files": opt.files,
            "quick": opt.quick,
            "console_script": str(self.console) if self.console else None,
            "mux_argv": [sys.executable, "-m", "muxagent"],
        }
        say(f"sandbox {box.root}, tmux socket {box.socket}")
        box.start_server()
        started = time.perf_counter()
        results["repo"] = box.build_repo(opt.files)
        results["repo"]["build_s"] = round(time.perf_counter() - started, 2)
        say(f"repo: {results['repo']}")
        for count in opt.tasks:
            say(f"starting tasks up to N={count}")
            self.grow_to(count)
            for section in SECTIONS:
                if section.at == "every":
                    say(f"N={count}: {section.what}")
                    results.setdefault(section.key, {})[str(count)] = section.measure(self, count)
                elif count == self.level(section.at) and section.wanted(opt):
                    say(f"N={count}: {section.what}")
                    results[section.key] = section.measure(self, count)
            self.checkpoint()
        results["new"]["setup_new"] = summary(self.setup_new)
        results["ls_growth"] = growth(results["ls"])
        results["machine"]["loadavg_end"] = list(os.getloadavg())
        results["elapsed_s"] = round(time.perf_counter() - started, 1)
        results["complete"] = True
        results["checks"] = []
        # Every section has run (one that failed raised before here), so every key of Results is filled in.
        finished = cast(Results, results)
        finished["checks"] = [check.as_json() for check in report.checks(finished)]
        return finished

    def level(self, at: Literal["first", "monitor", "last"]) -> int:
        """The N a section measured once runs at: the first, the last, or the monitor's (10 agents if N=10 is
        run)."""
        tasks = self.opt.tasks
        if at == "last":
            return tasks[-1]
        return tasks[0] if at == "first" or 10 not in tasks else 10

    def checkpoint(self) -> None:
        """Write what is measured so far (`"complete": false`), so a run cut short still leaves its figures."""
        if self.opt.json_path is not None:
            write_json(self.opt.json_path, {**self.results, "complete": False})


def shows_event(state: str, event: str, row: dict[str, Any]) -> bool:
    """Whether a task's row of `mux ls --json` is in `state` by hook `event`."""
    return row["state"] == state and event in str(row["reason"])


def counts_more(before: int, row: dict[str, Any]) -> bool:
    """Whether a task's row counts more changed files than `before`."""
    return int(row["dirty_files"] or 0) > before


class Latencies:
    """The timed runs of one latency figure: each polls `mux ls --json` from `start` until a task's row shows what
    was done, or `timeout` passes (a timeout is counted, not timed); the first `warmup` runs are not kept."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.runs = 0
        self.samples: list[float] = []
        self.polls: list[int] = []
        self.timeouts = 0

    def poll(
        self, box: Sandbox, name: str, start: float, timeout: float, seen: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """Poll until `seen(row)`; returns the last row."""
        count = 0
        while True:
            _, rows = box.ls()
            count += 1
            row = next(r for r in rows if r["name"] == name)
            if seen(row):
                elapsed = time.perf_counter() - start
                break
            if time.perf_counter() - start > timeout:
                elapsed = math.inf
                break
        self.runs += 1
        if self.runs > self.warmup:
            if math.isinf(elapsed):
                self.timeouts += 1
            else:
                self.samples.append(elapsed)
                self.polls.append(count)
        return row

    def figures(self, what: str) -> LatencyFigures:
        if not self.samples:
            raise BenchError(f"no {what} ever showed in mux ls ({self.timeouts} timeouts)")
        polls = sorted(self.polls)[len(self.polls) // 2]
        return {**summary(self.samples), "timeouts": self.timeouts, "ls_polls_median": polls}


@dataclass(frozen=True)
class Section:
    """One part of the run, at the N it is measured at: every N (its figures keyed by N), once at the first N,
    the last N, or the monitor's N; a section run once may be wanted only by some options."""

    key: str  # where its figures go in the JSON
    what: str  # the progress line
    at: Literal["every", "first", "monitor", "last"]
    measure: Callable[[Bench, int], Mapping[str, object]]
    wanted: Callable[[Options], bool] = lambda _: True


# In the order they run at each N (the order the figures were measured in before, so runs stay comparable).
SECTIONS: tuple[Section, ...] = (
    Section("ls", "mux ls --json against list-panes + a git status a task, steady and after edits", "every",
            Bench.measure_ls),
    Section("completion", "TAB completion", "every", Bench.measure_completion),
    Section("status_line", "mux status-line, as tmux's status-right runs it", "every",
            lambda bench, _: bench.status_line()),
    Section("hook", "the hook command", "first", lambda bench, _: bench.measure_hook()),
    Section("hook_latency", "hook-driven transition latency", "every", lambda bench, _: bench.hook_latency()),
    Section("edit_latency", "a file edit -> its count in mux ls", "every", lambda bench, _: bench.edit_latency()),
    Section("new", "mux new against git worktree add + tmux new-window", "first", lambda bench, _: bench.measure_new()),
    Section("monitor_quiet", "monitor CPU with quiet agents", "every", lambda bench, _: bench.monitor_quiet()),
    Section("screen_latency", "screen-only transition latency", "monitor", lambda bench, _: bench.screen_latency()),
    Section("monitor_busy", "monitor CPU with every agent printing", "every", Bench.monitor_busy),
    Section("family", "a sub-task's signal -> its parent's inbox and agent", "first", lambda bench, _: bench.family()),
    Section("group", "mux new -n 10 and mux compare of its ten", "first", lambda bench, _: bench.group()),
    Section("monitor_memory", "the monitor's memory over --memory-seconds", "last",
            lambda bench, _: bench.monitor_memory(), lambda opt: opt.memory_seconds > 0),
)  # fmt: skip


def checked_out(worktree: Path) -> Callable[[], bool]:
    """Whether the window of a new task has checked its files out: git writes the worktree's index last."""
    index = Path((worktree / ".git").read_text().removeprefix("gitdir:").strip()) / "index"
    return index.exists


def generic_idle_after(agent_command: str) -> float:
    """The idle_after mux applies to a command line without a profile (read from the checkout's mux)."""
    sys.path.insert(0, str(CHECKOUT))
    try:
        from muxagent import config

        return float(config.resolve_agent(agent_command, None).status.idle_after)
    except Exception:  # an older or newer mux layout: the documented default
        return 3.0


GROWTH_SERIES: dict[str, tuple[str, ...]] = {
    "mux": ("mux",),
    "mux_console": ("mux_console",),
    "floor": ("floor",),
    "mux_one_changed": ("one_changed", "mux"),
    "floor_one_changed": ("one_changed", "floor"),
    "mux_all_changed": ("all_changed", "mux"),
    "floor_all_changed": ("all_changed", "floor"),
}


def growth(ls: dict[str, Any]) -> dict[str, Any]:
    """How `mux ls` and its floor grow with N: the exponent k of t ~ N^k between the smallest and largest N, and
    the cost of each extra task between consecutive N."""
    counts = sorted(int(k) for k in ls)
    result: dict[str, Any] = {"counts": counts}
    for series, path in GROWTH_SERIES.items():
        medians = []
        for n in counts:
            node: Any = ls[str(n)]
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if not node:
                break
            medians.append(float(node["median_ms"]))
        if len(medians) != len(counts):
            continue
        per_task = [
            round((medians[i + 1] - medians[i]) / (counts[i + 1] - counts[i]), 2) for i in range(len(counts) - 1)
        ]
        exponent = (
            round(math.log(medians[-1] / medians[0]) / math.log(counts[-1] / counts[0]), 3)
            if len(counts) > 1 and medians[0] > 0
            else None
        )
        result[series] = {"median_ms": medians, "ms_per_extra_task": per_task, "exponent": exponent}
    return result


# --- the report ---------------------------------------------------------------------------------------------


def write_json(path: Path, results: Mapping[str, object]) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    temp.replace(path)


def render(path: Path, write: bool) -> int:
    """Print the README's figures made from the run in `path`, or write them (and the targets) into the READMEs."""
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        if not write:
            print(report.figures_markdown(results), end="")
            return 0
        for readme, text in report.readme_texts(results).items():
            readme.write_text(text, encoding="utf-8")
            say(f"wrote {readme}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"bench: cannot make the README's figures from {path}: {exc!r}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.render_from is not None:
        return render(options.render_from, options.write_readme)
    install_signal_handlers()
    box = Sandbox.create()
    bench = Bench(box, options)
    try:
        results = bench.run()
    except (KeyboardInterrupt, Terminated):
        say("interrupted: cleaning up")
        bench.checkpoint()
        return 130
    except BenchError as exc:
        say(f"failed: {exc}")
        bench.checkpoint()
        return 1
    finally:
        box.close(keep=options.keep)
        if options.keep:
            say(f"kept {box.root}")
    print(report.table(results))
    if options.json_path is not None:
        write_json(options.json_path, results)
        say(f"wrote {options.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
