"""A quick run of the benchmark (bench/run.py): it completes, prints its table, writes every figure as JSON, and
leaves no tmux server or temp dir behind. Timings are not asserted: they are noisy on shared machines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "run.py"

SUMMARY_KEYS = ("median_ms", "min_ms", "p90_ms", "max_ms", "n", "samples_ms")


def _summary(node: object, where: str) -> None:
    assert isinstance(node, dict), f"{where}: {node!r}"
    for key in SUMMARY_KEYS:
        assert key in node, f"{where}: no {key}"
    assert node["n"] >= 1 and len(node["samples_ms"]) == node["n"], where
    assert 0 < node["min_ms"] <= node["median_ms"] <= node["max_ms"], where


@pytest.mark.timeout(300)  # about 25 s on an idle 2-core machine; much more when the machine is loaded
def test_quick_benchmark_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--tasks", "2", "--repeat", "2", "--warmup", "0", "--churn-repeat", "1",
         "--monitor-seconds", "2", "--quiet-seconds", "1", "--memory-seconds", "6", "--family-repeat", "2",
         "--files", "300",
         "--json", str(out)],
        capture_output=True, text=True, timeout=280, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    # The table names every figure.
    for label in ("mux ls --json, N=2", "every task edited", "mux new", "TAB: bash `mux attach <TAB>`",
                  "mux _tasks", "hook command", "hook event -> ls shows it", "last output -> ls shows idle",
                  "monitor CPU", "monitor RSS", "parent's inbox entry", "notice typed into idle parent",
                  "mux new -n 10 until its windows exist", "mux compare of 10 members", "mux status-line, N=2",
                  "its CPU at status-interval 5", "file edit -> ls counts it, N=2", "monitor RSS over"):  # fmt: skip
        assert label in proc.stdout, f"{label!r} missing from the table:\n{proc.stdout}"

    data = json.loads(out.read_text())
    for key in ("date", "machine", "options", "repo", "ls", "ls_growth", "new", "completion", "hook",
                "hook_latency", "screen_latency", "monitor_quiet", "monitor_busy", "family", "group", "status_line",
                "edit_latency", "monitor_memory"):  # fmt: skip
        assert key in data, f"no {key} in the JSON"
    assert data["complete"] is True
    assert re.match(r"\d{4}-\d\d-\d\dT", data["date"])
    for key in ("uname_m", "cores", "python", "tmux", "git"):
        assert data["machine"][key], key
    assert data["repo"]["files"] >= 300

    ls = data["ls"]["2"]
    for key in ("mux", "floor"):
        _summary(ls[key], f"ls.{key}")
    assert ls["ratio"] > 0
    for churn in ("one_changed", "all_changed"):
        _summary(ls[churn]["mux"], f"ls.{churn}.mux")
        _summary(ls[churn]["floor"], f"ls.{churn}.floor")
    if data["options"]["console_script"]:
        _summary(ls["mux_console"], "ls.mux_console")
    assert data["ls_growth"]["counts"] == [2]
    status = data["status_line"]["2"]
    _summary(status["mux"], "status_line.mux")
    _summary(status["cpu"], "status_line.cpu")
    assert status["interval_s"] == 5 and status["cpu_pct"] > 0
    _summary(data["edit_latency"]["2"], "edit_latency")
    assert data["edit_latency"]["2"]["timeouts"] == 0
    # Every judged figure carries its target and verdict (the targets themselves: tests/test_bench_report.py).
    assert data["checks"], "no checks in the JSON"
    for check in data["checks"]:
        assert {"figure", "key", "value", "target", "limit", "met"} <= check.keys(), check
        assert check["figure"] in proc.stdout, f"{check['figure']!r} is judged but not in the table"

    for key in ("mux", "hand", "setup_new"):
        _summary(data["new"][key], f"new.{key}")
    assert data["new"]["ratio"] > 0

    completion = data["completion"]["2"]
    _summary(completion["tasks"], "completion.tasks")
    _summary(completion["bash"], "completion.bash")
    assert completion["candidates"] == 2

    _summary(data["hook"]["hook"], "hook.hook")
    _summary(data["hook"]["python_floor"], "hook.python_floor")

    latency = data["hook_latency"]["2"]
    _summary(latency, "hook_latency")
    assert latency["timeouts"] == 0
    _summary(data["screen_latency"], "screen_latency")
    assert data["screen_latency"]["idle_after_s"] > 0
    family = data["family"]
    _summary(family["entry"], "family.entry")
    _summary(family["notice"], "family.notice")
    assert (family["entry"]["n"], family["notice"]["n"]) == (4, 2)  # two rounds: waiting and idle, one notice each
    assert family["entry"]["p95_ms"] <= family["entry"]["max_ms"]
    assert data["group"]["size"] == 10
    _summary(data["group"]["new"], "group.new")
    _summary(data["group"]["compare"], "group.compare")

    for monitor in (data["monitor_quiet"]["2"], data["monitor_busy"]["2"]):
        for key in ("cpu_pct", "cpu_pct_with_children", "tmux_server_cpu_pct", "rss_start_kib", "rss_end_kib"):
            assert isinstance(monitor[key], int | float) and monitor[key] >= 0, key
        assert monitor["rss_start_kib"] > 0
    assert data["monitor_busy"]["2"]["agents"] == 2
    memory = data["monitor_memory"]
    assert memory["tasks"] == 2 and memory["events"] >= 1, memory  # one at the start, one 5 s later
    assert 0 < memory["rss_start_kib"] <= memory["rss_max_kib"] and len(memory["rss_samples_kib"]) >= 5

    # Its private tmux server is gone (socket file included), and so is its sandbox.
    found = re.search(r"sandbox (\S+), tmux socket (mux-bench-\w+)", proc.stderr)
    assert found is not None, proc.stderr
    sandbox, socket = Path(found.group(1)), found.group(2)
    assert not sandbox.exists()
    assert not Path(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}", socket).exists()
    alive = subprocess.run(["tmux", "-L", socket, "list-sessions"], capture_output=True, text=True)
    assert alive.returncode != 0
