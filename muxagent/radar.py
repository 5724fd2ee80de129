"""Conflict radar: which tasks would conflict with their base or with each other, uncommitted work included.

Each task's state is a commit: its branch tip, or, when the worktree is dirty, a snapshot of the worktree made with a
scratch index (never the agent's index, never the stash). Snapshots have fixed dates, so the same content is the
same commit id, and results are cached by the pair of commit ids in `<git-common-dir>/mux/radar.json`: `mux ls`
only runs `git merge-tree` for pairs whose tips moved.

Also here, because `mux ls` needs it without importing the merge verbs: the "waiting: conflict" state of a task
whose `mux sync` stopped on a conflict.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path

from muxagent import gitops
from muxagent.errors import MuxError
from muxagent.model import Changes, State, Task, TaskStatus

CACHE_FILE = "radar.json"
SYNC_DIR = "sync"
_CACHE_VERSION = 1
# Enough for dozens of tasks; older pairs are dropped first (dicts keep insertion order).
_CACHE_LIMIT = 2000
_WORKERS = 8

Conflict = Mapping[str, object]


@dataclass(frozen=True)
class Item:
    name: str
    worktree: Path | None  # None when the worktree is gone: the branch tip stands for the task
    branch: str
    base: str
    dirty: bool


def sync_marker(root: Path, name: str) -> Path:
    """Written by `mux sync` when it leaves a conflict in the task's worktree for the agent."""
    return root / SYNC_DIR / name


def sync_override(root: Path, worktree: Path, name: str, status: TaskStatus) -> TaskStatus:
    """`waiting` with reason "conflict" while a conflict left by `mux sync` is unresolved in the worktree."""
    if status.state is State.MISSING or not sync_marker(root, name).exists():
        return status
    if gitops.in_progress(worktree) is None:
        return status
    return replace(status, state=State.WAITING, reason="conflict", exit_status=None)


def for_tasks(
    repo: gitops.RepoPaths, root: Path, tasks: Sequence[Task], changes: Mapping[str, Changes | None]
) -> dict[str, tuple[Conflict, ...]]:
    """conflicts() for the tasks whose changes could be read (`changes` tells which worktrees are dirty)."""
    items = []
    for task in tasks:
        found = changes.get(task.name)
        if found is not None:
            items.append(Item(task.name, Path(task.worktree), task.branch, task.base, found.dirty_files > 0))
    return conflicts(repo, root, items)


def conflicts(repo: gitops.RepoPaths, root: Path, items: Sequence[Item]) -> dict[str, tuple[Conflict, ...]]:
    """Task name -> [{"with": base or task name, "paths": [...]}, ...] for tasks that would conflict."""
    if not items:
        return {}
    cache = _load(root)
    tips = gitops.branch_tips(repo, [i.branch for i in items])
    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(items))) as pool:
        found_states = list(pool.map(lambda i: _state(i, tips.get(i.branch), cache.snapshots), items))
        states = {item.name: state for item, (state, _) in zip(items, found_states, strict=True)}
        new_snapshots = {fp: state for state, fp in found_states if fp is not None and state is not None}
        bases: dict[str, str | None] = {}
        for item in items:
            if item.base not in bases:
                bases[item.base] = _resolve(repo, item.base)
        # (name, other: its base or another task, whether other is a task, commit, other's commit)
        pairs: list[tuple[str, str, bool, str, str]] = []
        for item in items:
            state, base_tip = states[item.name], bases[item.base]
            if state is not None and base_tip is not None:
                pairs.append((item.name, item.base, False, state, base_tip))
        for a, b in combinations(items, 2):
            sa, sb = states[a.name], states[b.name]
            if a.base == b.base and sa is not None and sb is not None:
                pairs.append((a.name, b.name, True, sa, sb))
        todo = sorted({_key(p[3], p[4]) for p in pairs if _key(p[3], p[4]) not in cache.pairs})
        for key, paths in zip(todo, pool.map(lambda k: _merge(repo, k), todo), strict=True):
            if paths is not None:
                cache.pairs[key] = paths
    if todo or new_snapshots.keys() - cache.snapshots.keys():
        cache.snapshots.update(new_snapshots)
        _save(root, cache)
    found: dict[str, list[Conflict]] = {}
    for name, other, other_is_task, sa, sb in pairs:
        paths = cache.pairs.get(_key(sa, sb))
        if not paths:
            continue
        found.setdefault(name, []).append({"with": other, "paths": list(paths)})
        if other_is_task:  # both tasks of a pair show it
            found.setdefault(other, []).append({"with": name, "paths": list(paths)})
    return {name: tuple(items_) for name, items_ in found.items()}


def _state(item: Item, tip: str | None, snapshots: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(commit standing for the task's work, fingerprint of its worktree when that commit is a snapshot).

    A dirty worktree is snapshot only when its fingerprint (file names and stat data) is new: most `mux ls` runs
    then cost one `git status` per dirty task.
    """
    if tip is None:
        return None, None
    if not item.dirty or item.worktree is None or not item.worktree.is_dir():
        return tip, None
    try:
        head, branch, fingerprint = gitops.worktree_fingerprint(item.worktree)
        if branch != item.branch or head != tip:
            return tip, None  # detached or mid-rebase: what `mux merge` would take is the branch
        key = f"{tip}:{fingerprint}"
        known = snapshots.get(key)
        return (known or gitops.worktree_snapshot(item.worktree, tip)), key
    except MuxError:
        return tip, None


def _resolve(repo: gitops.RepoPaths, base: str) -> str | None:
    try:
        return gitops.resolve_commit(repo, base)
    except MuxError:
        return None


def _key(a: str, b: str) -> str:
    return ":".join(sorted((a, b)))


def _merge(repo: gitops.RepoPaths, key: str) -> list[str] | None:
    a, _, b = key.partition(":")
    try:
        return gitops.merge_trees(repo, a, b)[1]
    except MuxError:
        return None  # unrelated histories, a pruned snapshot...: no verdict, and nothing cached


@dataclass
class _Cache:
    pairs: dict[str, list[str]]  # "commit:commit" (sorted) -> conflicting paths ([] when clean)
    snapshots: dict[str, str]  # "tip:fingerprint" -> snapshot commit


def _load(root: Path) -> _Cache:
    try:
        doc = json.loads((root / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _Cache({}, {})
    if not isinstance(doc, dict) or doc.get("version") != _CACHE_VERSION:
        return _Cache({}, {})
    pairs, snapshots = doc.get("pairs"), doc.get("snapshots")
    return _Cache(
        {k: v for k, v in pairs.items() if isinstance(v, list)} if isinstance(pairs, dict) else {},
        {k: v for k, v in snapshots.items() if isinstance(v, str)} if isinstance(snapshots, dict) else {},
    )


def _save(root: Path, cache: _Cache) -> None:
    # A cache: last writer wins, no lock; the temp file + rename keeps readers from seeing half a file.
    doc = {
        "version": _CACHE_VERSION,
        "pairs": dict(list(cache.pairs.items())[-_CACHE_LIMIT:]),
        "snapshots": dict(list(cache.snapshots.items())[-_CACHE_LIMIT:]),
    }
    tmp = root / f".{CACHE_FILE}.{os.getpid()}.tmp"
    with contextlib.suppress(OSError):
        root.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, root / CACHE_FILE)
