"""Rules for task names, and the names mux derives from them (branch, tmux session)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from muxagent.errors import InvalidNameError, UsageError

MAX_NAME = 48
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
BRANCH_PREFIX = "mux/"


def validate_name(name: str) -> str:
    """Return the name if it is a valid task name, else raise with the rule it breaks."""
    if not name:
        raise InvalidNameError("task name is empty")
    if len(name) > MAX_NAME:
        raise InvalidNameError(f"task name is longer than {MAX_NAME} characters")
    if not _NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid task name {name!r}: use letters, digits, '-', '_' and '.', starting with a letter or digit"
        )
    # Both would make an invalid git ref for the branch mux/NAME.
    if ".." in name:
        raise InvalidNameError(f"invalid task name {name!r}: '..' is not allowed")
    if name.endswith((".", ".lock")):
        raise InvalidNameError(f"invalid task name {name!r}: it may not end with '.' or '.lock'")
    return name


def validate_prompt(text: str, what: str = "prompt") -> str:
    """Return the prompt (or commit message) if an agent and git can take it: UTF-8 text without NUL, else raise
    saying what is wrong.

    Arguments are decoded with surrogateescape, so a byte that is not UTF-8 arrives as a lone surrogate: it would
    reach the agent as garbage, and once made the monitor die delivering a queued prompt, which was then lost.
    """
    if "\0" in text:
        raise UsageError(f"the {what} holds a NUL byte (at character {text.index(chr(0))}), which no program can take")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        culprit = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise UsageError(
            f"the {what} is not UTF-8 text ({culprit} at character {exc.start}): convert it first,"
            " e.g. with `iconv -f latin1 -t utf-8`"
        ) from None
    return text


def branch_for(name: str) -> str:
    return BRANCH_PREFIX + name


def session_for(main: Path) -> str:
    """One tmux session per repository: readable, and unique even for two repos with the same folder name."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", main.name).strip("-")[:24] or "repo"
    # The path's bytes: a folder name that is not UTF-8 is held as surrogates, which str.encode() refuses.
    digest = hashlib.sha1(os.fsencode(main)).hexdigest()[:4]
    return f"mux-{slug}-{digest}"
