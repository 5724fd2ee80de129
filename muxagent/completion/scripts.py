"""Shell completion: scripts for bash, zsh and fish generated from the CLI, and the fast `mux _tasks` entry.

The scripts are static (commands, options, what each argument holds); only task names are live, and the
shells get them by running `mux _tasks` on every TAB. That path (`main_fast`, `task_names`) runs before the
CLI is imported, so it must stay cheap: this module imports nothing at the top but a few small stdlib modules
(no typer, libtmux, GitPython or rich, not even dataclasses or pathlib), runs one `git rev-parse`, and reads
`tasks.json` itself. Only `spec_from_app` and the regeneration entry import the CLI side.

Regenerate the checked-in scripts with `python -m muxagent.completion.scripts` after changing a command or option.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from muxagent.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    import typer

SHELLS = ("bash", "zsh", "fish")
# Where `python -m muxagent.completion.scripts` writes each script, under the checkout's completions/ folder. `_mux` is
# the name zsh's autoloader wants on $fpath.
FILES = {"bash": "mux.bash", "zsh": "_mux", "fish": "mux.fish"}
TASKS_COMMAND = "_tasks"

# Mirrors of store.py and gitops.py constants (tests pin them equal): importing those modules would cost the
# fast path about 30 ms of imports (dataclasses, concurrent.futures, logging, tempfile, the model).
_STORE_DIR = "mux"
_TASKS_FILE = "tasks.json"
_REPO_ENV = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)
# The task name rule of naming.py: a name from a hand-edited or foreign registry that breaks it could carry
# spaces, newlines or glob characters into the shell's completion list, so it is left out.
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A TAB must never hang on a stuck filesystem or git.
_GIT_TIMEOUT = 2.0

# Words that end up unquoted inside the generated scripts; spec_from_app output is checked against them.
_SAFE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_SAFE_FLAG = re.compile(r"--?[A-Za-z0-9][A-Za-z0-9_-]*")

# Commands whose NAME argument names a task that does not exist (yet, or any more): offering the live tasks
# there would only offer names the command refuses.
_NEW_NAME_COMMANDS = frozenset({"new", "restore"})


# --- the spec: what the scripts know about the CLI ----------------------------------------------------------

ValueKind = Literal["none", "task", "file", "dir", "choice"]


class Value(NamedTuple):
    """What an argument or an option's value holds, i.e. what TAB offers there."""

    kind: ValueKind
    choices: tuple[str, ...] = ()


NO_VALUE = Value("none")


class OptionSpec(NamedTuple):
    flags: tuple[str, ...]  # e.g. ("-a", "--agent")
    help: str
    value: Value | None  # None for a flag that takes no value


class ArgSpec(NamedTuple):
    name: str
    value: Value
    variadic: bool  # takes every remaining positional word (NAME...)


class CommandSpec(NamedTuple):
    name: str
    help: str
    options: tuple[OptionSpec, ...]
    args: tuple[ArgSpec, ...]


class CompletionSpec(NamedTuple):
    prog: str
    options: tuple[OptionSpec, ...]  # options before the command, e.g. --help
    commands: tuple[CommandSpec, ...]  # visible commands, in the CLI's order


def spec_from_app(app: typer.Typer, prog: str = "mux") -> CompletionSpec:
    """Read the commands, options and arguments of a typer app into a CompletionSpec."""
    import typer.main

    # typer's command objects are typed as click's, but typer >= 0.2x ships its own click-like classes; both
    # have the attributes read here, so they are read as Any.
    group: Any = typer.main.get_command(app)
    help_names = tuple(group.context_settings.get("help_option_names", ["--help"]))
    commands = []
    for name, command in group.commands.items():
        if command.hidden:
            continue
        help_flags = tuple(command.context_settings.get("help_option_names", help_names))
        commands.append(
            CommandSpec(
                name=name,
                help=_first_line(command.short_help or command.help),
                options=_options(command, help_flags),
                args=tuple(_argument(name, p) for p in command.params if p.param_type_name == "argument"),
            )
        )
    spec = CompletionSpec(prog=prog, options=_options(group, help_names), commands=tuple(commands))
    _check_words(spec)
    return spec


