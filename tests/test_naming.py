from __future__ import annotations

from pathlib import Path

import pytest

from muxagent.errors import InvalidNameError
from muxagent.naming import session_for, validate_name

BAD_NAMES = [
    "",
    "has space",
    "a/b",
    "..",
    "a..b",
    "-lead",
    "_lead",
    "#(touch x)",
    "$(id)",
    "x" * 49,
    "foo.lock",
    "end.",
    "tab\tname",
    "new\nline",
    "naïve",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name(name)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["a", "fix-login", "v1.2_x", "A" * 48, "9lives"])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


def test_session_names_differ_for_same_folder_name_and_are_tmux_safe() -> None:
    one, two = session_for(Path("/a/my.repo x")), session_for(Path("/b/my.repo x"))
    assert one != two
    assert all(ch not in one for ch in ".: #")
