"""Conflict radar: which tasks would conflict with their base or with each other, uncommitted work included.

Each task's state is a commit: its branch tip, or, when the worktree is dirty, a snapshot of the worktree made with a
scratch index (never the agent's index, never the stash). Snapshots have fixed dates, so the same content is the
same commit id, and results are cached by the pair of commit ids in `<git-common-dir>/mux/radar.json`. `mux ls`
runs `git merge-tree` only for pairs that can conflict (see for_tasks) and whose commits moved.

Also here, because `mux ls` needs it without importing the merge verbs: the "waiting: conflict" state of a task
whose `mux sync` stopped on a conflict, and the "resolving" reason of one whose `mux merge --resolve` handed a
merge to its agent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import NamedTuple

from muxagent.errors import MuxError
from muxagent.git import merging, repository
from muxagent.git.repository import RepoPaths
from muxagent.model import State, Task, TaskStatus
from muxagent.state import store
from muxagent.status.changes import Work

CACHE_FILE = "radar.json"
SYNC_DIR = "sync"
RESOLVE_DIR = "resolve"
_CACHE_VERSION = 1
# Enough for dozens of tasks; older pairs are dropped first (dicts keep insertion order).
_CACHE_LIMIT = 2000
_WORKERS = 8

Conflict = Mapping[str, object]
Found = dict[str, tuple[Conflict, ...]]


def sync_marker(root: Path, name: str) -> Path:
    """Written by `mux sync` when it leaves a conflict in the task's worktree for the agent."""
    return root / SYNC_DIR / name


def sync_override(root: Path, worktree: Path, name: str, status: TaskStatus) -> TaskStatus:
    """`waiting` with reason "conflict" while a conflict left by `mux sync` is unresolved in the worktree."""
    if status.state is State.MISSING or not sync_marker(root, name).exists():
        return status
    if repository.in_progress(worktree) is None:
        return status
    return replace(status, state=State.WAITING, reason="conflict", exit_status=None)


def resolve_marker(root: Path, name: str) -> Path:
    """Written by `mux merge --resolve` while the task's agent resolves the merge of its base: what to undo."""
    return root / RESOLVE_DIR / name


def read_resolve_marker(root: Path, task: Task) -> dict[str, str] | None:
    """The marker of the task's resolve attempt, or None (none, unreadable, or left by an earlier task of its name)."""
    try:
        doc = json.loads(resolve_marker(root, task.name).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("created") != task.created:
        return None
    return {key: value for key, value in doc.items() if isinstance(value, str)}


def resolve_override(root: Path, task: Task, status: TaskStatus) -> TaskStatus:
    """Reason "resolving" while the task's agent resolves a merge `mux merge --resolve` prepared, "resolving (by
    NAME-resolve)" while a resolver of its own (`-a`) does, as long as that one's worktree is there."""
    if status.state is State.MISSING or not resolve_marker(root, task.name).exists():
        return status
    doc = read_resolve_marker(root, task)
    if doc is None:
        return status
    resolver = doc.get("resolver")
    if resolver is None:
        return replace(status, reason="resolving")
    where = doc.get("resolver_worktree")
    if not where or not Path(where).is_dir():
        return status  # removed by hand: nothing resolves it any more
    return replace(status, reason=f"resolving (by {resolver})")


def for_tasks(repo: RepoPaths, root: Path, tasks: Sequence[Task], works: Mapping[str, Work]) -> Found:
    """Task name -> [{"with": base or task name, "paths": [...]}, ...] for the tasks that would conflict.

    Only pairs that can conflict are merged: a task against its base once the base moved on, two tasks with the same
    base when they touched a common path (or one's file is the other's directory). So a steady `mux ls` runs no git
    here, and one more task costs one more comparison of path sets, not one more merge per task.
    """
    items = {task.name: (task, works[task.name]) for task in tasks if task.name in works}
    pairs = _candidate_pairs(items)
    if not pairs:
        return {}
    cache = _load(root)
    involved = sorted({p.name for p in pairs} | {p.other for p in pairs if p.other_is_task})
    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(involved))) as pool:
        made = pool.map(lambda name: _state(*items[name], cache.snapshots), involved)
        states = dict(zip(involved, made, strict=True))
        keys = [
            _key(states[p.name][0], states[p.other][0] if p.other_is_task else items[p.name][1].base_tip) for p in pairs
        ]
        todo = sorted(set(keys) - cache.pairs.keys())
        for key, paths in zip(todo, pool.map(lambda k: _merge(repo, k), todo), strict=True):
            if paths is not None:
                cache.pairs[key] = paths
    new_snapshots = {snapshot_key: commit for commit, snapshot_key in states.values() if snapshot_key is not None}
    if todo or new_snapshots.keys() - cache.snapshots.keys():
        cache.snapshots.update(new_snapshots)
        _save(root, cache)
    return _found(pairs, keys, cache.pairs)