def _options(command: Any, help_flags: tuple[str, ...]) -> tuple[OptionSpec, ...]:
    options = [
        OptionSpec(
            flags=(*p.opts, *p.secondary_opts),
            help=_first_line(p.help),
            value=None if p.is_flag or p.count else _value_of(p),
        )
        for p in command.params
        if p.param_type_name == "option" and not p.hidden
    ]
    if command.add_help_option and help_flags:
        options.append(OptionSpec(flags=help_flags, help="Show the help and exit", value=None))
    return tuple(options)


def _argument(command: str, param: Any) -> ArgSpec:
    metavar = (param.metavar or param.name or "").upper()
    value = _value_of(param)
    if (
        value.kind == "none"
        and command not in _NEW_NAME_COMMANDS
        and (metavar.startswith("NAME") or param.name in ("name", "names"))
    ):
        value = Value("task")
    elif value.kind == "none" and metavar == "SHELL":
        # `mux completion SHELL` takes a plain str, so that render() owns the one message for an unknown shell.
        value = Value("choice", SHELLS)
    return ArgSpec(name=(param.name or "arg").lower(), value=value, variadic=param.nargs == -1)


def _value_of(param: Any) -> Value:
    kind: Any = getattr(param, "type", None)  # click's parameter types (typer vendors click from 0.27)
    choices = getattr(kind, "choices", None)
    if choices is not None:
        return Value("choice", tuple(str(getattr(c, "value", c)) for c in choices))
    if type(kind).__name__ == "File":
        return Value("file")
    if hasattr(kind, "dir_okay") and hasattr(kind, "file_okay"):  # click's Path, typer's TyperPath
        return Value("dir" if kind.dir_okay and not kind.file_okay else "file")
    return NO_VALUE


def _first_line(text: str | None) -> str:
    line = next((line.strip() for line in (text or "").splitlines() if line.strip()), "")
    return line.removesuffix(".")


def _check_words(spec: CompletionSpec) -> None:
    # Command names, flags and choices are written unquoted into case patterns and word lists.
    for command in spec.commands:
        if not _SAFE_WORD.fullmatch(command.name):
            raise ValueError(f"command name {command.name!r} cannot go into a completion script")
    options = [o for c in spec.commands for o in c.options] + list(spec.options)
    for option in options:
        for flag in option.flags:
            if not _SAFE_FLAG.fullmatch(flag):
                raise ValueError(f"option {flag!r} cannot go into a completion script")
    values = [o.value for o in options if o.value] + [a.value for c in spec.commands for a in c.args]
    for value in values:
        for choice in value.choices:
            if not _SAFE_WORD.fullmatch(choice):
                raise ValueError(f"choice {choice!r} cannot go into a completion script")


# --- rendering ----------------------------------------------------------------------------------------------


def render(shell: str, spec: CompletionSpec) -> str:
    """The completion script for `shell` (bash, zsh or fish)."""
    if shell == "bash":
        return _bash(spec)
    if shell == "zsh":
        return _zsh(spec)
    if shell == "fish":
        return _fish(spec)
    raise UsageError(f"unknown shell {shell!r}: choose one of {', '.join(SHELLS)}")


def _header(shell: str, spec: CompletionSpec, install: Iterable[str]) -> list[str]:
    lines = [f"# generated by `{spec.prog} completion {shell}`; do not edit."]
    lines += [f"# {line}" for line in install]
    lines.append(f"# Task names come from `{spec.prog} {TASKS_COMMAND}`, which answers before the CLI is even loaded.")
    return lines


def _valued(options: Iterable[OptionSpec]) -> list[tuple[str, Value]]:
    return [(flag, o.value) for o in options if o.value is not None for flag in o.flags]


