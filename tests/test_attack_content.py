"""What recovery snapshots, lost-work checks and merges hold, whatever the worktree's content (issue 10).

Promises held here:
- an ignored file counts as a rebuildable cache only inside a folder that is itself ignored and named like one;
- a recovery snapshot holds a file's exact bytes (no eol conversion, no clean filter) and restore writes them back;
- in a sparse checkout, work outside the sparse cone is merged and saved like any other;
- git's errors are quoted by their error line, not by the progress line before it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git, run_mux
from merge_helpers import commit_file, start

pytestmark = pytest.mark.usefixtures("fake_profile")


def recovery_ref(out: str) -> str:
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("recovery ref: "))


def commit_with_ignore_rule(repo: Path, pattern: str, tracked: str) -> None:
    (repo / ".gitignore").write_text(pattern + "\n")
    commit_file(repo, tracked, "tracked\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", f"ignore {pattern}")


def test_rm_keeps_an_ignored_file_inside_a_tracked_build_folder(repo: Path) -> None:
    commit_with_ignore_rule(repo, "*.local", "build/release.sh")
    worktree = start(repo, "a")
    (worktree / "build" / "signing.local").write_text("key\n")
    refused = run_mux("rm", "a", cwd=repo, check=False)
    assert refused.returncode == 1 and "build/signing.local" in refused.stderr
    ref = recovery_ref(run_mux("rm", "--force", "a", cwd=repo).stdout)
    assert git(repo, "show", f"{ref}:build/signing.local") == "key\n"


def test_an_ignored_cache_folder_inside_a_tracked_folder_is_still_a_cache(repo: Path) -> None:
    commit_with_ignore_rule(repo, "node_modules/", "web/index.js")
    worktree = start(repo, "b")
    (worktree / "web" / "node_modules" / "left-pad").mkdir(parents=True)
    (worktree / "web" / "node_modules" / "left-pad" / "index.js").write_text("pad\n")
    run_mux("rm", "b", cwd=repo)
    assert not worktree.exists()
