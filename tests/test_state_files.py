"""The one atomic write and the one lock every state file goes through: real files, real processes killed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
from pathlib import Path
from typing import Any

import pytest

from muxagent.state import files
from muxagent.state.files import atomic_write, locked

# fork: the children need nothing but the functions below, and start in milliseconds.
CTX = multiprocessing.get_context("fork")
OLD = b'{"old": true}\n'
# Larger than a pipe or page, so that "half written" is a real state of the temp file.
NEW = b"new " * 256 * 1024


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _die_after_writing_half(path: str) -> None:
    real_write = os.write

    def write_half_then_die(fd: int, data: Any) -> int:
        written = real_write(fd, bytes(data[: len(data) // 2]))
        os.kill(os.getpid(), signal.SIGKILL)  # as a power cut or an OOM kill would: no cleanup runs
        return written

    os.write = write_half_then_die
    atomic_write(Path(path), NEW)


def _die_before_the_rename(path: str) -> None:
    def die(*_: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    os.replace = die  # type: ignore[assignment]
    atomic_write(Path(path), NEW)


@pytest.mark.parametrize("child", [_die_after_writing_half, _die_before_the_rename])
def test_a_writer_killed_mid_write_leaves_the_old_file_whole(tmp_path: Path, child: Any) -> None:
    path = tmp_path / "tasks.json"
    path.write_bytes(OLD)
    proc = CTX.Process(target=child, args=(str(path),))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    assert path.read_bytes() == OLD
    # The dead writer's temp file holds its partial bytes; the next writer is not disturbed by it.
    assert len(leftovers(tmp_path)) == 1
    atomic_write(path, NEW)
    assert path.read_bytes() == NEW


def test_every_byte_is_written_when_the_kernel_takes_a_few_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:4096])))
    path = tmp_path / "intent.json"
    atomic_write(path, NEW)
    assert path.read_bytes() == NEW
    assert leftovers(tmp_path) == []


def test_a_file_keeps_its_mode_and_a_new_one_is_the_users_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared.json"
    shared.write_bytes(OLD)
    shared.chmod(0o640)
    atomic_write(shared, NEW)
    assert mode_of(shared) == 0o640 and shared.read_bytes() == NEW

    old_umask = os.umask(0)  # a permissive umask must not widen a new state file
    try:
        atomic_write(tmp_path / "new.json", NEW)
    finally:
        os.umask(old_umask)
    assert mode_of(tmp_path / "new.json") == files.NEW_FILE_MODE == 0o600


def test_a_mode_given_replaces_the_files_own(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    path.write_bytes(OLD)
    path.chmod(0o666)
    atomic_write(path, NEW, mode=0o600)
    assert mode_of(path) == 0o600


def test_a_failed_write_raises_and_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()  # a folder where the file should go: the rename fails
    with pytest.raises(OSError):
        atomic_write(tmp_path / "taken", NEW)
    assert (tmp_path / "taken").is_dir() and leftovers(tmp_path) == []


def test_a_cache_write_skips_fsync_but_is_still_whole(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(OLD)
    atomic_write(path, NEW, durable=False)
    assert path.read_bytes() == NEW and leftovers(tmp_path) == []


# -- the lock: real processes ------------------------------------------------------------------------------


def _hold(path: str, inside: Any, release: Any) -> None:
    with locked(Path(path)):
        inside.set()
        release.wait(30)


def _take_and_record(path: str, record: str) -> None:
    with locked(Path(path)):
        Path(record).write_text("took it")


def _try(path: str) -> None:
    try:
        with locked(Path(path), wait=False):
            os._exit(0)
    except BlockingIOError:
        os._exit(3)


def test_the_lock_excludes_a_second_process_until_the_first_lets_go(tmp_path: Path) -> None:
    lock, record = tmp_path / "lock", tmp_path / "record"
    inside, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold, args=(str(lock), inside, release))
    holder.start()
    waiter = CTX.Process(target=_take_and_record, args=(str(lock), str(record)))
    try:
        assert inside.wait(30)
        trier = CTX.Process(target=_try, args=(str(lock),))
        trier.start()
        trier.join(30)
        assert trier.exitcode == 3  # wait=False: refused at once
        waiter.start()
        waiter.join(1.0)  # bounded: it must still be waiting for the lock after a second
        assert waiter.is_alive() and not record.exists()
    finally:
        release.set()
        holder.join(30)
    waiter.join(30)
    assert waiter.exitcode == 0 and record.read_text() == "took it"


def test_a_lock_dies_with_its_process(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    inside, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold, args=(str(lock), inside, release))
    holder.start()
    assert inside.wait(30) and holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    with locked(lock, wait=False):
        assert lock.exists()  # never deleted: a second process must lock the same file


def test_a_lock_that_cannot_be_opened_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError), locked(tmp_path / "missing-folder" / "lock"):
        pass
