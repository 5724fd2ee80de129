"""What each task's worktree holds against its base, for `mux ls`: one `git status` per worktree when steady.

Line counts depend only on HEAD, the base's tip and the content of the uncommitted files (which the status
fingerprint names by path and stat data); ahead/behind only on the base and branch tips. Both are kept per task in
`<git-common-dir>/mux/changes.json` under the inputs they came from, so git diffs only a worktree that changed and
counts commits only when a tip moved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxagent.errors import MuxError
from muxagent.git import repository, worktree_status
from muxagent.git.repository import RepoPaths
from muxagent.git.worktree_status import Scan
from muxagent.model import Changes, Task
from muxagent.state import store

CACHE_FILE = "changes.json"
_CACHE_VERSION = 1
_WORKERS = 8


@dataclass(frozen=True)
class Work:
    """One task's changes plus what the conflict radar needs to know about its worktree."""

    changes: Changes
    scan: Scan
    tip: str  # the task branch's commit
    base_tip: str
    paths: frozenset[str]  # touched against merge-base(base, HEAD), committed or not, untracked included


def _base_commit(repo: RepoPaths, base: str, tips: Mapping[str, str]) -> str:
    """The commit `base` names, from `tips` (`repository.ref_tips`) when it is a branch or tag, as git would
    resolve it."""
    return tips_of(base, tips) or repository.resolve_commit(repo, base)


def tips_of(ref: str, tips: Mapping[str, str]) -> str | None:
    """The commit a branch or tag name has in `tips`, looked up as git would; None for any other name."""
    return next((tips[full] for full in (ref, f"refs/tags/{ref}", f"refs/heads/{ref}") if full in tips), None)


def inputs(task: Task, tips: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The tips a task's changes depend on (its branch's and its base's): while neither moved nor its worktree
    changed, its Work stays what it was."""
    return tips.get(f"refs/heads/{task.branch}"), tips_of(task.base, tips)


def read_many(
    repo: RepoPaths, root: Path, tasks: Sequence[Task], tips: Mapping[str, str], *, prune: bool = True
) -> dict[str, Work]:
    """Task name -> its Work, for the tasks whose worktree and branch git could read, in parallel.

    `tasks` is every task unless `prune` is False: then the cache keeps the entries of the tasks not asked about
    (the monitor reads the few sub-tasks that just finished, and `mux ls` must not lose the others' line counts).
    """
    if not tasks:
        return {}
    cache_path = root / CACHE_FILE
    kept = store.load_cache(cache_path, _CACHE_VERSION).get("tasks")
    cached: dict[str, Any] = kept if isinstance(kept, dict) else {}
    bases: dict[str, str | None] = {}
    for task in tasks:
        if task.base not in bases:
            try:
                bases[task.base] = _base_commit(repo, task.base, tips)
            except MuxError:
                bases[task.base] = None

    def one(task: Task) -> tuple[Work, dict[str, Any]] | None:
        base_tip, tip = bases[task.base], tips.get(f"refs/heads/{task.branch}")
        if base_tip is None or tip is None:
            return None
        entry = cached.get(task.name)
        try:
            return _read(Path(task.worktree), base_tip, tip, entry if isinstance(entry, dict) else {})
        except MuxError:
            return None

    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(tasks))) as pool:
        results = dict(zip([t.name for t in tasks], pool.map(one, tasks), strict=True))
    found = {name: result[0] for name, result in results.items() if result is not None}
    entries = {name: result[1] for name, result in results.items() if result is not None}
    if not prune:
        entries = {**cached, **entries}
    if entries != cached:  # entries of removed tasks go too
        store.save_cache(cache_path, _CACHE_VERSION, {"tasks": entries})
    return found


def _read(worktree: Path, base_tip: str, tip: str, entry: Mapping[str, Any]) -> tuple[Work, dict[str, Any]]:
    """The task's Work and the cache entry it leaves (the old one where its inputs did not change)."""
    found = worktree_status.scan(worktree)
    lines_key = f"{base_tip}:{found.fingerprint}"
    lines = _cached(entry, "lines_key", lines_key, ("added", "removed", "paths"))
    if lines is None:
        added, removed, paths = worktree_status.numstat(worktree, base_tip)
        added += sum(worktree_status.count_lines(worktree / rel) for rel in found.untracked)
        lines = {"added": added, "removed": removed, "paths": sorted({*paths, *found.untracked})}
    commits_key = f"{base_tip}:{tip}"
    commits = _cached(entry, "commits_key", commits_key, ("ahead", "behind"))
    if commits is None:
        ahead, behind = worktree_status.ahead_behind(worktree, base_tip, tip)
        commits = {"ahead": ahead, "behind": behind}
    changes = Changes(
        dirty_files=len(found.tracked) + len(found.untracked),
        added_lines=lines["added"],
        removed_lines=lines["removed"],
        ahead=commits["ahead"],
        behind=commits["behind"],
    )
    work = Work(changes, found, tip, base_tip, frozenset(lines["paths"]))
    return work, {"lines_key": lines_key, **lines, "commits_key": commits_key, **commits}


def _cached(entry: Mapping[str, Any], key_name: str, key: str, names: tuple[str, ...]) -> dict[str, Any] | None:
    """The values `names` from a cache entry made from the same inputs (`key`), if it is whole."""
    if entry.get(key_name) != key:
        return None
    values = {name: entry.get(name) for name in names}
    return values if all(_well_formed(name, value) for name, value in values.items()) else None


def _well_formed(name: str, value: object) -> bool:
    if name == "paths":
        return isinstance(value, list) and all(isinstance(path, str) for path in value)
    return isinstance(value, int)
