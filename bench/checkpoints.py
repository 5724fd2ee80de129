#!/usr/bin/env python3
"""What a checkpoint costs the monitor (issue 16): a task's worktree of 3,000 files with 20 of them changed each
turn, recorded as a checkpoint (git/checkpoints.py); and the git part of `mux undo` (a checkpoint of now, the index
reset, the files of an earlier turn written back).

    python bench/checkpoints.py [--files 3000] [--changed 20] [--rounds 15]

Prints the median and the spread (ms) of each over `--rounds` turns. No tmux, no agent: this is the monitor's and
undo's own git work, which is all a turn's end costs (the agent's index, HEAD and branch are not touched, so none
of it is the agent's time).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--changed", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
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
