"""The benchmark's sandbox: a private tmux server, a temp HOME and repo, and timed child processes.

Nothing here touches the user's tmux server, config or repositories: every child process gets a pinned
environment (HOME, XDG dirs, git identity, `MUX_TMUX_SOCKET`, no `TMUX`/`TMUX_PANE`), and the tmux server runs on
its own socket (`-L mux-bench-<random>`, `-f /dev/null`). `Sandbox.close` kills that server and deletes the temp
dir; `run.py` calls it from a `finally`, and SIGTERM/SIGHUP are turned into exceptions so it runs then too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypedDict

CHECKOUT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# A stand-in for a coding agent, in sh so that fifty of them cost next to nothing: it draws a prompt and waits.
# `busy S` prints a line every 0.1 s for S seconds (an agent at work), then draws the prompt again and writes the
# time of its last output to MARKERS/$MUX_TASK (for the screen-only idle latency). A line from mux (`[mux] ...`, a
# notice of a sub-task) writes the time it arrived to MARKERS/$MUX_TASK.heard (for the sub-task latency).
AGENT_SCRIPT = r"""#!/bin/sh
markers=$1
printf 'bench> '
while IFS= read -r line; do
    case $line in
        busy\ *)
            n=$(( ${line#busy } * 10 ))
            i=0
            while [ "$i" -lt "$n" ]; do
                i=$(( i + 1 ))
                echo "working... $i: reading src/pkg/module.py, thinking about the change"
                sleep 0.1
            done
            printf 'done\nbench> '
            date +%s.%N > "$markers/$MUX_TASK.tmp" && mv "$markers/$MUX_TASK.tmp" "$markers/$MUX_TASK"
            ;;
        \[mux\]*)
            date +%s.%N > "$markers/$MUX_TASK.tmp" && mv "$markers/$MUX_TASK.tmp" "$markers/$MUX_TASK.heard"
            printf 'bench> '
            ;;
        *)
            printf 'bench> '
            ;;
    esac
done
exec sleep 1000000
"""


class BenchError(RuntimeError):
    pass


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds like KeyboardInterrupt so the sandbox is cleaned up."""


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(f"signal {signum}")


def install_signal_handlers() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_terminated)


# --- statistics ---------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Summary(TypedDict):
    median_ms: float
    min_ms: float
    p90_ms: float
    max_ms: float
    n: int
    samples_ms: list[float]


class Spread(Summary):
    p95_ms: float


def spread(samples_s: Sequence[float]) -> Spread:
    """The summary with its p95, for the figures whose target is a p95 (noisy at fewer than 20 samples)."""
    return {**summary(samples_s), "p95_ms": round(percentile([s * 1000.0 for s in samples_s], 0.95), 2)}


def summary(samples_s: Sequence[float]) -> Summary:
    """Median, min, p90, max (milliseconds) and the raw samples of a list of durations in seconds."""
    ms = [s * 1000.0 for s in samples_s]
    return {
        "median_ms": round(statistics.median(ms), 2),
        "min_ms": round(min(ms), 2),
        "p90_ms": round(percentile(ms, 0.9), 2),
        "max_ms": round(max(ms), 2),
        "n": len(ms),
        "samples_ms": [round(v, 2) for v in ms],
    }


def ratio(a: Summary, b: Summary) -> float:
    return round(float(a["median_ms"]) / float(b["median_ms"]), 3)


# --- /proc --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    at: float  # time.monotonic()
    own_s: float  # utime + stime
    children_s: float  # cutime + cstime: children the process has waited for (tmux, git)
    rss_kib: int


