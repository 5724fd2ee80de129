"""The fish completion script: one `complete` line per option and argument, with helper functions that find
the command and the argument under the cursor."""

from __future__ import annotations

from muxagent.completion.fast import TASKS_COMMAND
from muxagent.completion.spec import CompletionSpec, OptionSpec, Value, header, ident, valued_flags


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _value(value: Value, fn: str) -> str:
    if value.kind == "task":
        return f" -a '({fn}_tasks)'"
    if value.kind == "choice":
        return f" -a {_quote(' '.join(value.choices))}"
    return ""


def _option(condition: str, option: OptionSpec, fn: str, prog: str) -> str:
    words = [f"complete -c {prog} -n {_quote(condition)}"]
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
        words.append(_value(option.value, fn).strip())
    if option.help:
        words.append(f"-d {_quote(option.help)}")
    return " ".join(w for w in words if w)


def script(spec: CompletionSpec) -> str:
    fn = f"__{ident(spec.prog)}"
    prog = spec.prog
    head = header(
        "fish",
        spec,
        [
            f"Save it as ~/.config/fish/completions/{prog}.fish, or load it with: {prog} completion fish | source",
        ],
    )
    root_valued = " ".join(flag for flag, _ in valued_flags(spec.options))
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
        lines.append(_option(f"not {fn}_command", option, fn, prog))
    for command in spec.commands:
        lines.append(
            f"complete -c {prog} -n {_quote(f'not {fn}_command')} -a {command.name}"
            + (f" -d {_quote(command.help)}" if command.help else "")
        )
    for command in spec.commands:
        lines.append("")
        for option in command.options:
            lines.append(_option(f"{fn}_using {command.name}", option, fn, prog))
        valued = "".join(f" {flag}" for flag, _ in valued_flags(command.options))
        for index, arg in enumerate(command.args):
            if arg.value.kind == "none":
                continue
            condition = f"{fn}_arg {command.name} {'ge' if arg.variadic else 'eq'} {index}{valued}"
            if arg.value.kind in ("file", "dir"):
                lines.append(f"complete -c {prog} -n {_quote(condition)} -F")
            else:
                lines.append(f"complete -c {prog} -n {_quote(condition)}{_value(arg.value, fn)}")
    return "\n".join(head + lines) + "\n"
