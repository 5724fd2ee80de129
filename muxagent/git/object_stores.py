"""A sandboxed task's own object store: where its git writes, so that the repository's objects stay read-only.

An agent in a sandbox with the object store writable could delete the packs every branch lives in (`rm -rf
.git/objects`, one reckless command of a `--yolo` run). Instead its git writes to `<git-common-dir>/mux/objects/
NAME` (GIT_OBJECT_DIRECTORY inside the sandbox) and reads the repository's store as an alternate; the repository
reads the task's store as an alternate too (a line in `objects/info/alternates`), so its commits are seen from
outside at once. When the task is removed, its objects are copied into the repository's store (each file under a
temporary name first, then renamed: objects are immutable, and a half-copied one never shows under its name), its
line dropped, and its store deleted; a crash in between leaves both the line and the store, and nothing is lost.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from muxagent.git.repository import RepoPaths


def task_store(repo: RepoPaths, name: str) -> Path:
    return repo.common_dir / "mux" / "objects" / name


def _alternates(repo: RepoPaths) -> Path:
    return repo.common_dir / "objects" / "info" / "alternates"


@contextmanager
def _alternates_locked(repo: RepoPaths) -> Iterator[list[str]]:
    """The alternates file's lines, written back (atomically) when the block changed them, under a lock."""
    lock = repo.common_dir / "mux" / "objects" / ".alternates.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        path = _alternates(repo)
        try:
            before = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        except FileNotFoundError:
            before = []
        lines = list(before)
        yield lines
        if lines != before:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".alternates.{os.getpid()}")
            temporary.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8", errors="surrogateescape")
            os.replace(temporary, path)


def lend(repo: RepoPaths, name: str) -> Path:
    """The task's own store, made if missing and listed among the repository's alternates."""
    store = task_store(repo, name)
    for folder in (store / "info", store / "pack"):
        folder.mkdir(parents=True, exist_ok=True)
    with _alternates_locked(repo) as lines:
        if str(store) not in lines:
            lines.append(str(store))
    return store


def fold(repo: RepoPaths, name: str) -> None:
    """The task's objects into the repository's store, then its store dropped (see the module's doc)."""
    store = task_store(repo, name)
    if store.is_dir():
        target = repo.common_dir / "objects"
        # Packs before their indexes: git takes a pack for usable once its .idx is there.
        files = sorted((p for p in store.rglob("*") if p.is_file() and p.parent.name != "info"), key=_pack_last)
        for source in files:
            destination = target / source.relative_to(store)
            if destination.exists():
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            temporary = destination.with_name(f".mux-fold-{os.getpid()}-{destination.name}")
            shutil.copyfile(source, temporary)
            os.replace(temporary, destination)
    with _alternates_locked(repo) as lines:
        lines[:] = [line for line in lines if line != str(store)]
    shutil.rmtree(store, ignore_errors=True)


def _pack_last(path: Path) -> tuple[int, str]:
    return (1 if path.suffix in (".idx", ".rev", ".bitmap") else 0, str(path))
