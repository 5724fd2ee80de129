"""Shell completion: the checked-in scripts match the CLI, real shells complete commands, options and live task
names, and the `mux _tasks` fast path is quiet, read-only and light."""

from __future__ import annotations

import enum
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer
from conftest import git, modules_imported, run_mux, write_toml

from muxagent import naming
from muxagent.cli import app
from muxagent.completion import fast, scripts
from muxagent.completion.spec import NO_VALUE, SHELLS, ArgSpec, OptionSpec, Value, spec_from_command
from muxagent.errors import UsageError
from muxagent.model import Task
from muxagent.state import store

ROOT = Path(__file__).resolve().parent.parent
COMPLETIONS = ROOT / "completions"
TASKS = ["alpha", "beta"]
HOSTS = ["box", "gpu1"]
HOST_COMMANDS = ["add", "check", "ls", "rm"]


def record_hosts() -> None:
    """HOSTS in hosts.toml, as `mux host add` writes it, and a name no command would take (never offered)."""
    entries = {name: {"address": f"{name}.example"} for name in [*HOSTS, "bad name"]}
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "hosts.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_toml(path, {"hosts": entries})


# What `mux _tasks` must never load: each costs tens of milliseconds on every TAB. (libtmux: no muxagent module
# imports it, test_layers.)
HEAVY = {"typer", "click", "git", "rich", "muxagent.cli", "muxagent.commands.context"}


# --- helpers ------------------------------------------------------------------------------------------------