def _bash_kind(value: Value) -> str:
    return f"choice={'|'.join(value.choices)}" if value.kind == "choice" else value.kind


def _bash_data(options: tuple[OptionSpec, ...], args: tuple[ArgSpec, ...]) -> str:
    # The per-command facts the generic code in _prog reads: its options, the ones that take a value (with what
    # the value holds, as " FLAG=KIND "), the positional arguments' kinds, and the kind of any extra ones.
    flags = " ".join(flag for o in options for flag in o.flags)
    valued = "".join(f" {flag}={_bash_kind(value)}" for flag, value in _valued(options))
    fixed = [a for a in args if not a.variadic]
    rest = next((_bash_kind(a.value) for a in args if a.variadic), "")
    kinds = " ".join(_bash_kind(a.value) for a in fixed)
    return f"opts='{flags}' valued='{valued} ' args='{kinds}' rest='{rest}'"


def _bash(spec: CompletionSpec) -> str:
    fn = f"_{_ident(spec.prog)}"
    names = " ".join(c.name for c in spec.commands)
    cases = "\n".join(f"                {c.name}) {_bash_data(c.options, c.args)} ;;" for c in spec.commands)
    head = _header(
        "bash",
        spec,
        [
            f"Load it from ~/.bashrc with: source <({spec.prog} completion bash)",
            f"or save it as ~/.local/share/bash-completion/completions/{spec.prog}",
        ],
    )
    body = f"""
{fn}_tasks() {{
    local prog=${{COMP_WORDS[0]}}
    # Ask the {spec.prog} being completed if it was typed as a path (./venv/bin/{spec.prog}), else the one on PATH.
    [[ $prog == */* && -x $prog ]] || prog={spec.prog}
    command "$prog" {TASKS_COMMAND} 2>/dev/null
}}

# {fn}_add KIND: add the candidates for a word of KIND (task, file, dir, none, choice=A|B) that start with $cur.
{fn}_add() {{
    local word
    case $1 in
        task)
            while IFS= read -r word; do
                [[ $word == "$cur"* ]] && COMPREPLY+=("$word")
            done < <({fn}_tasks)
            ;;
        file)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            ;;
        dir)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -d -- "$cur")
            ;;
        choice=*)
            local IFS='|'
            for word in ${{1#choice=}}; do
                [[ $word == "$cur"* ]] && COMPREPLY+=("$word")
            done
            ;;
    esac
}}

{fn}() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local cmd= {_bash_data(spec.options, ())}
    local i word n=0 dd= kind opt=
    COMPREPLY=()
    # Walk the words before the cursor: find the command, skip options and their values, count positionals.
    for (( i = 1; i < COMP_CWORD; i++ )); do
        word=${{COMP_WORDS[i]}}
        if [[ -z $dd && $word == -- ]]; then
            dd=1
        elif [[ -z $dd && $word == -* ]]; then
            if [[ $valued == *" $word="* ]]; then
                # The value is the next word; bash splits --opt=value into three words at the '='.
                [[ ${{COMP_WORDS[i+1]}} == = ]] && (( i += 1 ))
                (( i += 1 ))
            fi
        elif [[ -z $cmd ]]; then
            cmd=$word
            case $cmd in
{cases}
                *) return 0 ;;
            esac
        else
            n=$(( n + 1 ))
        fi
    done
    # An option's value: `--opt <TAB>`, `--opt=<TAB>` (cur is '=') or `--opt=x<TAB>` (prev is '=').
    if [[ -z $dd ]]; then
        if [[ $cur == = && $prev == -* ]]; then
            opt=$prev cur=
        elif [[ $prev == = ]] && (( COMP_CWORD > 1 )); then
            opt=${{COMP_WORDS[COMP_CWORD-2]}}
        elif [[ $prev == -* ]]; then
            opt=$prev
        fi
        if [[ -n $opt && $valued == *" $opt="* ]]; then
            kind=${{valued#*" $opt="}}
            {fn}_add "${{kind%% *}}"
            return 0
        fi
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$opts" -- "$cur"))
            return 0
        fi
    fi
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W '{names}' -- "$cur"))
        return 0
    fi
    local kinds=($args)
    if (( n < ${{#kinds[@]}} )); then kind=${{kinds[n]}}; else kind=$rest; fi
    [[ -n $kind ]] && {fn}_add "$kind"
    return 0
}}

complete -F {fn} {spec.prog}
"""
    return "\n".join(head) + "\n" + body


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_action(value: Value, fn: str) -> str:
    if value.kind == "task":
        return f"{fn}_tasks"
    if value.kind == "file":
        return "_files"
    if value.kind == "dir":
        return "_files -/"
    if value.kind == "choice":
        return f"({' '.join(value.choices)})"
    return " "  # a message and no candidates


