"""The README cannot rot: its worked example runs, its TOML is valid, its tmux lines load, every command is in it.

Every fenced block may be preceded by a marker comment, `<!-- readme-test: KIND -->`:
- `run`: a `sh` block run with bash, in order with the other `run` blocks, in one test repository;
- `skip (why)`: a `sh` block deliberately not run (it installs something or writes to a home directory);
- `profile` / `settings`: a `toml` block checked as an agent profile / as `.mux.toml`;
- `tmux`: lines sourced into a real tmux server;
- `header`: a `text` block whose first line is `mux ls`'s table header.
A `sh` block without a marker fails the test, so a new example is run unless someone says why not.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import git, mux_ls, run_mux

from muxagent import config, render
from muxagent.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.S | re.M)

# A stand-in agent for the worked example: it "does" each prompt by appending it to notes/<task>.md, then
# shows its prompt again. The README's prompts need no special words.
STAND_IN = """\
import os, pathlib, sys

def work(text):
    notes = pathlib.Path("notes")
    notes.mkdir(exist_ok=True)
    with open(notes / (os.environ["MUX_TASK"] + ".md"), "a") as f:
        f.write(text + "\\n")
    print("done: " + text)

if sys.argv[1:]:
    work(" ".join(sys.argv[1:]))
while True:
    sys.stdout.write("agent> ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        break
    if line.strip():
        work(line.strip())
"""


@dataclass(frozen=True)
class Block:
    mark: str
    lang: str
    body: str


def blocks() -> list[Block]:
    return [Block(m["mark"] or "", m["lang"], m["body"]) for m in _BLOCK.finditer(README.read_text())]


def of_kind(mark: str) -> list[Block]:
    return [block for block in blocks() if block.mark == mark]


def test_every_shell_block_is_run_or_skipped_on_purpose() -> None:
    shell = [block for block in blocks() if block.lang == "sh"]
    assert len(shell) >= 5
    for block in shell:
        assert block.mark == "run" or re.fullmatch(r"skip \(.+\)", block.mark), block.body


def test_quick_start_is_the_two_commands_ci_runs() -> None:
    first, second = [block.body.strip() for block in blocks() if block.lang == "sh"][:2]
    assert first.startswith("pip install . && ")
    assert second == "pip install -e '.[test]' && python -m pytest"
    # CI runs the same, only quieter.
    assert second.replace("pip install", "pip install -q") in (ROOT / ".ci" / "run").read_text()


def command_names() -> list[str]:
    names = []
    for command in app.registered_commands:
        if command.hidden:
            continue
        assert command.callback is not None
        names.append(command.name or command.callback.__name__.replace("_", "-"))
    return names


def test_every_command_has_a_row_with_an_example() -> None:
    rows = {}
    for line in README.read_text().splitlines():
        match = re.match(r"\| `mux ([a-z-]+)[^|]*(?:\\\|[^|]*)*\|.*\| `(mux [^`]+)` \|$", line)
        if match:
            rows[match[1]] = match[2]
    for name in command_names():
        assert name in rows, f"`mux {name}` has no row in the README's command table"
        assert rows[name].startswith(f"mux {name}"), rows[name]


def test_toml_blocks_are_valid_profiles_and_settings() -> None:
    (profile,) = of_kind("profile")
    config._check_profile(tomllib.loads(profile.body), "README", "")
    (settings,) = of_kind("settings")
    table = tomllib.loads(settings.body)
    config._check_settings(table, "README")
    assert set(table) == set(config._SETTINGS_KEYS), "the reference shows every key"


def test_tmux_lines_load_into_tmux(tmp_path: Path, tmux_socket: str) -> None:
    (block,) = of_kind("tmux")
    conf = tmp_path / "tmux.conf"
    conf.write_text(block.body)
    subprocess.run(["tmux", "-L", tmux_socket, "new-session", "-d", "-s", "readme"], check=True)
    proc = subprocess.run(["tmux", "-L", tmux_socket, "source-file", str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    used = re.findall(r"(?:&& |')mux ([a-z-]+)", block.body)
    assert {"status-line", "next-waiting", "ls"} <= set(used) <= set(command_names())


def test_ls_header_is_the_tables_header() -> None:
    (block,) = of_kind("header")
    assert block.body.splitlines()[0].split() == render.table([], colour=False).split()


def install_stand_ins(tmp_path: Path) -> dict[str, str]:
    agent = tmp_path / "stand_in_agent.py"
    agent.write_text(STAND_IN)
    folder = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("claude", "codex"):
        (folder / f"{name}.toml").write_text(
            f"command = {json.dumps([sys.executable, str(agent)])}\n"
            'prompt_args = ["{prompt}"]\nresume_args = []\nhooks = "none"\n'
            "[status]\nidle_after = 1.0\nwaiting = []\nworking = []\nidle = ['agent> \\s*\\Z']\n"
        )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "mux"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m muxagent "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_the_worked_example_runs(repo: Path, tmp_path: Path) -> None:
    env = install_stand_ins(tmp_path)
    steps = of_kind("run")
    assert len(steps) == 4
    for step in steps:
        argv = ["bash", "-euo", "pipefail", "-c", step.body]
        proc = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{step.body}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    # Two tasks came home, the third is back after its forced removal.
    assert "Keep the email on login errors" in git(repo, "log", "--format=%s")
    assert (repo / "notes" / "login-fix.md").read_text().startswith("the login form loses the email")
    assert (repo / "notes" / "api-docs.md").is_file()
    # The architect's family came home through the architect's branch.
    for name in ("architect", "login-tests", "login-docs"):
        assert (repo / "notes" / f"{name}.md").is_file(), name
    assert list(mux_ls(repo)) == ["cleanup"]
    restored = repo.parent / "proj.worktrees" / "cleanup"
    assert "remove the dead code in utils/" in (restored / "notes" / "cleanup.md").read_text()
    assert not (repo / "notes" / "cleanup.md").exists()
    assert run_mux("rm", "cleanup", "--force", cwd=repo).returncode == 0


@pytest.mark.parametrize("name", ["new", "trust", "status-line", "next-waiting", "logs", "init"])
def test_help_of_each_new_command_is_one_screen(name: str) -> None:
    # `--help` is the reference the README's table points to; it must work without a repository.
    proc = subprocess.run([sys.executable, "-m", "muxagent", name, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Usage: mux" in proc.stdout


def test_the_promise_table_names_only_tests_that_exist() -> None:
    """tests/README.md pairs each safety promise with its tests: a renamed or deleted test must not leave it lying."""
    table = (ROOT / "tests" / "README.md").read_text()
    named = set(re.findall(r"`(test_\w+)`", table))
    defined = {
        found
        for module in (ROOT / "tests").glob("test_*.py")
        for found in re.findall(r"^def (test_\w+)", module.read_text(), re.M)
    }
    assert len(named) > 50
    assert named <= defined, f"tests/README.md names tests that do not exist: {sorted(named - defined)}"