@pytest.fixture
def mux_on_path(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `mux` first on PATH that runs this checkout, as the scripts call it."""
    bin_dir = tmp_path_factory.mktemp("bin")
    wrapper = bin_dir / "mux"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m muxagent "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return wrapper


def registry_root(repo: Path) -> Path:
    return Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir").strip()) / "mux"


def add_tasks(repo: Path, names: list[str]) -> None:
    """Record tasks in the registry the way mux does, without tmux: enough for completion."""
    with store.Store(registry_root(repo)).transaction() as registry:
        for name in names:
            registry.add(_task(name))


def comp_words(line: str) -> list[str]:
    """Split a command line as readline does for bash completion: at blanks, and '=' is a word of its own
    (it is in COMP_WORDBREAKS). The last word is the one being completed ("" after a blank)."""
    words = re.findall(r"=|[^ =]+", line)
    if not line or line.endswith(" "):
        words.append("")
    return words


def bash_complete(script: Path, lines: list[str], cwd: Path) -> dict[str, list[str]]:
    """Source the script in a real bash, call the function registered for `mux` as bash would, and collect
    COMPREPLY for each line."""
    body = [
        f"source {shlex.quote(str(script))}",
        "fn=$(complete -p mux); fn=${fn#*-F }; fn=${fn%% *}",
    ]
    for index, line in enumerate(lines):
        words = comp_words(line)
        body += [
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})",
            f"COMP_CWORD={len(words) - 1} COMP_LINE={shlex.quote(line)} COMP_POINT={len(line)} COMPREPLY=()",
            '"$fn" mux "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"',
            f"echo '@@{index}'",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", "\n".join(body)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return _split_cases(proc.stdout, lines)


def _split_cases(out: str, lines: list[str]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    current: list[str] | None = None
    for row in out.splitlines():
        if row.startswith("@@"):
            current = result.setdefault(lines[int(row[2:])], [])
        elif row and current is not None:
            current.append(row)
    assert set(result) == set(lines), out
    return result


# --- the scripts match the CLI ------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_checked_in_script_matches_the_cli(shell: str) -> None:
    path = COMPLETIONS / scripts.FILES[shell]
    expected = scripts.render(shell, spec_from_command(typer.main.get_command(app)))
    actual = path.read_text(encoding="utf-8") if path.is_file() else None
    assert actual == expected, f"{path.relative_to(ROOT)} is out of date: run `python -m muxagent _write-completions`"


@pytest.mark.parametrize("shell", SHELLS)
def test_script_says_it_is_generated(shell: str) -> None:
    text = scripts.render(shell, spec_from_command(typer.main.get_command(app)))
    assert f"# generated by `mux completion {shell}`; do not edit." in text.splitlines()[:2]
    if shell == "zsh":
        assert text.startswith("#compdef mux\n")  # zsh's autoloader reads only the first line


def test_unknown_shell_is_a_usage_error_naming_the_shells() -> None:
    with pytest.raises(UsageError) as info:
        scripts.render("tcsh", spec_from_command(typer.main.get_command(app)))
    message = str(info.value)
    assert "\n" not in message and all(shell in message for shell in SHELLS)


def test_mux_completion_prints_the_script_and_refuses_unknown_shells(tmp_path: Path) -> None:
    for shell in SHELLS:
        out = run_mux("completion", shell, cwd=tmp_path).stdout
        assert out == (COMPLETIONS / scripts.FILES[shell]).read_text(encoding="utf-8")
    proc = run_mux("completion", "tcsh", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "bash, zsh, fish" in proc.stderr


def test_write_completions_rewrites_the_scripts_that_changed(tmp_path: Path) -> None:
    (tmp_path / scripts.FILES["bash"]).write_text("stale\n")
    proc = run_mux("_write-completions", str(tmp_path), cwd=tmp_path)
    assert len(proc.stdout.splitlines()) == len(SHELLS)
    for shell in SHELLS:
        written = (tmp_path / scripts.FILES[shell]).read_bytes()
        assert written == (COMPLETIONS / scripts.FILES[shell]).read_bytes(), shell
    assert run_mux("_write-completions", str(tmp_path), cwd=tmp_path).stdout == f"{tmp_path}: up to date\n"
    missing = run_mux("_write-completions", str(tmp_path / "nowhere"), cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "no such directory" in missing.stderr


def test_completion_modules_do_not_import_the_cli() -> None:
    # The arrow points down: cli.py hands the app to completion/, never the reverse.
    modules = ["spec", "bash", "zsh", "fish", "fast", "scripts"]
    code = "import sys\n" + "".join(f"import muxagent.completion.{m}\n" for m in modules)
    code += "print(sorted(m for m in sys.modules if m == 'muxagent.cli' or m.split('.')[0] in ('typer', 'click')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout == "[]\n"


class Shell(enum.Enum):
    bash = "bash"
    zsh = "zsh"


def test_spec_reads_commands_options_and_what_arguments_hold() -> None:
    demo = typer.Typer(add_completion=False)

    @demo.command()
    def new(name: Annotated[str, typer.Argument(metavar="NAME")]) -> None:
        """Make a task.

        More text."""

    @demo.command()
    def wait(
        names: Annotated[list[str], typer.Argument(metavar="NAME...")],
        until: Annotated[Literal["idle", "exited"], typer.Option("--for")] = "idle",
        timeout: Annotated[float | None, typer.Option("-t", "--timeout", help="Seconds.")] = None,
        quiet: Annotated[bool, typer.Option("-q", "--quiet")] = False,
    ) -> None:
        """Wait."""

    @demo.command()
    def export(
        name: Annotated[str, typer.Argument(metavar="NAME")],
        out: Annotated[Path, typer.Argument(dir_okay=True, file_okay=False)],
        shell: Annotated[Shell, typer.Option("--shell")] = Shell.bash,
        log: Annotated[Path | None, typer.Option("--log")] = None,
    ) -> None:
        """Export."""

    @demo.command("_secret", hidden=True)
    def secret() -> None:
        pass

    spec = spec_from_command(typer.main.get_command(demo))
    commands = {c.name: c for c in spec.commands}
    assert list(commands) == ["new", "wait", "export"]
    assert commands["new"].help == "Make a task"
    # A new task's name is not one of the live tasks.
    assert commands["new"].args == (ArgSpec("name", NO_VALUE, variadic=False),)
    assert commands["wait"].args == (ArgSpec("names", Value("task"), variadic=True),)
    options = {o.flags: o for o in commands["wait"].options}
    assert options[("--for",)].value == Value("choice", ("idle", "exited"))
    assert options[("-t", "--timeout")] == OptionSpec(("-t", "--timeout"), "Seconds", NO_VALUE)
    assert options[("-q", "--quiet")].value is None
    assert options[("--help",)].value is None
    export_args = commands["export"].args
    assert [a.value.kind for a in export_args] == ["task", "dir"]
    export_options = {o.flags: o.value for o in commands["export"].options}
    assert export_options[("--shell",)] == Value("choice", ("bash", "zsh"))
    assert export_options[("--log",)] == Value("file")
    assert [o.flags for o in spec.options] == [("--help",)]


# --- real shells --------------------------------------------------------------------------------------------


@pytest.fixture
def live_tasks(repo: Path, fake_profile: Path, mux_on_path: Path) -> Path:
    for name in TASKS:
        run_mux("new", name, "-a", "fake", cwd=repo)
    return repo


def test_bash_completes_commands_options_and_live_task_names(live_tasks: Path) -> None:
    repo = live_tasks
    cases = {
        "mux ": None,  # checked below
        "mux ne": ["new", "next-waiting"],
        "mux -": ["--version", "-V", "--help"],
        "mux rm --f": ["--force"],
        "mux new --a": ["--agent", "--attach"],
        "mux attach ": TASKS,
        "mux attach b": ["beta"],
        "mux attach beta ": [],
        "mux rm --force ": TASKS,
        "mux send alpha ": [],  # the text to send
        "mux peek -n 5 ": TASKS,
        "mux peek --lines=5 ": TASKS,
        "mux peek -n ": [],  # a number
        "mux new ": [],  # a new name is none of the live ones
        "mux new --prompt-file READ": ["README.md"],
        "mux new --prompt-file=READ": ["README.md"],
        "mux completion ": ["bash", "zsh", "fish"],
        "mux wait alpha --for ": ["idle", "waiting", "exited", "any"],
        "mux nosuch ": [],
        # A group's commands, then each one's options and arguments; host names from hosts.toml.
        "mux host ": ["add", "ls", "rm", "check"],
        "mux host r": ["rm"],
        "mux host rm ": HOSTS,
        "mux host check g": ["gpu1"],
        "mux host check --": ["--json", "--help"],
        "mux host add ": [],  # a new name
        "mux host add --ssh-t": ["--ssh-timeout"],
        "mux host nosuch ": [],
        "mux new t --host ": HOSTS,
        "mux new t --host=b": ["box"],
    }
    record_hosts()
    got = bash_complete(COMPLETIONS / "mux.bash", list(cases), cwd=repo)
    for line, expected in cases.items():
        if expected is not None:
            assert got[line] == expected, line
    commands = set(got["mux "])
    assert {"new", "ls", "attach", "send", "peek", "diff", "rm", "clean", "agents", "doctor"} <= commands
    assert not any(c.startswith("_") for c in commands)
    # From inside a task's worktree (where an agent runs mux) and from a subdirectory, the same tasks.
    worktree = Path(store.Store(registry_root(repo)).load().values()[0].worktree)
    (repo / "sub").mkdir()
    for cwd in (worktree, repo / "sub"):
        assert bash_complete(COMPLETIONS / "mux.bash", ["mux attach "], cwd=cwd)["mux attach "] == TASKS


def test_bash_completes_every_task_of_a_variadic_argument(repo: Path, mux_on_path: Path, tmp_path: Path) -> None:
    demo = typer.Typer(add_completion=False)

    @demo.command()
    def wait(
        names: Annotated[list[str], typer.Argument(metavar="NAME...")],
        timeout: Annotated[float | None, typer.Option("--timeout")] = None,
    ) -> None:
        """Wait."""

    @demo.command()
    def other() -> None:
        """Another."""

    script = tmp_path / "demo.bash"
    script.write_text(scripts.render("bash", spec_from_command(typer.main.get_command(demo))))
    add_tasks(repo, ["one", "two"])
    got = bash_complete(script, ["mux wait ", "mux wait one ", "mux wait one --timeout ", "mux wait -- "], repo)
    assert got == {
        "mux wait ": ["one", "two"],
        "mux wait one ": ["one", "two"],
        "mux wait one --timeout ": [],
        "mux wait -- ": ["one", "two"],
    }


def _missing(shell: str) -> bool:
    """A developer's machine may lack the shell; CI must not (.ci/run installs it), so there it fails instead."""
    return shutil.which(shell) is None and not os.environ.get("CI")


@pytest.mark.skipif(_missing("fish"), reason="fish is not installed (apt-get install fish)")
def test_fish_script_parses_and_completes(repo: Path, mux_on_path: Path) -> None:
    script = COMPLETIONS / "mux.fish"
    subprocess.run(["fish", "--no-config", "-n", str(script)], check=True, capture_output=True, timeout=30)
    add_tasks(repo, TASKS)
    cases = {
        "mux att": ["attach"],
        "mux attach ": TASKS,
        "mux send alpha ": [],
        "mux peek -n 5 ": TASKS,
        "mux rm --f": ["--force"],
        "mux completion ": ["bash", "fish", "zsh"],
        "mux host ": HOST_COMMANDS,
        "mux host rm ": HOSTS,
        "mux host check --j": ["--json"],
        "mux new t --host ": HOSTS,
    }
    record_hosts()
    commands = [f"source {shlex.quote(str(script))}"]
    for index, line in enumerate(cases):
        commands += [f"echo @@{index}", f"complete -C {shlex.quote(line)}"]
    proc = subprocess.run(
        ["fish", "--no-config", "-c", "\n".join(commands)], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    got = _split_cases(proc.stdout, list(cases))
    for line, expected in cases.items():
        assert sorted(c.split("\t")[0] for c in got[line]) == expected, line


# Drives zsh's real completion system in a pseudo-terminal: every candidate zsh adds is printed as HIT:word, and
# the completion's end as <<END>>. MODE fpath autoloads the script as _mux; MODE source sources it.
ZSH_HARNESS = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "source ${(q)INIT}"
zpty -w z "$LINE"$'\t'
zpty -r z out '*<<END>>*'
for l in ${(f)out}; do [[ $l == *HIT:* ]] && print -r -- ${${l#*HIT:}%$'\r'}; done
zpty -d z
"""
ZSH_INIT = r"""
PROMPT=''
if [[ $MODE == fpath ]]; then fpath=($SCRIPT_DIR $fpath); fi
autoload -Uz compinit && compinit -u -D
if [[ $MODE == source ]]; then source $SCRIPT_DIR/_mux; fi
zstyle ':completion:*' list-grouped false
zstyle ':completion:*' insert-tab false
comppostfuncs=(_harness_end)
_harness_end() { print -r -- '<<END>>'; exit }
compadd() {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi
  local -a hits; builtin compadd -A hits "$@"
  local h; for h in $hits; do print -r -- "HIT:$h"; done
  builtin compadd "$@"
}
bindkey '^M' undefined; bindkey '^J' undefined; bindkey '^I' complete-word
"""


@pytest.mark.skipif(_missing("zsh"), reason="zsh is not installed (apt-get install zsh)")
def test_zsh_script_parses_and_completes(repo: Path, mux_on_path: Path, tmp_path: Path) -> None:
    script = COMPLETIONS / "_mux"
    subprocess.run(["zsh", "-n", str(script)], check=True, capture_output=True, timeout=30)
    add_tasks(repo, TASKS)
    init = tmp_path / "init.zsh"
    init.write_text(ZSH_INIT)
    cases = [
        ("fpath", "mux att", ["attach"]),
        ("fpath", "mux attach ", TASKS),
        ("fpath", "mux peek --lines=5 ", TASKS),
        ("fpath", "mux rm --f", ["--force"]),
        ("source", "mux send ", TASKS),
        ("fpath", "mux host ", HOST_COMMANDS),
        ("fpath", "mux host rm ", HOSTS),
        ("source", "mux new t --host ", HOSTS),
    ]
    record_hosts()
    for mode, line, expected in cases:
        env = {**os.environ, "INIT": str(init), "LINE": line, "MODE": mode, "SCRIPT_DIR": str(COMPLETIONS)}
        proc = subprocess.run(
            ["zsh", "-f", "-c", ZSH_HARNESS], cwd=repo, env=env, capture_output=True, text=True, timeout=30
        )
        assert sorted(set(proc.stdout.split())) == expected, (mode, line, proc.stdout, proc.stderr)


# --- the fast path ------------------------------------------------------------------------------------------


def test_tasks_outside_a_repo_prints_nothing(tmp_path: Path) -> None:
    proc = run_mux("_tasks", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_tasks_lists_names_sorted(repo: Path) -> None:
    add_tasks(repo, ["zulu", "alpha", "mike"])
    proc = run_mux("_tasks", cwd=repo)
    assert (proc.stdout, proc.stderr) == ("alpha\nmike\nzulu\n", "")


@pytest.mark.parametrize("entry", ["python -m muxagent", "console script"])
def test_tasks_loads_no_heavy_module(repo: Path, entry: str) -> None:
    add_tasks(repo, TASKS)
    if entry == "console script":
        target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["mux"]
        module, _, func = target.partition(":")
        argv = ["-c", f"import sys; sys.argv = ['mux', '_tasks']\nfrom {module} import {func}; {func}()"]
    else:
        argv = ["-m", "muxagent", "_tasks"]
    proc = subprocess.run([sys.executable, *argv], cwd=repo, capture_output=True, text=True, timeout=60)
    assert proc.stdout == "alpha\nbeta\n", proc.stderr
    loaded = modules_imported(argv, cwd=repo)
    heavy = {m for m in loaded if m in HEAVY or m.split(".")[0] in HEAVY}
    assert not heavy, f"`mux _tasks` via {entry} imported {sorted(heavy)}"


def test_hosts_lists_the_hosts_mux_host_ls_lists_and_loads_no_heavy_module(repo: Path) -> None:
    record_hosts()
    (Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "hosts.toml").write_text(
        'hosts.box.address = "box.example"\nhosts.gpu1.address = "gpu1.example"\n'
    )
    listed = [host["name"] for host in json.loads(run_mux("host", "ls", "--json", cwd=repo).stdout)]
    argv = ["-m", "muxagent", "_hosts"]
    proc = subprocess.run([sys.executable, *argv], cwd=repo, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == sorted(listed) == HOSTS and proc.stderr == ""
    heavy = {m for m in modules_imported(argv, cwd=repo) if m in HEAVY or m.split(".")[0] in HEAVY}
    assert not heavy, f"`mux _hosts` imported {sorted(heavy)}"
    (Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "hosts.toml").write_text("not [ toml")
    proc = subprocess.run([sys.executable, *argv], cwd=repo, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")  # a broken file: nothing, quietly


def test_task_names_agree_with_the_store(repo: Path) -> None:
    add_tasks(repo, ["b.2", "a-1", "c_3"])
    expected = sorted(store.Store(registry_root(repo)).load())
    assert fast.task_names(repo) == expected == ["a-1", "b.2", "c_3"]
    (repo / "deep" / "er").mkdir(parents=True)
    assert fast.task_names(repo / "deep" / "er") == expected


def test_task_names_never_repairs_or_complains(repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert fast.task_names(tmp_path) == []  # not a repo
    assert fast.task_names(tmp_path / "missing") == []
    assert fast.task_names(repo) == []  # no registry yet
    root = registry_root(repo)
    # tasks.json missing but the journal knows a task: Store.load() would rebuild and write; completion doesn't.
    add_tasks(repo, ["alpha"])
    (root / store.TASKS_FILE).unlink()
    store.Store(root).journal("new", task=store.task_to_dict(_task("beta")))
    before = sorted(p.name for p in root.iterdir())
    assert fast.task_names(repo) == []
    # A corrupt file stays as it is, for the next real mux command to quarantine and rebuild.
    (root / store.TASKS_FILE).write_bytes(b'{"version": 1, "tasks": ')
    assert fast.task_names(repo) == []
    assert (root / store.TASKS_FILE).read_bytes() == b'{"version": 1, "tasks": '
    (root / store.TASKS_FILE).write_text('["not", "an", "object"]')
    assert fast.task_names(repo) == []
    assert sorted(p.name for p in root.iterdir()) == sorted([*before, store.TASKS_FILE])
    # Names that break the naming rule cannot reach the shell's word list.
    (root / store.TASKS_FILE).write_text('{"version": 1, "tasks": {"ok": {}, "two words": {}, "x\\ny": {}, "-a": {}}}')
    assert fast.task_names(repo) == ["ok"]
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_task_names_without_git(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_tasks(repo, TASKS)
    with monkeypatch.context() as patch:
        patch.setenv("PATH", str(repo / "nowhere"))
        assert fast.task_names(repo) == []


def test_mirrored_constants_match_their_sources() -> None:
    # completion/fast.py copies these to keep the registry and naming modules off the fast path: no drifting apart.
    assert fast._TASKS_FILE == store.TASKS_FILE
    assert fast._TASK_NAME.pattern == naming._NAME.pattern


def _task(name: str) -> Task:
    return Task(
        name=name,
        agent="fake",
        command=("true",),
        base="main",
        branch=f"mux/{name}",
        worktree="/nowhere",
        session="s",
        window="@1",
        created="2024-01-01T00:00:00Z",
        port=0,
    )
