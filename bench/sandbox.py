#!/usr/bin/env python3
"""What the sandbox costs (issue 18): `mux new --sandbox` against `mux new`, and the time until the agent's first
screen shows, sandboxed and not, interleaved round by round in one private tmux server and repository.

    python bench/sandbox.py [--rounds 15] [--agent CMD --ready TEXT]

The agent is bench/harness.py's stand-in (a prompt drawn by sh) unless `--agent` gives another command line; its
first screen is the moment `tmux capture-pane` first shows `--ready`, timed from the start of `mux new`. Prints
the median and the spread (ms) of each, the difference of the medians and their ratio. Needs bubblewrap.
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness import Sandbox, timed_run


def first_screen(box: Sandbox, name: str, ready: str, started: float, timeout: float = 60.0) -> float:
    """Seconds from `started` until the task's pane shows `ready`."""
    listed = box.tmux("list-windows", "-a", "-F", "#{window_id} #{window_name}")
    window = next(line.split()[0] for line in listed.splitlines() if line.split()[1:2] == [name])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = box.tmux("capture-pane", "-p", "-t", window, check=False)
        if ready in screen:
            return time.perf_counter() - started
        time.sleep(0.005)
    raise SystemExit(f"{name} did not show {ready!r} within {timeout:.0f} s")


def one_start(box: Sandbox, name: str, agent: str, ready: str, sandboxed: bool) -> tuple[float, float]:
    """(`mux new` seconds, seconds until the first screen) of one task, then removed, untimed."""
    flags = ["--sandbox"] if sandboxed else []
    started = time.perf_counter()
    elapsed, _proc = timed_run(box.mux_argv("new", name, "-a", agent, *flags), box.repo, box.env)
    screen = first_screen(box, name, ready, started)
    box.mux("rm", name, "--force")
    return elapsed, screen


def show(label: str, samples: list[float]) -> float:
    ms = sorted(s * 1000 for s in samples)
    median = statistics.median(ms)
    print(f"{label:<34} median {median:7.1f} ms   min {ms[0]:7.1f}   max {ms[-1]:7.1f}   (n={len(ms)})")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--agent", help="the agent's command line (default: the stand-in)")
    parser.add_argument("--ready", default="bench>", help="text the agent's first screen shows")
    args = parser.parse_args()
    box = Sandbox.create()
    try:
        box.start_server()
        box.build_repo(200)
        agent = args.agent or box.agent_command
        times: dict[bool, tuple[list[float], list[float]]] = {False: ([], []), True: ([], [])}
        for round_ in range(args.warmup + args.rounds):
            for sandboxed in (False, True) if round_ % 2 == 0 else (True, False):
                name = f"{'sb' if sandboxed else 'plain'}{round_:03d}"
                new, screen = one_start(box, name, agent, args.ready, sandboxed)
                if round_ >= args.warmup:
                    times[sandboxed][0].append(new)
                    times[sandboxed][1].append(screen)
        plain_new, plain_screen = show("mux new", times[False][0]), show("first screen", times[False][1])
        sb_new, sb_screen = show("mux new --sandbox", times[True][0]), show("first screen, sandboxed", times[True][1])
        print(f"mux new --sandbox - mux new: {sb_new - plain_new:+.1f} ms (target: within 50 ms)")
        print(f"first screen sandboxed / not: {sb_screen / plain_screen:.3f} (target: within 10%)")
    finally:
        box.close()


if __name__ == "__main__":
    main()
