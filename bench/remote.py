#!/usr/bin/env python3
"""What tasks on other hosts cost (issue 17), on loopback: two sshd on 127.0.0.1 (tests/sshd_server.py), each a
"host" with its own home and tmux server.

    python bench/remote.py [--tasks 10] [--rounds 15]

Measures, as medians over interleaved rounds:
- `mux new --host` of each task (the push of the base commit included; the repository is small);
- `mux ls --json` of a repository whose tasks live on 2 hosts x N, against `mux ls --json` of a repository with
  2 x N local tasks and its monitor running (what a user gets), and their ratio (target: at most 1.5x), once the
  monitor's view covers the hosts' tasks (monitor/hostwatch.py);
- the monitor's CPU while those tasks are idle, the hosts' and the local ones;
- `mux ls --json` once one host's sshd is gone (target: at most its ssh_timeout more, once), then once a black
  hole (a listener that never speaks SSH) takes its place.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import Sandbox, read_cpu, timed_run

from muxagent import fastpath

sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))  # the stand-in host's sshd

from sshd_server import available, close_host, open_host

TIMEOUT = 2.0  # the hosts' ssh_timeout
CPU_WINDOW = 10.0


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def show(label: str, samples: list[float]) -> float:
    ms = sorted(s * 1000 for s in samples)
    print(f"{label:<44} median {statistics.median(ms):8.1f} ms   min {ms[0]:8.1f}   max {ms[-1]:8.1f}   (n={len(ms)})")
    return statistics.median(ms)


def covered(subject: Sandbox, timeout: float = 60) -> None:
    """Until the monitor's view covers every task of `subject`'s repository (`ls` answered before the CLI)."""
    deadline = time.monotonic() + timeout
    while fastpath.answer("ls", {"--json"}, os.path.realpath(subject.repo)) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"no view covered the tasks of {subject.repo} within {timeout:.0f} s")
        time.sleep(0.1)


def monitor_cpu(subject: Sandbox, seconds: float) -> float:
    """The monitor's CPU (its own, and the ssh, tmux and git it ran and reaped) as a share of one core."""
    pid = subject.monitor_pid()
    first = read_cpu(pid)
    time.sleep(seconds)
    last = read_cpu(pid)
    used = (last.own_s + last.children_s) - (first.own_s + first.children_s)
    return 100 * used / (last.at - first.at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10, help="tasks per host")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if not available():
        raise SystemExit("needs ssh and sshd (openssh-server)")
    box = Sandbox.create()
    local = Sandbox.create()
    folder = Path(tempfile.mkdtemp(prefix="mxb", dir="/tmp"))
    box.env["XDG_RUNTIME_DIR"] = str(folder)
    opened = []
    try:
        box.start_server()
        local.start_server()
        box.build_repo(200)
        local.build_repo(200)
        for index in (1, 2):
            host, proc = open_host(Path(tempfile.mkdtemp(prefix="mxh", dir="/tmp")), box.root / f"host{index}")
            opened.append((host, proc))
            box.mux(*host.add_args(f"h{index}", TIMEOUT))
        creations = []
        for number in range(args.tasks):
            for index in (1, 2):
                elapsed, _ = box.mux("new", f"t{index}-{number}", "--host", f"h{index}", "-a", box.agent_command)
                creations.append(elapsed)
        for number in range(2 * args.tasks):
            local.mux("new", f"t{number}", "-a", local.agent_command)
        for subject in (box, local):
            covered(subject)  # as a user gets it: the monitor's view, the hosts' tasks in it
        remote_ls: list[float] = []
        local_ls: list[float] = []
        for round_ in range(2 + args.rounds):
            pair = [(box, remote_ls), (local, local_ls)]
            for subject, samples in pair if round_ % 2 else reversed(pair):
                elapsed, _ = timed_run(subject.mux_argv("ls", "--json"), subject.repo, subject.env)
                if round_ >= 2:
                    samples.append(elapsed)
        new = show("mux new --host", creations)
        remote = show(f"mux ls --json, 2 hosts x {args.tasks} tasks", remote_ls)
        here = show(f"mux ls --json, {2 * args.tasks} local tasks", local_ls)
        print(f"mux new --host: {new:.0f} ms (target: under 1500 ms plus the push)")
        print(f"ls on 2 hosts / ls of local tasks: {remote / here:.2f}x (target: at most 1.5x)")
        for label, subject in (
            (f"2 hosts x {args.tasks} idle tasks", box),
            (f"{2 * args.tasks} local idle tasks", local),
        ):
            print(f"monitor CPU, {label}: {monitor_cpu(subject, CPU_WINDOW):.1f}% of one core over {CPU_WINDOW:.0f} s")
        dead_host = opened[1][0]
        dead_host.stop()
        dead: list[float] = []
        for _ in range(max(3, args.rounds // 3)):
            elapsed, _ = timed_run(box.mux_argv("ls", "--json"), box.repo, box.env)
            dead.append(elapsed)
        gone = show("mux ls --json, one host gone", dead)
        print(
            f"a dead host adds {gone - remote:+.0f} ms to ls (target: at most its ssh_timeout, {TIMEOUT * 1000:.0f} ms)"
        )
        # Then a black hole where it was: the connection is taken, SSH never answers.
        with socket.socket() as hole:
            hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            hole.bind(("127.0.0.1", dead_host.port))
            hole.listen(64)
            held: list[float] = []
            for _ in range(max(6, args.rounds // 2)):
                elapsed, _ = timed_run(box.mux_argv("ls", "--json"), box.repo, box.env)
                held.append(elapsed)
                time.sleep(0.5)  # spread over the monitor's looks at the host, each one waiting out its timeout
            black = show("mux ls --json, one host a black hole", held)
        print(f"a black-holed host: ls median {black:.0f} ms, worst {max(held) * 1000:.0f} ms "
              f"(target: at most its ssh_timeout, {TIMEOUT * 1000:.0f} ms, more)")  # fmt: skip
    finally:
        for host, proc in opened:
            close_host(host, proc, host.key.parent, runtime=folder)
        box.close()
        local.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
