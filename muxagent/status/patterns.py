"""Screen patterns (profiles' `[status]`, `trust_choice`, an untrusted `.mux.toml`) run by RE2, in linear time.

Why RE2 (google-re2) and not Python's `re`: a backtracking engine lets one pattern stall mux. With `re`,
`(?:.|[^\\n])*ZZZ` took 2.8 ms on a 14-character line, 178 ms on 20 and doubles with every character, so `mux ls`,
`mux wait`, the status bar's `mux status-line` and the monitor spun at 100% of a core forever on a screen of
any real size. RE2 runs every pattern it accepts in time linear in the screen: the same pattern takes 0.07 ms
on a 5 KB screen. What it cannot run that way (backreferences, lookaround) it refuses when the pattern is
loaded, so `_check_status` in config.py turns it into one line naming the pattern.
Why not the `regex` package's per-match timeout: it imports in ~21 ms against RE2's ~6 ms (the `mux ls` and
`mux status-line` path loads every profile), searches slower (4.4 us against 3.5 us a pattern on a 5 KB
screen, `re` 2.8 us), and a timeout only bounds the stall: every `ls` and every monitor tick would pay it
again for each hostile pattern and task. Measured on a 2-core x86_64 machine, Python 3.11, google-re2 1.1.

Linear is not free: a pattern's cost grows with its compiled size too (`[\\s\\S]{1000}Z` compiles to 7,005
instructions and takes 26 ms on a 10 KB screen), so a pattern may compile to at most MAX_PROGRAM instructions
(~2.5 ms at worst; the shipped ones compile to 59 at most) and a list hold at most MAX_PATTERNS of them.

Patterns keep Python's syntax and `re.MULTILINE` meaning (`^` and `$` at every line); Python's `\\Z` (the end
of the text) is RE2's `\\z` and is rewritten so.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import re2

# Python's "\Z" is RE2's "\z" (RE2 has no "\Z"); an escaped backslash ("\\Z") is matched first and left alone.
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_MULTILINE = "(?m)"
MAX_PROGRAM = 1000
MAX_PATTERNS = 32


class PatternError(ValueError):
    """A pattern RE2 refuses: bad syntax, or a construct it cannot run in linear time."""


def check(pattern: str) -> None:
    """Raise PatternError, saying why, if the pattern cannot be searched."""
    _compiled(pattern)


def first_match(patterns: Sequence[str], text: str) -> str | None:
    """The first of the patterns found in the text."""
    return _first_match(tuple(patterns), text)


# The monitor asks the same few lists of the same screens twice a second (a quiet pane's screen is the same text
# until it draws): searching them again was a fifth of a quiet tick's CPU at 100 tasks. Bounded: 100 tasks ask
# about 500 (list, screen) pairs, each screen held once however many lists ask of it.
@functools.lru_cache(maxsize=1024)
def _first_match(patterns: tuple[str, ...], text: str) -> str | None:
    data = text.encode("utf-8", "replace")  # once for all patterns; RE2 searches UTF-8
    for pattern in patterns:
        if _compiled(pattern).search(data) is not None:
            return pattern
    return None


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print the pattern, escapes and all, on stderr itself
    try:
        compiled = re2.compile(_MULTILINE + _ESCAPE.sub(_to_re2, pattern), options)
    except re2.error as exc:
        raise PatternError(_reason(exc)) from None
    if compiled.programsize > MAX_PROGRAM:
        raise PatternError(
            f"compiles to {compiled.programsize} RE2 instructions, more than {MAX_PROGRAM}: "
            "every screen would pay for them (shorten its repetitions)"
        )
    return compiled


def _to_re2(escape: re.Match[str]) -> str:
    return r"\z" if escape.group(1) == "Z" else escape.group(0)


def _reason(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text = text.replace(_MULTILINE, "", 1)
    if any(f"perl operator: {look}" in text for look in ("(?=", "(?!", "(?<=", "(?<!")):
        return f"{text} (lookaround cannot run in linear time)"
    if text.startswith("invalid escape sequence: \\") and text[-1:].isdigit():
        return f"{text} (backreferences cannot run in linear time)"
    return text