def _zsh_describe(text: str) -> str:
    # Inside an _arguments spec the description is bracketed and the parts are ':'-separated.
    return re.sub(r"([\\\[\]:])", r"\\\1", text)


def _zsh_specs(command: CommandSpec | None, options: tuple[OptionSpec, ...], fn: str) -> list[str]:
    specs = []
    for option in options:
        group = f"({' '.join(option.flags)})" if len(option.flags) > 1 else ""
        if "--help" in option.flags:
            group = "(- *)"  # after --help nothing else matters
        value = ""
        if option.value is not None:
            label = option.flags[-1].lstrip("-")
            value = f":{label}:{_zsh_action(option.value, fn)}"
        for flag in option.flags:
            # `--opt=` / `-o+`: the value may be the next word, or follow in the same word (after '=' for a long
            # option), as click accepts.
            name = flag if not value else f"{flag}=" if flag.startswith("--") else f"{flag}+"
            specs.append(_zsh_quote(f"{group}{name}[{_zsh_describe(option.help)}]{value}"))
    if command is not None:
        for position, arg in enumerate(command.args, start=1):
            where = "*" if arg.variadic else str(position)
            specs.append(_zsh_quote(f"{where}:{arg.name}:{_zsh_action(arg.value, fn)}"))
    return specs


def _zsh(spec: CompletionSpec) -> str:
    fn = f"_{_ident(spec.prog)}"
    head = _header(
        "zsh",
        spec,
        [
            f"Save it as {fn} in a directory on $fpath before compinit runs,",
            f"or load it after compinit with: source <({spec.prog} completion zsh)",
        ],
    )
    continuation = " \\\n        "
    root_specs = [*_zsh_specs(None, spec.options, fn), "'1:command:->command'", "'*::argument:->argument'"]
    described = "\n".join(f"        {_zsh_quote(c.name + ':' + c.help)}" for c in spec.commands)
    cases = []
    for command in spec.commands:
        specs = _zsh_specs(command, command.options, fn)
        cases.append(
            f"        {command.name})\n"
            f"          _arguments{continuation}  " + (continuation + "  ").join(specs) + " && ret=0\n"
            "          ;;"
        )
    body = f"""
{fn}_tasks() {{
  local -a tasks
  tasks=(${{(f)"$(_call_program tasks command {spec.prog} {TASKS_COMMAND} 2>/dev/null)"}})
  _wanted tasks expl 'task' compadd -a tasks
}}

{fn}() {{
  local curcontext=$curcontext state line ret=1
  typeset -A opt_args
  _arguments -C{continuation}{continuation.join(root_specs)} && ret=0
  case $state in
    command)
      local -a commands
      commands=(
{described}
      )
      _describe -t commands '{spec.prog} command' commands && ret=0
      ;;
    argument)
      curcontext=${{curcontext%:*:*}}:{spec.prog}-$words[1]:
      case $words[1] in
{chr(10).join(cases)}
      esac
      ;;
  esac
  return ret
}}

# Autoloaded from $fpath this file is the body of {fn}: define, then complete; sourced, register.
if [[ $funcstack[1] == {fn} ]]; then
  {fn} "$@"
else
  compdef {fn} {spec.prog}
fi
"""
    # zsh's autoloader reads the #compdef line only if it is the very first line.
    return f"#compdef {spec.prog}\n" + "\n".join(head) + "\n" + body


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_value(value: Value, fn: str) -> str:
    if value.kind == "task":
        return f" -a '({fn}_tasks)'"
    if value.kind == "choice":
        return f" -a {_fish_quote(' '.join(value.choices))}"
    return ""


