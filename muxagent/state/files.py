"""The two ways mux changes a shared file: written whole by `atomic_write`, or changed by one process at a time
inside `locked()`.

Standard library only, and cheap modules at that: the hook command imports the state and status modules and
has an import budget (tests/test_hooks.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from muxagent.errors import StoreError

if TYPE_CHECKING:  # `mux ls`'s fast path (muxagent/fastpath.py) locks and probes locks: pathlib is not free
    from pathlib import Path

# A state file mux creates is readable by its user only: it may hold prompts, paths and approvals.
NEW_FILE_MODE = 0o600


def atomic_write(path: Path, data: bytes, *, mode: int | None = None, durable: bool = True) -> None:
    """Replace `path` with `data`: a reader, or the next run after a crash, sees the old file or the new, whole.

    The bytes go to a temp file in the same folder (a rename across file systems is not atomic), written in
    full, then renamed over `path`. The file keeps its permission bits, or gets `mode` if one is given (or
    NEW_FILE_MODE when it is new). `durable` fsyncs the file and its folder, so a power cut after the rename
    cannot leave an empty file or lose the rename; a cache the next run recomputes passes False to skip that.
    Raises OSError, with the temp file removed.
    """
    # Per process and thread: two writers never share a temp file; one left by a dead process is truncated.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    permissions = _permissions(path) if mode is None else mode
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, NEW_FILE_MODE)
        try:
            os.fchmod(fd, permissions)  # exact: neither the umask nor a leftover temp file decides
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        _fsync_folder(path.parent)


def names_in(folder: str | os.PathLike[str]) -> frozenset[str]:
    """The names of what `folder` holds (none when it is not there or cannot be read): one listdir, where the
    monitor asked each task's marker file once a tick (a stat each, and a Path built for it), at 100 tasks."""
    try:
        return frozenset(os.listdir(folder))
    except OSError:
        return frozenset()


def _permissions(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return NEW_FILE_MODE


def _write_all(fd: int, data: bytes) -> None:
    # os.write may write less than it was given (a signal, a full disk): loop until all of it is written.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_folder(folder: Path) -> None:
    # Some file systems refuse to open or fsync a directory; the rename itself has happened either way.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive flock on the lock file `path` (created if missing) for the block.

    Other processes locking the same path wait until the block ends (or, with `wait=False`, get
    BlockingIOError at once). The lock dies with the process, so a crash never leaves it held. The lock file
    is never deleted while in use: deleting it would let two processes lock two different files. The
    descriptor is not inherited (PEP 446), so a tmux server or agent started inside the block cannot keep it.
    Raises OSError when the file cannot be opened. flock locks belong to the open file: the same process
    locking the same path twice waits for itself.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, NEW_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked_folder(folder: Path, what: str) -> Iterator[Path]:
    """Hold the lock of a folder of per-task files (its `.lock`; the folder is made if missing) for the block.

    StoreError naming `what` when either cannot be made: a read-only state dir is one line, not a traceback. An
    OSError raised inside the block is left alone.
    """
    with contextlib.ExitStack() as lock:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock.enter_context(locked(folder / ".lock"))
        except OSError as exc:
            raise StoreError(f"cannot open {what} in {folder}: {exc.strerror}") from exc
        yield folder


def holds_lock(pid: int, path: str | os.PathLike[str]) -> bool:
    """Whether process `pid` runs and holds the flock on the lock file `path`: a process killed with SIGKILL lets go
    at once, and one that got its pid again holds no lock on this file."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's process given the pid since
        return False
    if not os.path.exists(path):
        return False
    holders = _flock_holders(path)
    if holders is not None:
        return pid in holders
    return _lock_taken(path)


def _flock_holders(path: str | os.PathLike[str]) -> set[int] | None:
    """The pids holding a flock on `path`, from Linux's /proc/locks; None where that cannot be read."""
    try:
        info = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            lines = table.read().splitlines()
    except OSError:
        return None
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    holders = set()
    for line in lines:
        # `N: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE START END`; a waiter's line has `->` after `N:`.
        words = line.split()
        if len(words) >= 6 and words[1] == "FLOCK" and words[5] == device and words[4].isdigit():
            holders.add(int(words[4]))
    return holders


def _lock_taken(path: str | os.PathLike[str]) -> bool:
    """Whether some process holds the lock at `path`: tried without waiting, let go at once."""
    try:
        with locked(path, wait=False):
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False