class _Pair(NamedTuple):
    name: str
    other: str  # the task's base, or another task
    other_is_task: bool


def _candidate_pairs(items: Mapping[str, tuple[Task, Work]]) -> list[_Pair]:
    pairs = [_Pair(name, task.base, False) for name, (task, work) in items.items() if work.changes.behind > 0]
    for (a, (task_a, work_a)), (b, (task_b, work_b)) in combinations(items.items(), 2):
        if task_a.base == task_b.base and _may_conflict(task_a, work_a, task_b, work_b):
            pairs.append(_Pair(a, b, True))
    return pairs


def _found(pairs: Sequence[_Pair], keys: Sequence[str], merged: Mapping[str, list[str]]) -> Found:
    found: dict[str, list[Conflict]] = {}
    for pair, key in zip(pairs, keys, strict=True):
        paths = merged.get(key)
        if not paths:
            continue
        found.setdefault(pair.name, []).append({"with": pair.other, "paths": list(paths)})
        if pair.other_is_task:  # both tasks of a pair show it
            found.setdefault(pair.other, []).append({"with": pair.name, "paths": list(paths)})
    return {name: tuple(conflicts) for name, conflicts in found.items()}


def _may_conflict(task_a: Task, work_a: Work, task_b: Task, work_b: Work) -> bool:
    if not (_on_branch(task_a, work_a) and _on_branch(task_b, work_b)):
        return True  # the radar takes the branch tip, whose paths the worktree's do not describe
    a, b = work_a.paths, work_b.paths
    return bool(a & b or _parents(a) & b or a & _parents(b))


def _parents(paths: frozenset[str]) -> set[str]:
    return {path[:i] for path in paths for i, char in enumerate(path) if char == "/"}


def _on_branch(task: Task, work: Work) -> bool:
    return work.scan.branch == task.branch and work.scan.head == work.tip


def _state(task: Task, work: Work, snapshots: Mapping[str, str]) -> tuple[str, str | None]:
    """(commit standing for the task's work, snapshot key when that commit is a snapshot of its worktree).

    A dirty worktree is snapshot (with a scratch index) only when its fingerprint is new.
    """
    if work.changes.dirty_files == 0 or not _on_branch(task, work):
        return work.tip, None  # clean, or detached or mid-rebase: what `mux merge` would take is the branch
    key = f"{work.tip}:{work.scan.fingerprint}"
    known = snapshots.get(key)
    if known is not None:
        return known, key
    try:
        return merging.worktree_snapshot(Path(task.worktree), work.tip), key
    except MuxError:
        return work.tip, None


def _key(a: str, b: str) -> str:
    return ":".join(sorted((a, b)))


def _merge(repo: RepoPaths, key: str) -> list[str] | None:
    a, _, b = key.partition(":")
    try:
        return merging.merge_trees(repo, a, b)[1]
    except MuxError:
        return None  # unrelated histories, a pruned snapshot...: no verdict, and nothing cached


@dataclass
class _Cache:
    pairs: dict[str, list[str]]  # "commit:commit" (sorted) -> conflicting paths ([] when clean)
    snapshots: dict[str, str]  # "tip:fingerprint" -> snapshot commit


def _load(root: Path) -> _Cache:
    doc = store.load_cache(root / CACHE_FILE, _CACHE_VERSION)
    pairs, snapshots = doc.get("pairs"), doc.get("snapshots")
    return _Cache(
        {k: v for k, v in pairs.items() if isinstance(v, list)} if isinstance(pairs, dict) else {},
        {k: v for k, v in snapshots.items() if isinstance(v, str)} if isinstance(snapshots, dict) else {},
    )


def _save(root: Path, cache: _Cache) -> None:
    doc = {
        "pairs": dict(list(cache.pairs.items())[-_CACHE_LIMIT:]),
        "snapshots": dict(list(cache.snapshots.items())[-_CACHE_LIMIT:]),
    }
    store.save_cache(root / CACHE_FILE, _CACHE_VERSION, doc)