def read_cpu(pid: int) -> CpuSample:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        text = f.read()
    # Field 2 (comm) may hold spaces and parentheses: split after its closing parenthesis. rest[0] is field 3.
    rest = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(v) for v in rest[11:15])
    rss_pages = int(rest[21])
    return CpuSample(
        time.monotonic(), (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK, rss_pages * PAGE_SIZE // 1024
    )


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
    except OSError:
        return []


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return found


# --- timing -------------------------------------------------------------------------------------------------


def timed_run(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], stdin: str | None = None, check: bool = True
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall time of one child process, from spawn to exit (output captured through pipes, as a shell would)."""
    start = time.perf_counter()
    proc = subprocess.run(list(argv), cwd=cwd, env=dict(env), input=stdin, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise BenchError(
            f"{' '.join(argv)} (in {cwd}) exited {proc.returncode}\nstdout: {proc.stdout[-2000:]}\n"
            f"stderr: {proc.stderr[-2000:]}"
        )
    return elapsed, proc


def interleaved(subjects: Mapping[str, Callable[[], float]], repeat: int, warmup: int) -> dict[str, list[float]]:
    """Run each subject `warmup` times untimed, then `repeat` rounds of all of them, rotating the order each
    round so that no subject always runs right after another (cache and scheduler effects spread evenly)."""
    names = list(subjects)
    for _ in range(warmup):
        for name in names:
            subjects[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_no in range(repeat):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(subjects[name]())
    return samples


# --- the sandbox --------------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    """A temp dir holding HOME, the repo and its worktrees, plus a private tmux server."""

    root: Path
    socket: str
    env: dict[str, str]
    repo: Path = field(init=False)
    agent_script: Path = field(init=False)
    markers: Path = field(init=False)
    mux_wrapper: Path = field(init=False)

    @classmethod
    def create(cls) -> Sandbox:
        root = Path(tempfile.mkdtemp(prefix="mux-bench-"))
        socket = f"mux-bench-{uuid.uuid4().hex[:10]}"
        box = cls(root=root, socket=socket, env=_pinned_env(root, socket))
        box.repo = root / "repo"
        box.markers = root / "markers"
        box.markers.mkdir()
        box.agent_script = root / "agent.sh"
        box.agent_script.write_text(AGENT_SCRIPT)
        # For bash completion when no console script sits beside the interpreter: COMP_WORDS[0] must be a path.
        bin_dir = root / "bin"
        bin_dir.mkdir()
        box.mux_wrapper = bin_dir / "mux"
        box.mux_wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m muxagent "$@"\n')
        box.mux_wrapper.chmod(0o755)
        return box

    # -- tmux ------------------------------------------------------------------------------------------------

    def tmux(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["tmux", "-L", self.socket, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if check and proc.returncode != 0:
            raise BenchError(f"tmux {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def start_server(self) -> None:
        """Start the private server with no config file; a placeholder session keeps it alive."""
        subprocess.run(
            [
                "tmux",
                "-L",
                self.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "bench-keepalive",
                "-x",
                "200",
                "-y",
                "50",
                "--",
                "sleep",
                "1000000",
            ],
            env=self.env,
            cwd=self.root,
            check=True,
            capture_output=True,
            timeout=30,
        )

    def server_pid(self) -> int:
        return int(self.tmux("display-message", "-p", "#{pid}").strip())

    def monitor_pid(self) -> int:
        out = self.tmux("list-panes", "-a", "-F", "#{session_name} #{pane_pid}")
        for line in out.splitlines():
            session, _, pid_text = line.partition(" ")
            if not session.endswith("-monitor"):
                continue
            pid = int(pid_text)
            # The pane may run the monitor directly or through a shell: take the process that is the monitor.
            for candidate in [pid, *children(pid)]:
                if "_monitor" in cmdline(candidate):
                    return candidate
        raise BenchError(f"no monitor process found in the tmux server's panes:\n{out}")

    def close(self, keep: bool = False) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=30, check=False
        )
        tmpdir = os.environ.get("TMUX_TMPDIR", "/tmp")
        Path(tmpdir, f"tmux-{os.getuid()}", self.socket).unlink(missing_ok=True)
        if not keep:
            # Agents and the monitor got SIGHUP with the server; give them a moment before their cwd goes.
            time.sleep(0.2)
            shutil.rmtree(self.root, ignore_errors=True)

    # -- git -------------------------------------------------------------------------------------------------

    def git(self, cwd: Path, *args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise BenchError(f"git {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def build_repo(self, files: int) -> dict[str, int]:
        """A repo of `files` tracked files (Python, Markdown, JSON) in nested dirs over three commits."""
        repo = self.repo
        repo.mkdir()
        self.git(repo, "init", "-q", "-b", "main")
        (repo / ".gitignore").write_text("__pycache__/\n*.log\nnode_modules/\n.env\n")
        (repo / "README.md").write_text("# bench\n\nA repository for the mux benchmark.\n")
        paths = _layout(files)
        for index, rel in enumerate(paths[: files * 9 // 10]):
            _write_file(repo / rel, index, 0)
        self.git(repo, "add", "-A")
        self.git(repo, "commit", "-q", "-m", "initial import")
        for index, rel in enumerate(paths[: files * 9 // 10 : 37]):
            _write_file(repo / rel, index, 1)
        self.git(repo, "commit", "-q", "-am", "refactor: touch a few modules")
        for index, rel in enumerate(paths[files * 9 // 10 :]):
            _write_file(repo / rel, index, 2)
        self.git(repo, "add", "-A")
        self.git(repo, "commit", "-q", "-m", "feature: add more modules")
        tracked = len(self.git(repo, "ls-files").splitlines())
        dirs = len({str(Path(p).parent) for p in self.git(repo, "ls-files").splitlines()})
        return {"files": tracked, "dirs": dirs, "commits": 3}

    # -- mux -------------------------------------------------------------------------------------------------

    def mux_argv(self, *args: str, console: Path | None = None) -> list[str]:
        if console is not None:
            return [str(console), *args]
        return [sys.executable, "-m", "muxagent", *args]

    def mux(self, *args: str, console: Path | None = None, check: bool = True) -> tuple[float, str]:
        elapsed, proc = timed_run(self.mux_argv(*args, console=console), self.repo, self.env, check=check)
        return elapsed, proc.stdout

    def ls(self, console: Path | None = None) -> tuple[float, list[dict[str, Any]]]:
        elapsed, out = self.mux("ls", "--json", console=console)
        rows = json.loads(out)
        assert isinstance(rows, list)
        return elapsed, rows

    @property
    def agent_command(self) -> str:
        return f"sh {self.agent_script} {self.markers}"

    @property
    def state_dir(self) -> Path:
        return self.repo / ".git" / "mux"


def _pinned_env(root: Path, socket: str) -> dict[str, str]:
    home = root / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    drop = {"TMUX", "TMUX_PANE", "NO_COLOR", "PYTHONSTARTUP", "PYTHONWARNINGS"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("MUX_", "GIT_", "PYTHON"))}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_STATE_HOME": str(home / ".local/state"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Bench Author",
            "GIT_AUTHOR_EMAIL": "bench@example.com",
            "GIT_COMMITTER_NAME": "Bench Author",
            "GIT_COMMITTER_EMAIL": "bench@example.com",
            "MUX_TMUX_SOCKET": socket,
            # The mux of this checkout, whatever is installed.
            "PYTHONPATH": str(CHECKOUT),
            "LC_ALL": os.environ.get("LC_ALL") or "C.UTF-8",
        }
    )
    return env


_WORDS = ("parse", "render", "store", "client", "server", "cache", "index", "query", "model", "view", "auth", "util")


def _layout(files: int) -> list[str]:
    """`files` paths nested three levels deep (about 20 files a directory), plus some docs and config."""
    paths: list[str] = []
    index = 0
    while len(paths) < files:
        top = _WORDS[index // 400 % len(_WORDS)]
        mid = _WORDS[index // 20 % len(_WORDS)]
        leaf = f"part{index // 240}"
        kind = index % 10
        name = f"{_WORDS[index % len(_WORDS)]}_{index}"
        if kind == 8:
            paths.append(f"docs/{top}/{mid}/{name}.md")
        elif kind == 9:
            paths.append(f"config/{top}/{leaf}/{name}.json")
        else:
            paths.append(f"src/{top}/{leaf}/{mid}/{name}.py")
        index += 1
    return paths


def _write_file(path: Path, index: int, version: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps({"id": index, "version": version, "items": list(range(index % 50))}) + "\n")
        return
    body = [f"# module {index}, revision {version}\n"]
    for fn in range(8 + index % 12):
        body.append(f"\ndef function_{fn}(value: int) -> int:\n    return value * {fn + version} + {index}\n")
    path.write_text("".join(body))
