"""The task registry: real files in a tmp dir, real concurrent processes for the lock."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
from dataclasses import fields
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

import pytest

from muxagent.errors import StoreError
from muxagent.model import Task
from muxagent.state.store import Registry, Store, task_from_dict, task_to_dict

# fork: the children need nothing but the functions below, and start in milliseconds.
CTX = multiprocessing.get_context("fork")


def make_task(
    name: str, *, port: int = 41000, prompt: str | None = "fix the {bug} in ünïcode", window: str = "@3"
) -> Task:
    return Task(
        name=name,
        agent="claude",
        command=("claude", "--settings", "{}"),
        base="main",
        branch=f"mux/{name}",
        worktree=f"/src/proj.worktrees/{name}",
        session="mux-proj",
        window=window,
        created="2026-11-03T10:00:00.000Z",
        port=port,
        prompt=prompt,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "common" / "mux")


def test_task_round_trips_through_its_json_form() -> None:
    task = make_task("a")
    data = task_to_dict(task)
    assert set(data) == {f.name for f in fields(Task)}
    assert data["command"] == ["claude", "--settings", "{}"]
    assert task_from_dict(json.loads(json.dumps(data))) == task
    assert task_from_dict({**data, "prompt": None}).prompt is None


def test_task_from_dict_ignores_unknown_fields_and_rejects_bad_ones() -> None:
    data = task_to_dict(make_task("a"))
    assert task_from_dict({**data, "from_the_future": [1, 2]}) == make_task("a")
    del data["prompt"]  # has a default
    assert task_from_dict(data).prompt is None
    for bad in ({"port": "41000"}, {"port": True}, {"command": "claude"}, {"command": [1]}, {"name": None}):
        with pytest.raises(ValueError):
            task_from_dict({**data, **bad})
    del data["branch"]
    with pytest.raises(ValueError, match="branch"):
        task_from_dict(data)


def test_load_without_any_state_is_empty_and_creates_nothing(store: Store) -> None:
    registry = store.load()
    assert len(registry) == 0 and store.rebuilt is None
    assert not store.root.exists()


def test_transaction_writes_versioned_file_that_load_reads_back(store: Store) -> None:
    with store.transaction() as registry:
        registry.add(make_task("one"))
        registry.add(make_task("two", port=41010, prompt=None))
    doc = json.loads(store.tasks_path.read_text())
    assert doc["version"] == 1
    assert list(doc["tasks"]) == ["one", "two"]
    assert doc["tasks"]["one"]["command"] == ["claude", "--settings", "{}"]

    loaded = store.load()
    assert list(loaded) == ["one", "two"]
    assert loaded.get("two") == make_task("two", port=41010, prompt=None)
    assert "one" in loaded and "three" not in loaded and loaded.get("three") is None
    assert [t.name for t in loaded.values()] == ["one", "two"]
    assert not loaded.modified and store.rebuilt is None
    assert [p.name for p in store.root.iterdir() if p.name.endswith(".tmp")] == []


def test_registry_edits(store: Store) -> None:
    with store.transaction() as registry:
        registry.add(make_task("a"))
        with pytest.raises(KeyError):
            registry.add(make_task("a", port=1))
        with pytest.raises(KeyError):
            registry.replace(make_task("ghost"))
        registry.replace(make_task("a", window="@9"))
        registry.add(make_task("b"))
    with store.transaction() as registry:
        assert not registry.modified
        assert registry.remove("nope") is None and not registry.modified
        removed = registry.remove("b")
        assert removed is not None and removed.name == "b" and registry.modified
    loaded = store.load()
    assert list(loaded) == ["a"]
    task = loaded.get("a")
    assert task is not None and task.window == "@9"


def test_exception_in_transaction_writes_nothing(store: Store) -> None:
    with store.transaction() as registry:
        registry.add(make_task("kept"))
    before = store.tasks_path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as registry:
        registry.add(make_task("lost"))
        raise RuntimeError("boom")
    assert store.tasks_path.read_bytes() == before
    # The lock was released: the next transaction does not hang.
    with store.transaction() as registry:
        assert list(registry) == ["kept"]


def test_unmodified_transaction_does_not_write(store: Store) -> None:
    with store.transaction() as registry:
        assert len(registry) == 0
    assert not store.tasks_path.exists()


def test_nested_transaction_fails_instead_of_deadlocking(store: Store) -> None:
    with store.transaction(), pytest.raises(RuntimeError, match="nested"), Store(store.root).transaction():
        pass


def test_tolerates_unknown_fields_in_the_file(store: Store) -> None:
    store.root.mkdir(parents=True)
    record = {**task_to_dict(make_task("a")), "hooks_seen": 3}
    store.tasks_path.write_text(json.dumps({"version": 1, "written_by": "x", "tasks": {"a": record}}))
    assert store.load().get("a") == make_task("a")
    assert store.rebuilt is None


def test_newer_version_is_refused_and_never_overwritten(store: Store) -> None:
    store.root.mkdir(parents=True)
    text = json.dumps({"version": 2, "tasks": {}, "shards": ["x"]})
    store.tasks_path.write_text(text)
    with pytest.raises(StoreError, match="newer mux"):
        store.load()
    with pytest.raises(StoreError, match="newer mux"), store.transaction() as registry:
        registry.add(make_task("a"))
    assert store.tasks_path.read_text() == text
    assert not list(store.root.glob("tasks.json.corrupt-*"))


def _journal_history(store: Store) -> None:
    store.journal("new", task=task_to_dict(make_task("a")))
    store.journal("new", task=task_to_dict(make_task("b")))
    store.journal("merge", name="b", strategy="squash")
    store.journal("new", task=task_to_dict(make_task("c")))
    store.journal("rm", name="b", recovery_ref="refs/mux/recovery/b/20261103T100000Z")
    store.journal("restart", task=task_to_dict(make_task("a", window="@7")))


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b'{"version": 1, "tasks": {',
        b"\xff\xfe garbage",
        b"[1, 2]",
        b'{"tasks": {}}',
        b'{"version": 1, "tasks": {"a": {"name": "a"}}}',
    ],
)
@pytest.mark.parametrize("entry", ["load", "transaction"])
def test_corrupt_registry_is_kept_aside_and_rebuilt_from_the_journal(store: Store, damage: bytes, entry: str) -> None:
    _journal_history(store)
    store.tasks_path.write_bytes(damage)

    if entry == "load":
        registry = store.load()
    else:
        with store.transaction() as registry:
            pass
    assert list(registry) == ["a", "c"]
    task = registry.get("a")
    assert task is not None and task.window == "@7"
    note = store.rebuilt
    assert note is not None and "corrupt" in note and "\n" not in note

    kept = list(store.root.glob("tasks.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damage
    assert kept[0].name in note
    # The rebuilt registry is on disk, so the next command neither rebuilds nor reports again.
    assert list(store.load()) == ["a", "c"] and store.rebuilt is None
    rebuilds = [e for e in store.read_journal() if e["action"] == "rebuild"]
    assert len(rebuilds) == 1 and rebuilds[0]["tasks"] == ["a", "c"]


def test_second_corruption_keeps_both_old_files(store: Store) -> None:
    _journal_history(store)
    for _ in range(2):
        store.tasks_path.write_text("{oops")
        store.load()
    assert len(list(store.root.glob("tasks.json.corrupt-*"))) == 2


def test_missing_registry_with_a_journal_is_rebuilt(store: Store) -> None:
    _journal_history(store)
    registry = store.load()
    assert list(registry) == ["a", "c"]
    assert store.rebuilt is not None and "missing" in store.rebuilt
    assert json.loads(store.tasks_path.read_text())["tasks"].keys() == {"a", "c"}


def test_missing_registry_with_a_journal_of_no_tasks_is_just_empty(store: Store) -> None:
    store.journal("doctor", ok=True)
    assert len(store.load()) == 0
    assert store.rebuilt is None
    assert not store.tasks_path.exists()


def test_journal_lines(store: Store) -> None:
    store.journal("new", task=task_to_dict(make_task("a")), path=Path("/x"))
    (entry,) = store.read_journal()
    assert entry["action"] == "new" and entry["pid"] == os.getpid() and entry["path"] == "/x"
    assert isinstance(entry["ts"], str) and entry["ts"].endswith("Z")
    assert entry["task"] == task_to_dict(make_task("a"))
    with pytest.raises(ValueError, match="reserved"):
        store.journal("x", pid=1)


def test_read_journal_skips_damage_and_recovers_entries_after_a_torn_line(store: Store) -> None:
    store.journal("first")
    with store.journal_path.open("ab") as f:
        f.write(b"not json\n[1]\n\xff\xff\n")
        f.write(b'{"ts":"2026-11-03T10:00:00.000Z","pid":1,"act')  # a crash mid-write: no newline
    store.journal("second", n=2)
    assert [e["action"] for e in store.read_journal()] == ["first", "second"]


# -- concurrency: real processes ---------------------------------------------------------------------------

WORKERS = 8
TASKS_EACH = 10


def _add_tasks(root: str, worker: int, barrier: Barrier) -> None:
    store = Store(Path(root))
    barrier.wait()
    for i in range(TASKS_EACH):
        name = f"w{worker}-{i}"
        with store.transaction() as registry:
            registry.add(make_task(name, port=40000 + worker * 100 + i))
        store.journal("new", task=task_to_dict(make_task(name)))


def journaled_task_name(entry: dict[str, object]) -> object:
    task = entry["task"]
    assert isinstance(task, dict)
    return task["name"]


def test_concurrent_processes_never_lose_an_update(store: Store) -> None:
    barrier = CTX.Barrier(WORKERS + 1)
    procs = [CTX.Process(target=_add_tasks, args=(str(store.root), w, barrier)) for w in range(WORKERS)]
    for proc in procs:
        proc.start()
    barrier.wait()
    # Meanwhile, lock-free readers must always see a whole file.
    while any(proc.is_alive() for proc in procs):
        store.load()
        assert store.rebuilt is None
    for proc in procs:
        proc.join()
        assert proc.exitcode == 0

    expected = {f"w{w}-{i}" for w in range(WORKERS) for i in range(TASKS_EACH)}
    assert set(store.load()) == expected
    assert {journaled_task_name(e) for e in store.read_journal()} == expected
    assert not list(store.root.glob("tasks.json.corrupt-*"))
    assert not list(store.root.glob("*.tmp"))


def _hold_lock(root: str, inside: Event, release: Event) -> None:
    with Store(Path(root)).transaction() as registry:
        registry.add(make_task("held"))
        inside.set()
        release.wait(30)


def test_lock_is_held_for_the_whole_transaction(store: Store) -> None:
    inside, release = CTX.Event(), CTX.Event()
    proc = CTX.Process(target=_hold_lock, args=(str(store.root), inside, release))
    proc.start()
    try:
        assert inside.wait(30)
        fd = os.open(store.root / "lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        assert "held" not in store.load()  # not written before the transaction ends
    finally:
        release.set()
        proc.join(30)
    assert proc.exitcode == 0
    assert "held" in store.load()


def test_registry_outside_a_store() -> None:
    registry = Registry()
    registry.add(make_task("x"))
    assert len(registry) == 1 and registry.modified