def _fish_option(condition: str, option: OptionSpec, fn: str, prog: str) -> str:
    words = [f"complete -c {prog} -n {_fish_quote(condition)}"]
    for flag in option.flags:
        if flag.startswith("--"):
            words.append(f"-l {flag[2:]}")
        elif len(flag) == 2:
            words.append(f"-s {flag[1]}")
        else:
            words.append(f"-o {flag[1:]}")
    if option.value is not None:
        # -r: takes a value; -F: the value is a file name; -x (-r -f): it is not.
        words.append("-r -F" if option.value.kind in ("file", "dir") else "-x")
        words.append(_fish_value(option.value, fn).strip())
    if option.help:
        words.append(f"-d {_fish_quote(option.help)}")
    return " ".join(w for w in words if w)


def _fish(spec: CompletionSpec) -> str:
    fn = f"__{_ident(spec.prog)}"
    prog = spec.prog
    head = _header(
        "fish",
        spec,
        [
            f"Save it as ~/.config/fish/completions/{prog}.fish, or load it with: {prog} completion fish | source",
        ],
    )
    root_valued = " ".join(flag for flag, _ in _valued(spec.options))
    lines = [
        "",
        f"# {fn}_command: print the {prog} command on the line so far; fail if none was typed yet.",
        f"function {fn}_command",
        "    set -l tokens (commandline -opc)",
        "    set -e tokens[1]",
        "    set -l skip 0",
        "    for token in $tokens",
        "        if test $skip = 1",
        "            set skip 0",
        *([f"        else if contains -- $token {root_valued}", "            set skip 1"] if root_valued else []),
        "        else if not string match -q -- '-*' $token",
        "            echo $token",
        "            return 0",
        "        end",
        "    end",
        "    return 1",
        "end",
        "",
        f"# {fn}_using COMMAND: is COMMAND the {prog} command on the line?",
        f"function {fn}_using",
        f"    set -l command ({fn}_command); or return 1",
        "    test $command = $argv[1]",
        "end",
        "",
        f"# {fn}_arg COMMAND eq|ge N VALUED...: is the cursor on COMMAND's positional argument N (0 is the first),",
        "# or on N or a later one? VALUED are COMMAND's options that take a value: their values are no positionals.",
        f"function {fn}_arg",
        f"    {fn}_using $argv[1]; or return 1",
        "    set -l tokens (commandline -opc)",
        "    set -l n -1",
        "    set -l skip 0",
        "    set -l dd 0",
        "    for token in $tokens",
        "        if test $skip = 1",
        "            set skip 0",
        "        else if test $dd = 0; and test $token = --",
        "            set dd 1",
        "        else if test $dd = 0; and contains -- $token $argv[4..-1]",
        "            set skip 1",
        "        else if test $dd = 1; or not string match -q -- '-*' $token",
        "            set n (math $n + 1)",
        "        end",
        "    end",
        "    # n counted the program and the command too; a value still due for an option is no positional.",
        "    test $skip = 0; and test (math $n - 1) -$argv[2] $argv[3]",
        "end",
        "",
        f"function {fn}_tasks",
        f"    command {prog} {TASKS_COMMAND} 2>/dev/null",
        "end",
        "",
        f"complete -c {prog} -f",
    ]
    for option in spec.options:
        lines.append(_fish_option(f"not {fn}_command", option, fn, prog))
    for command in spec.commands:
        lines.append(
            f"complete -c {prog} -n {_fish_quote(f'not {fn}_command')} -a {command.name}"
            + (f" -d {_fish_quote(command.help)}" if command.help else "")
        )
    for command in spec.commands:
        lines.append("")
        for option in command.options:
            lines.append(_fish_option(f"{fn}_using {command.name}", option, fn, prog))
        valued = "".join(f" {flag}" for flag, _ in _valued(command.options))
        for index, arg in enumerate(command.args):
            if arg.value.kind == "none":
                continue
            condition = f"{fn}_arg {command.name} {'ge' if arg.variadic else 'eq'} {index}{valued}"
            if arg.value.kind in ("file", "dir"):
                lines.append(f"complete -c {prog} -n {_fish_quote(condition)} -F")
            else:
                lines.append(f"complete -c {prog} -n {_fish_quote(condition)}{_fish_value(arg.value, fn)}")
    return "\n".join(head + lines) + "\n"


