"""The benchmark's figures in the READMEs cannot drift from a run: they are generated from bench/results.json and
bench/report.py's TARGETS, and nothing outside the generated blocks quotes a measured figure or a target."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import report

ROOT = report.CHECKOUT
RUN = ROOT / "bench" / "run.py"
# A number with a unit, as a figure or a target is written ("257 ms", "0.31 s", "1.14x", "3 %", "29.5 MiB").
QUOTED_FIGURE = re.compile(r"\d(?:[\d.,]*\d)? ?(?:ms|s|MiB|%|x)\b")
GENERATED = re.compile(r"<!-- bench:\w+:begin.*?<!-- bench:\w+:end -->", re.S)


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def test_readme_blocks_are_what_the_generator_makes_from_the_committed_run() -> None:
    results = json.loads(report.RESULTS.read_text(encoding="utf-8"))
    for path, expected in report.readme_texts(results).items():
        assert path.read_text(encoding="utf-8") == expected, (
            f"{path.relative_to(ROOT)} differs from what `python bench/run.py --write-readme bench/results.json` "
            "writes: run it (after a new benchmark run, with that run's JSON)"
        )


def test_no_figure_or_target_is_pasted_outside_the_generated_blocks() -> None:
    prose = [
        section(report.README.read_text(encoding="utf-8"), "## Benchmarks"),
        section(report.BENCH_README.read_text(encoding="utf-8"), "## Targets"),
    ]
    for text in prose:
        pasted = QUOTED_FIGURE.findall(GENERATED.sub("", text))
        assert not pasted, f"figures written by hand (generate them, or drop the number): {pasted}"


def test_a_target_is_met_below_its_limit_or_at_it_when_it_says_so() -> None:
    ratio = report.Target("r", "a ratio", 1.3, "x", "<=")
    assert ratio.met(1.3) and not ratio.met(1.31)
    assert ratio.text() == "<= 1.3x"
    strict = report.Target("ms", "a time", 60.0, "ms")
    assert strict.met(59.9) and not strict.met(60.0)
    assert strict.text() == "< 60 ms"
    # The screen-only target counts from the run's idle_after.
    screen = report.Target("s", "a latency", 1.0, "s", above="idle_after")
    assert screen.met(3.9, base=3.0) and not screen.met(4.0, base=3.0)
    assert screen.text() == "< idle_after + 1 s"


def test_every_target_of_the_committed_run_is_judged_in_its_json_and_table() -> None:
    results = json.loads(report.RESULTS.read_text(encoding="utf-8"))
    measured = {int(n) for n in results["ls"]}
    expected = {t.key for t in report.TARGETS if t.tasks is None or t.tasks in measured}
    assert {c.target.key for c in report.checks(results)} == expected
    assert {c["key"] for c in results["checks"]} == expected
    printed = report.table(results)
    for check in report.checks(results):
        row = next(line for line in printed.splitlines() if line.startswith(check.figure))
        assert check.target.text() in row and ("ok" if check.met else "MISSED") in row, row


def test_render_prints_the_figures_and_refuses_a_run_cut_short(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(RUN), "--render", str(report.RESULTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == report.figures_markdown(json.loads(report.RESULTS.read_text(encoding="utf-8")))
    assert proc.stdout.startswith("Figures of ") and "| `mux ls --json`" in proc.stdout

    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({**json.loads(report.RESULTS.read_text()), "complete": False}))
    for bad in (partial, tmp_path / "missing.json"):
        proc = subprocess.run([sys.executable, str(RUN), "--write-readme", str(bad)], capture_output=True, text=True)
        assert proc.returncode == 1
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
