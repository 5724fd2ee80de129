"""Checkpoints (issue 16): each turn's worktree kept as a commit under refs/mux/checkpoints/NAME/<turn>, without
touching the agent's index, HEAD or branch."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import git, make_repo, mux_ls, new_task, profile_with, run_mux, wait_until

from muxagent.commands import context, report, turns
from muxagent.git import checkpoints, recovery_refs, repository
from muxagent.model import State
from muxagent.monitor.turns import TurnRecorder
from muxagent.status import events


def _task_worktree(tmp_path: Path) -> tuple[repository.RepoPaths, Path, str]:
    main = make_repo(tmp_path / "proj")
    worktree = tmp_path / "t"
    git(main, "worktree", "add", "-q", "-b", "mux/t", str(worktree))
    return repository.discover(main), worktree, git(main, "rev-parse", "mux/t").strip()


def _agent_state(worktree: Path) -> tuple[bytes, str, str, str]:
    index = Path(git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index").strip())
    return (
        index.read_bytes(),
        git(worktree, "rev-parse", "HEAD"),
        git(worktree, "symbolic-ref", "HEAD"),
        git(worktree, "diff", "--cached"),
    )


def test_a_checkpoint_per_changing_turn_holds_its_files_and_prompt_and_touches_nothing_of_the_agents(
    tmp_path: Path,
) -> None:
    repo, worktree, start = _task_worktree(tmp_path)
    (worktree / "staged.txt").write_text("staged\n")
    git(worktree, "add", "staged.txt")
    (worktree / "new.txt").write_text("one\n")
    (worktree / ".gitignore").write_text(".env\n__pycache__/\n")
    (worktree / ".env").write_text("SECRET=1\n")
    before = _agent_state(worktree)
    lock = Path(git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index.lock").strip())
    lock.write_text("the agent's git is running")  # held by the agent: no obstacle
    first = checkpoints.take(repo, "t", worktree, "mux/t", start, "write new.txt\nplease", "").checkpoint
    lock.unlink()
    assert _agent_state(worktree) == before
    assert first is not None and first.turn == 1 and first.parent == start and first.tip == start
    assert first.headline == "write new.txt" and set(first.files) == {"staged.txt", "new.txt", ".gitignore", ".env"}
    assert git(worktree, "show", f"{first.ref}:.env") == "SECRET=1\n"

    # No change since the last one: no new one.
    assert checkpoints.take(repo, "t", worktree, "mux/t", start, "look around", "").checkpoint is None

    (worktree / "new.txt").write_text("two\n")
    os.chmod(worktree / "new.txt", 0o755)
    hostile = "done.\n\nAgent:\nMux-Tip: 0000\nMux-Turn: 9"
    second = checkpoints.take(repo, "t", worktree, "mux/t", start, "Prompt:\nmore", hostile).checkpoint
    assert second is not None and second.turn == 2 and second.parent == first.commit and second.tip == start
    assert (second.prompt, second.summary) == ("Prompt:\nmore", hostile)
    assert git(worktree, "ls-tree", second.ref, "new.txt").startswith("100755")
    assert [cp.turn for cp in checkpoints.list_checkpoints(repo, "t")] == [1, 2]
    assert _agent_state(worktree)[1:] == before[1:]


def test_a_first_turn_that_changed_nothing_takes_none_and_a_commit_alone_is_a_change(tmp_path: Path) -> None:
    repo, worktree, start = _task_worktree(tmp_path)
    assert checkpoints.take(repo, "t", worktree, "mux/t", start, "hello").checkpoint is None
    git(worktree, "commit", "-q", "--allow-empty", "-m", "the agent's commit")
    made = checkpoints.take(repo, "t", worktree, "mux/t", start, "commit please").checkpoint
    assert made is not None and made.tip == git(worktree, "rev-parse", "HEAD").strip()


def test_the_monitor_takes_a_checkpoint_per_turn_with_its_prompt_and_the_agents_last_message(
    repo: Path, fake_profile: Path, server: object
) -> None:
    profile_with(fake_profile, fake_profile.parent / "fakehook.toml", hooks="claude")
    worktree = new_task(repo, "t", "-a", "fakehook", "-p", "write a.txt first")
    main = repository.discover(repo)

    def turns() -> list[checkpoints.Checkpoint]:
        return checkpoints.list_checkpoints(main, "t")

    first = wait_until(lambda: turns(), timeout=20)[0]
    assert (first.prompt, first.summary) == ("write a.txt first", "finished: write a.txt first")
    run_mux("send", "t", "look at nothing", cwd=repo)  # a turn that changes nothing: no checkpoint
    run_mux("send", "t", "write b.txt second", cwd=repo)
    second = wait_until(lambda: turns()[1:], timeout=20)[0]
    assert second.prompt == "write b.txt second" and second.parent == first.commit
    assert git(worktree, "show", f"{second.ref}:b.txt") == "second\n"
    assert [cp.turn for cp in turns()] == [1, 2]


def _files_now(worktree: Path) -> str:
    head, tree = recovery_refs.worktree_tree(worktree)
    return git(worktree, "ls-tree", "-r", tree or recovery_refs.tree_of(worktree, head))


def _tree_files(worktree: Path, tree: str) -> str:
    return git(worktree, "ls-tree", "-r", tree)


def test_undo_restores_every_kind_of_file_moves_the_branch_back_and_can_itself_be_undone(
    repo: Path, fake_profile: Path, server: object
) -> None:
    profile_with(fake_profile, fake_profile.parent / "fakehook.toml", hooks="claude")
    worktree = new_task(repo, "t", "-a", "fakehook", "-p", "write a.txt one")
    main = repository.discover(repo)

    def turns() -> list[checkpoints.Checkpoint]:
        return checkpoints.list_checkpoints(main, "t")

    wait_until(lambda: len(turns()) == 1, timeout=20)
    (worktree / "README.md").write_text("changed\n")
    (worktree / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(worktree / "run.sh", 0o755)
    os.symlink("a.txt", worktree / "link")
    run_mux("send", "t", "write b.txt two", cwd=repo)
    wait_until(lambda: len(turns()) == 2, timeout=20)
    (worktree / "README.md").unlink()
    os.rename(worktree / "run.sh", worktree / "run2.sh")
    run_mux("send", "t", "commit c.txt three", cwd=repo)
    third = wait_until(lambda: turns()[2:], timeout=20)[0]
    first, second = turns()[:2]
    assert third.tip != first.tip

    busy = run_mux("undo", "t", "--to", "1", "--json", cwd=repo)
    undone = json.loads(busy.stdout)
    assert undone["turn"] == 1 and undone["recovery_ref"]
    assert _files_now(worktree) == _tree_files(worktree, first.tree)
    assert git(worktree, "rev-parse", "HEAD").strip() == first.tip
    assert git(repo, "cat-file", "-p", f"{undone['recovery_ref']}:c.txt") == "three\n"
    # The undo's own checkpoint holds what was there: undo of the undo brings it back, branch too.
    saved = undone["saved"] or third.turn
    run_mux("undo", "t", "--to", str(saved), cwd=repo)
    assert _files_now(worktree) == _tree_files(worktree, third.tree)
    assert git(worktree, "rev-parse", "HEAD").strip() == third.tip
    assert run_mux("undo", "t", "--to", "2", cwd=repo)  # and to the middle turn, the branch untouched since
    assert _files_now(worktree) == _tree_files(worktree, second.tree)

    log = json.loads(run_mux("log", "t", "--json", cwd=repo).stdout)
    assert [row["prompt"] for row in log[:3]] == ["write a.txt one", "write b.txt two", "commit c.txt three"]
    assert run_mux("diff", "t", "--turn", "2", cwd=repo).stdout.count("diff --git") == len(
        checkpoints.changed_files(worktree, first.tree, second.tree)
    )

    run_mux("send", "t", "busy 4", cwd=repo)
    wait_until(lambda: mux_ls(repo)["t"]["state"] == "working")
    refused = run_mux("undo", "t", cwd=repo, check=False)
    assert refused.returncode != 0 and "working" in refused.stderr and len(refused.stderr.splitlines()) == 1


def _reachable_from_refs(repo: Path, commit: str) -> bool:
    return bool(git(repo, "for-each-ref", "--contains", commit, "--format=%(refname)").strip())


def _hand_task(repo: Path, name: str, *args: str) -> Path:
    """A fake task whose checkpoints this test takes by hand: the monitor takes none of its own. It saw the task
    idle at first sight and took the test's files with no prompt, a moment before the test's own `take` found
    nothing left to record (CI: `mux log` showed turn 1's prompt empty)."""
    (repo / ".mux.toml").write_text("checkpoints = false\n")  # before the monitor starts: it reads it once
    return new_task(repo, name, "-a", "fake", *args)


def test_undo_killed_at_every_step_loses_nothing_and_runs_again(
    repo: Path, fake_profile: Path, server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    worktree = _hand_task(repo, "t")
    main = repository.discover(repo)
    (worktree / "a.txt").write_text("turn one\n")
    first = checkpoints.take(main, "t", worktree, "mux/t", None, "one").checkpoint
    assert first is not None
    for step in ("after-checkpoint", "after-recovery-ref", "after-branch", "after-index"):
        (worktree / "b.txt").write_text(f"committed before {step}\n")
        git(worktree, "add", "b.txt")
        git(worktree, "commit", "-q", "-m", f"the agent's commit before {step}")
        commit = git(worktree, "rev-parse", "HEAD").strip()
        (worktree / "c.txt").write_text(f"untracked before {step}\n")
        monkeypatch.setenv("MUX_CRASH_AT", f"undo:{step}")
        assert run_mux("undo", "t", "--to", "1", cwd=repo, check=False).returncode == 99
        monkeypatch.delenv("MUX_CRASH_AT")
        saved = checkpoints.list_checkpoints(main, "t")[-1]
        assert git(repo, "show", f"{saved.commit}:c.txt") == f"untracked before {step}\n"
        assert _reachable_from_refs(repo, commit)
        run_mux("undo", "t", "--to", "1", cwd=repo)
        assert _files_now(worktree) == _tree_files(worktree, first.tree)
        assert _reachable_from_refs(repo, commit)


def test_undo_is_refused_in_one_line_mid_merge_changing_nothing(repo: Path, fake_profile: Path, server: object) -> None:
    worktree = _hand_task(repo, "t")
    main = repository.discover(repo)
    (worktree / "README.md").write_text("the task's\n")
    checkpoints.take(main, "t", worktree, "mux/t", None, "one")
    git(worktree, "commit", "-q", "-am", "task side")
    (repo / "README.md").write_text("main's\n")
    git(repo, "commit", "-q", "-am", "main side")
    subprocess.run(["git", "merge", "-q", "main"], cwd=worktree, capture_output=True, check=False)
    before = _files_now(worktree)
    refused = run_mux("undo", "t", "--to", "1", cwd=repo, check=False)
    assert refused.returncode != 0 and "middle of a merge" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and _files_now(worktree) == before


def test_rm_keeps_a_tasks_turns_restore_brings_its_log_back_and_only_gc_drops_them(
    repo: Path, fake_profile: Path, server: object
) -> None:
    worktree = _hand_task(repo, "t")
    main = repository.discover(repo)
    (worktree / "a.txt").write_text("one\n")
    checkpoints.take(main, "t", worktree, "mux/t", None, "write a.txt")
    run_mux("gc", "--older-than", "0", cwd=repo)
    assert len(checkpoints.list_checkpoints(main, "t")) == 1  # a live task's turns stay
    run_mux("rm", "--force", "t", cwd=repo)
    assert json.loads(run_mux("log", "t", "--json", cwd=repo).stdout)[0]["prompt"] == "write a.txt"
    run_mux("restore", "t", cwd=repo)
    assert "write a.txt" in run_mux("log", "t", cwd=repo).stdout
    run_mux("rm", "--force", "t", cwd=repo)
    assert "refs/mux/checkpoints/t/1" in run_mux("gc", "--older-than", "0", "--dry-run", cwd=repo).stdout
    assert len(checkpoints.list_checkpoints(main, "t")) == 1
    assert "refs/mux/checkpoints/t/1" in run_mux("gc", "--older-than", "0", cwd=repo).stdout
    assert checkpoints.list_checkpoints(main, "t") == []


def test_a_merge_of_uncommitted_work_and_a_squash_merge_list_the_turns_prompts_and_summaries(
    repo: Path, fake_profile: Path, server: object
) -> None:
    main = repository.discover(repo)
    for name, squash in (("t", False), ("u", True)):
        worktree = _hand_task(repo, name, "-p", f"first prompt of {name}")
        (worktree / f"{name}.txt").write_text("one\n")
        checkpoints.take(main, name, worktree, f"mux/{name}", None, f"first prompt of {name}", "Chose a file.")
        (worktree / f"{name}.txt").write_text("two\n")
        checkpoints.take(main, name, worktree, f"mux/{name}", None, "now make it two\nplease", "Made it two.")
        if squash:
            git(worktree, "add", ".")
            git(worktree, "commit", "-q", "-m", "the agent's commit")
        run_mux("merge", name, *(["--squash"] if squash else []), cwd=repo)
        # The work commit: the squash itself, else the commit of the agent's files the merge commit brings in.
        message = git(repo, "log", "-1", "--format=%B", "main" if squash else "main^2")
        assert message.startswith(f"first prompt of {name}\n\n")
        assert f"Turn 1: first prompt of {name}\n  Agent: Chose a file.\nTurn 2: now make it two\n" in message
        assert "  Agent: Made it two." in message


def test_undo_to_0_puts_back_the_files_and_branch_the_task_started_with(
    repo: Path, fake_profile: Path, server: object
) -> None:
    worktree = _hand_task(repo, "t")
    main = repository.discover(repo)
    start = git(worktree, "rev-parse", "HEAD").strip()
    started = _files_now(worktree)
    (worktree / "a.txt").write_text("turn one\n")
    assert checkpoints.take(main, "t", worktree, "mux/t", start, "one").checkpoint is not None
    (worktree / "README.md").unlink()
    git(worktree, "add", "-A")
    git(worktree, "commit", "-q", "-m", "the agent's commit")
    commit = git(worktree, "rev-parse", "HEAD").strip()
    (worktree / "b.txt").write_text("untracked\n")
    undone = json.loads(run_mux("undo", "t", "--to", "0", "--json", cwd=repo).stdout)
    assert undone["turn"] == 0 and undone["recovery_ref"]
    assert _files_now(worktree) == started and git(worktree, "rev-parse", "HEAD").strip() == start
    assert _reachable_from_refs(repo, commit)
    # And back: the undo's own checkpoint has what was there.
    run_mux("undo", "t", "--to", str(undone["saved"]), cwd=repo)
    assert (worktree / "b.txt").read_text() == "untracked\n" and not (worktree / "README.md").exists()
    assert git(worktree, "rev-parse", "HEAD").strip() == commit


def test_undo_to_0_of_a_task_whose_start_is_unknown_is_refused_in_one_line(
    repo: Path, fake_profile: Path, server: object
) -> None:
    worktree = _hand_task(repo, "t")
    (worktree / "a.txt").write_text("turn one\n")
    checkpoints.take(repository.discover(repo), "t", worktree, "mux/t", None, "one")
    refused = run_mux("undo", "t", "--to", "0", cwd=repo, check=False)
    assert refused.returncode != 0 and "--to 1" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert (worktree / "a.txt").read_text() == "turn one\n"


def test_checkpoints_false_in_the_repos_config_takes_none_when_a_turn_ends(
    repo: Path, fake_profile: Path, server: object
) -> None:
    (repo / ".mux.toml").write_text("checkpoints = false\n")  # before the monitor starts: it reads it once
    worktree = new_task(repo, "t", "-a", "fake")
    (worktree / "a.txt").write_text("the turn's file\n")
    ctx = context.open_repo(repo)
    item = wait_until(
        lambda: next((r for r in report.list_reports(ctx, with_changes=False) if r.status.state.value == "idle"), None)
    )
    # The monitor's own recorder, on the task just seen idle (a turn's end): no checkpoint, no ref.
    assert TurnRecorder(ctx).observe([item], events.EventsCache()) == []
    assert git(repo, "for-each-ref", "refs/mux/checkpoints/") == ""
    (repo / ".mux.toml").write_text("checkpoints = true\n")
    recorder = TurnRecorder(context.open_repo(repo))
    assert recorder.observe([item], events.EventsCache()) == ["t"]
    wait_until(lambda: not recorder.pending("t"))  # taken on the recorder's own thread
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/mux/checkpoints/").split() == [
        "refs/mux/checkpoints/t/1"
    ]


def test_codexs_title_thread_is_kept_out_of_a_checkpoint_and_the_conversations_late_notify_fills_it_in(
    repo: Path, fake_profile: Path, server: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the real Codex 0.169 races: its title thread notifies first, the screen shows the turn over, then the
    # conversation's own notify lands, with no file changed since. Only the conversation has a rollout file.
    codex_home = tmp_path / "codex-home"
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    profile_with(fake_profile, fake_profile.parent / "fakecodex.toml", hooks="codex")
    worktree = new_task(repo, "t", "-a", "fakecodex")
    main = repository.discover(repo)
    title, conversation = "019a0000-0000-7000-8000-00000000title", "019a0000-0000-7000-8000-000000000conv"
    rollout = codex_home / "sessions" / "2026" / "12" / "02" / f"rollout-2026-12-02T16-00-00-{conversation}.jsonl"
    rollout.parent.mkdir(parents=True)
    rollout.write_text(json.dumps({"type": "session_meta", "payload": {"cwd": str(worktree)}}) + "\n")
    path = events.events_path(repo / ".git" / "mux", "t")
    launch = events.current_launch(path)

    def notify(session: str, prompt: str, message: str) -> None:
        event = events.HookEvent(time.time(), "codex", "agent-turn-complete", State.IDLE, session, launch, session)
        events.append(path, dataclasses.replace(event, prompt=prompt, message=message))

    (worktree / "hello.txt").write_text("hi\n")
    notify(title, "Generate a concise title for this conversation", "Fake title")
    taken = wait_until(lambda: checkpoints.list_checkpoints(main, "t"), timeout=20)[0]
    assert "title" not in taken.prompt.lower() and taken.summary == ""
    notify(conversation, "write hello.txt", "Done: wrote hello.txt.")

    def turns() -> list[checkpoints.Checkpoint]:
        return checkpoints.list_checkpoints(main, "t")

    wait_until(lambda: turns()[0].summary, timeout=20)
    filled = turns()
    assert len(filled) == 1 and (filled[0].prompt, filled[0].summary) == ("write hello.txt", "Done: wrote hello.txt.")
    assert (filled[0].tree, filled[0].parent, filled[0].tip) == (taken.tree, taken.parent, taken.tip)
    assert int(filled[0].at) == int(taken.at)


def test_an_agents_message_that_landed_before_its_turns_checkpoint_was_written_fills_it_in(
    repo: Path, fake_profile: Path, server: object
) -> None:
    """The monitor writes a turn's checkpoint a moment after the turn ended (on its own thread): OpenCode's
    `session.idle`, which carries the turn's texts 14 ms after the idle status that ended it, then lands between
    the two, and was lost when only the hooks after the checkpoint's own time counted."""
    (repo / ".mux.toml").write_text("checkpoints = false\n")  # the monitor takes none: these are taken here
    worktree = new_task(repo, "t", "-a", "fake")
    ctx = context.open_repo(repo)
    task = context.get_task(ctx, "t")
    ended = time.time() - 3.0  # the turn ended; its checkpoint is written 3 s later, the message in between
    (worktree / "a.txt").write_text("the turn's file\n")
    prompt = events.HookEvent(ended - 5.0, "opencode", "chat.message", State.WORKING, prompt="write a.txt")
    idle = events.HookEvent(ended, "opencode", "session.status:idle", State.IDLE)
    taken = turns.record_turn(ctx, task, [prompt, idle])
    assert taken is not None and (taken.prompt, taken.summary) == ("write a.txt", "")
    message = events.HookEvent(ended + 0.014, "opencode", "session.idle", State.IDLE, message="Wrote a.txt.")
    filled = turns.fill_in_turn(ctx, task, [prompt, idle, message], taken)
    assert filled is not None and (filled.prompt, filled.summary) == ("write a.txt", "Wrote a.txt.")
    assert [cp.summary for cp in checkpoints.list_checkpoints(ctx.repo, "t")][-1] == "Wrote a.txt."