def _ident(prog: str) -> str:
    return re.sub(r"\W", "_", prog)


# --- the fast path: live task names -------------------------------------------------------------------------


def task_names(cwd: str | os.PathLike[str]) -> list[str]:
    """The names of the repo's tasks, sorted; [] when there is no repo, no registry, or anything fails.

    Read-only and quiet: it never repairs a damaged registry (the next real mux command does) and never writes
    to stderr, since its output lands in the middle of the user's command line.
    """
    try:
        root = _common_dir(cwd)
        if root is None:
            return []
        with open(os.path.join(root, _STORE_DIR, _TASKS_FILE), "rb") as file:
            doc = json.loads(file.read())
        tasks = doc.get("tasks") if isinstance(doc, dict) else None
        if not isinstance(tasks, dict):
            return []
        return sorted(name for name in tasks if _TASK_NAME.fullmatch(name) and ".." not in name)
    except Exception:  # completion offers nothing rather than an error in the middle of a command line
        return []


def _common_dir(cwd: str | os.PathLike[str]) -> str | None:
    # Like gitops.discover, without git's variables a hook may have exported, so that completion sees the repo
    # every mux command would see. Only the common dir is needed: one git call even inside a linked worktree.
    env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
    proc = subprocess.run(
        ["git", "--no-optional-locks", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT,
    )
    path = proc.stdout.strip()
    return path if proc.returncode == 0 and path else None


def main_fast(argv: Sequence[str]) -> bool:
    """Answer `mux _tasks` (one task name a line) and return True; for any other command return False.

    Called first thing by the `mux` entry point, before the CLI and its libraries are imported.
    """
    if list(argv[1:2]) != [TASKS_COMMAND]:
        return False
    try:
        names = task_names(os.getcwd())
    except OSError:  # the current directory was deleted
        names = []
    try:
        sys.stdout.write("".join(f"{name}\n" for name in names))
        sys.stdout.flush()
    except OSError:
        # The shell stopped reading (a pipe closed early): point stdout at /dev/null so that the interpreter's
        # final flush does not print a traceback either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return True


# --- regeneration -------------------------------------------------------------------------------------------


def write_scripts(directory: Path, spec: CompletionSpec) -> list[Path]:
    """Write the three scripts into `directory`; return the files whose content changed."""
    changed = []
    for shell in SHELLS:
        path = directory / FILES[shell]
        text = render(shell, spec)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8", newline="\n")
            changed.append(path)
    return changed


def _regenerate(argv: Sequence[str]) -> int:
    from pathlib import Path

    from muxagent.cli import app

    # Default: the completions/ folder of the checkout this module lives in.
    directory = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "completions"
    if not directory.is_dir():
        print(f"no such directory: {directory} (run this from a mux checkout, or name the folder)", file=sys.stderr)
        return 1
    changed = write_scripts(directory, spec_from_app(app))
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"{directory}: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(_regenerate(sys.argv[1:]))
