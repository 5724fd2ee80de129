"""The completion scripts by shell, and the checked-in copies under the checkout's completions/ folder.

`mux completion SHELL` prints one; `python -m muxagent _write-completions` rewrites the checked-in copies after a
command or option changed. Both take the spec from cli.py, which alone knows the app: nothing here imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from muxagent.completion import bash, fish, zsh
from muxagent.completion.spec import SHELLS, CompletionSpec
from muxagent.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

# The file each script is checked in as; `_mux` is the name zsh's autoloader wants on $fpath.
FILES = {"bash": "mux.bash", "zsh": "_mux", "fish": "mux.fish"}


def render(shell: str, spec: CompletionSpec) -> str:
    """The completion script for `shell` (bash, zsh or fish)."""
    if shell == "bash":
        return bash.script(spec)
    if shell == "zsh":
        return zsh.script(spec)
    if shell == "fish":
        return fish.script(spec)
    raise UsageError(f"unknown shell {shell!r}: choose one of {', '.join(SHELLS)}")


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
