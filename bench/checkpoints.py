#!/usr/bin/env python3
"""What a checkpoint costs the monitor (issue 16): a task's worktree of 3,000 files with 20 of them changed each
turn, recorded as a checkpoint (git/checkpoints.py); and the git part of `mux undo` (a checkpoint of now, the index
reset, the files of an earlier turn written back).

    python bench/checkpoints.py [--files 3000] [--changed 20] [--rounds 15]
    python bench/checkpoints.py --agents 10 [--every 10] [--seconds 60] [--files 3000] [--changed 20]

Prints the median and the spread (ms) of each over `--rounds` turns. No tmux, no agent: this is the monitor's and
undo's own git work, which is all a turn's end costs (the agent's index, HEAD and branch are not touched, so none
of it is the agent's time).

With `--agents N`: the monitor's CPU (with its git and tmux children) while N stand-in agents (bench/harness.py's)
in a private tmux server each take a turn every `--every` seconds, staggered, each turn changing `--changed` files
of the task's worktree: a checkpoint per turn. Prints the share of a core, the checkpoints taken and the load;
`--no-checkpoints` runs the same turns with `checkpoints = false`, so the difference is what checkpoints cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from harness import Sandbox, read_cpu

from muxagent.git import checkpoints, recovery_refs, repository


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _repo(root: Path, files: int) -> tuple[repository.RepoPaths, Path]:
    main = root / "proj"
    for n in range(files):
        path = main / f"pkg{n % 30}" / f"mod{n}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# module {n}\n" + "x = 1\n" * 20)
    _git(main, "init", "-q", "-b", "main")
    _git(main, "add", ".")
    _git(main, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "init")
    worktree = root / "t"
    _git(main, "worktree", "add", "-q", "-b", "mux/t", str(worktree))
    # An index written in the same second as its files makes every git re-read all of them ("racy git"); an agent's
    # own git calls refresh it soon after, as this does.
    time.sleep(1.1)
    _git(worktree, "update-index", "-q", "--refresh")
    return repository.discover(main), worktree


def _checkpoint_count(box: Sandbox) -> int:
    return len(box.git(box.repo, "for-each-ref", checkpoints.CHECKPOINT_PREFIX).splitlines())


def agents_taking_turns(count: int, every: float, seconds: float, files: int, changed: int, off: bool) -> None:
    box = Sandbox.create()
    try:
        box.start_server()
        box.build_repo(files)
        if off:  # the same turns with no checkpoint: what the rest of the monitor's work costs
            (box.repo / ".mux.toml").write_text("checkpoints = false\n")
        names = [f"t{n:02d}" for n in range(count)]
        for name in names:
            box.mux("new", name, "-a", box.agent_command)
        rows = {row["name"]: row for row in box.ls()[1]}
        deadline = time.monotonic() + 120
        while not all(Path(rows[n]["worktree"], "README.md").exists() for n in names):
            if time.monotonic() > deadline:
                raise RuntimeError("the worktrees were not checked out within 120 s")
            time.sleep(0.2)
            rows = {row["name"]: row for row in box.ls()[1]}
        time.sleep(every)  # the first looks of the monitor (each task's first idle) are not the figure
        monitor, made = box.monitor_pid(), _checkpoint_count(box)
        first, load = read_cpu(monitor), os.getloadavg()[0]
        start, turn = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            for index, name in enumerate(names):
                # Staggered: agent i ends its turns at i * every / count seconds into each period.
                time.sleep(max(0.0, start + turn * every + index * every / count - time.monotonic()))
                worktree = Path(rows[name]["worktree"])
                for n in range(changed):
                    (worktree / f"turn{n}.txt").write_text(f"{name} turn {turn}\n")
                box.tmux("send-keys", "-t", rows[name]["window"], "-l", "busy 1")
                box.tmux("send-keys", "-t", rows[name]["window"], "Enter")
            turn += 1
        time.sleep(max(0.0, start + turn * every - time.monotonic()))
        last = read_cpu(monitor)
        used = last.own_s - first.own_s + last.children_s - first.children_s
        pct = 100.0 * used / (last.at - first.at)
        what = " (checkpoints = false)" if off else ""
        print(
            f"monitor CPU{what}, {count} agents each taking a turn every "
            f"{every:.0f} s, {files}-file repo, {changed} files a turn: {pct:.2f}% of a core "
            f"over {last.at - first.at:.0f} s "
            f"({_checkpoint_count(box) - made} checkpoints of {turn * count} turns; load {load:.2f} -> "
            f"{os.getloadavg()[0]:.2f}, {os.cpu_count()} cores)"
        )
    finally:
        box.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--changed", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--agents", type=int, default=0)
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--no-checkpoints", action="store_true", help="the same turns with checkpoints = false")
    args = parser.parse_args()
    if args.agents:
        agents_taking_turns(args.agents, args.every, args.seconds, args.files, args.changed, args.no_checkpoints)
        return
    with tempfile.TemporaryDirectory() as tmp:
        repo, worktree = _repo(Path(tmp), args.files)
        taken: list[float] = []
        for turn in range(args.rounds):
            for n in range(args.changed):
                (worktree / f"pkg{n % 30}" / f"mod{n}.py").write_text(f"# turn {turn}\n")
            started = time.perf_counter()
            made = checkpoints.take(repo, "t", worktree, "mux/t", None, f"turn {turn}", "done").checkpoint
            taken.append(time.perf_counter() - started)
            assert made is not None
        undone: list[float] = []
        found = checkpoints.list_checkpoints(repo, "t")
        for n in range(args.rounds):
            target = found[n % len(found)]
            (worktree / "pkg0" / "mod0.py").write_text(f"# undo {n}\n")
            started = time.perf_counter()
            current = checkpoints.take(repo, "t", worktree, "mux/t", None, "", "before undo").latest
            assert current is not None and target.tip is not None
            checkpoints.reset_index(worktree, target.tip)
            recovery_refs.apply_snapshot(worktree, target.commit, since=current.tree)
            undone.append(time.perf_counter() - started)
    for what, times in (("checkpoint", taken), ("undo (git part)", undone)):
        ms = sorted(t * 1000 for t in times)
        print(f"{what}: median {statistics.median(ms):.0f} ms, min {ms[0]:.0f}, max {ms[-1]:.0f} (N={len(ms)})")


if __name__ == "__main__":
    main()
