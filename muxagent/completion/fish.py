"""The fish completion script: one `complete` line per option and argument, with helper functions that find
the command and the argument under the cursor."""

from __future__ import annotations

from muxagent.completion.fast import HOSTS_COMMAND, TASKS_COMMAND
from muxagent.completion.spec import CommandSpec, CompletionSpec, OptionSpec, Value, header, ident, valued_flags


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _value(value: Value, fn: str) -> str:
    if value.kind in ("task", "host"):
        return f" -a '({fn}_{value.kind}s)'"
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
        f"# {fn}_sub: the command of the group command on the line so far (`{prog} host rm`: rm); fail if none yet.",
        f"function {fn}_sub",
        "    set -l words (string match -v -- '-*' (commandline -opc))",
        "    test (count $words) -ge 3; or return 1",
        "    echo $words[3]",
        "end",
        "",
        f"# {fn}_using_sub GROUP COMMAND: is `GROUP COMMAND` the {prog} command on the line?",
        f"function {fn}_using_sub",
        f"    {fn}_using $argv[1]; or return 1",
        f"    set -l sub ({fn}_sub); or return 1",
        '    test "$sub" = $argv[2]',
        "end",
        "",
        f"function {fn}_tasks",
        f"    command {prog} {TASKS_COMMAND} 2>/dev/null",
        "end",
        "",
        f"function {fn}_hosts",
        f"    command {prog} {HOSTS_COMMAND} 2>/dev/null",
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
        if not command.commands:
            lines += _command_lines(command, f"{fn}_using {command.name}", command.name, 0, fn, prog)
            continue
        choosing = f"{fn}_using {command.name}; and not {fn}_sub"
        lines += [_option(choosing, option, fn, prog) for option in command.options]
        for sub in command.commands:
            lines.append(
                f"complete -c {prog} -n {_quote(choosing)} -a {sub.name}"
                + (f" -d {_quote(sub.help)}" if sub.help else "")
            )
        for sub in command.commands:
            lines += _command_lines(sub, f"{fn}_using_sub {command.name} {sub.name}", command.name, 1, fn, prog)
    return "\n".join(head + lines) + "\n"


def _command_lines(command: CommandSpec, using: str, word: str, first: int, fn: str, prog: str) -> list[str]:
    """The `complete` lines of `command`'s options and arguments, while `using` holds; its arguments are the
    positionals of `word` (the command on the line) from number `first` on (1 after a group's command)."""
    lines = [_option(using, option, fn, prog) for option in command.options]
    valued = "".join(f" {flag}" for flag, _ in valued_flags(command.options))
    for index, arg in enumerate(command.args, start=first):
        if arg.value.kind == "none":
            continue
        condition = f"{fn}_arg {word} {'ge' if arg.variadic else 'eq'} {index}{valued}"
        if first:
            condition += f"; and {using}"
        if arg.value.kind in ("file", "dir"):
            lines.append(f"complete -c {prog} -n {_quote(condition)} -F")
        else:
            lines.append(f"complete -c {prog} -n {_quote(condition)}{_value(arg.value, fn)}")
    return lines
