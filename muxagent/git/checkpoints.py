"""Checkpoints: a task's worktree as it was at the end of each turn, kept as commits under
refs/mux/checkpoints/NAME/<turn>, beside the task's branch, never on it.

Each is a commit of the worktree's files as they are on disk (tracked, untracked not ignored, and the ignored files a
recovery ref keeps), written through a scratch index (recovery_refs.worktree_tree): the agent's index, HEAD and
branch are never touched, no hook runs, and an `index.lock` the agent holds is no obstacle. Its first parent is the
previous checkpoint (the first one's: the commit the task started from), so one `git log` walks a task's turns.

The branch tip a checkpoint was taken on is a trailer of its message (`Mux-Tip:`), not a parent and not a tree entry:
a parent would make `git log` of the checkpoints wander into the agent's own history, and a file in the tree would
show in every `mux diff --turn` and come back into the worktree with `mux undo`. The prompt and the agent's summary
are sections of the message, their lines indented, so that no text an agent writes can pass for a section or a
trailer when mux reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from muxagent.errors import GitError
from muxagent.git.recovery_refs import MUX_IDENTITY, tree_of, worktree_tree
from muxagent.git.repository import RepoPaths, branch_tip
from muxagent.git.runner import error_line, run_git

CHECKPOINT_PREFIX = "refs/mux/checkpoints/"
TIP_TRAILER = "Mux-Tip: "
TURN_TRAILER = "Mux-Turn: "
PROMPT_SECTION = "Prompt:"
SUMMARY_SECTION = "Agent:"
FILES_SECTION = "Files changed:"
_INDENT = "    "
# What a message keeps of a prompt and of the agent's last message: enough to say what the turn was about, and
# a bound on what a long paste costs every `mux log`.
MAX_PROMPT = 4000
MAX_SUMMARY = 4000
_FILES_LISTED = 20
_SUBJECT = 72
_FIELDS = "%(refname)%00%(objectname)%00%(tree)%00%(parent)%00%(committerdate:unix)%00%(contents)%00"


@dataclass(frozen=True)
class Checkpoint:
    """One turn's end: its number, the commit holding the worktree, and what its message says."""

    turn: int
    ref: str
    commit: str
    tree: str
    parent: str | None  # the previous checkpoint (or the task's starting commit); None for a task with none
    tip: str | None  # the branch tip it was taken on (None: the branch had no commit)
    at: float
    prompt: str
    summary: str  # the agent's last message of the turn, "" when its hook gave none
    files: tuple[str, ...]  # the files the turn changed, listed when there is no summary

    @property
    def headline(self) -> str:
        """The prompt's first line, else the summary's, else the files changed."""
        for text in (self.prompt, self.summary):
            line = next((line.strip() for line in text.splitlines() if line.strip()), "")
            if line:
                return line
        return ", ".join(self.files)


def refs_of(name: str) -> str:
    return f"{CHECKPOINT_PREFIX}{name}/"


def list_checkpoints(repo: RepoPaths, name: str) -> list[Checkpoint]:
    """A task's checkpoints, oldest first (one `git for-each-ref`)."""
    found = [cp for cp in _read_refs(repo, refs_of(name)) if cp is not None]
    return sorted(found, key=lambda cp: cp.turn)


def names_with_checkpoints(repo: RepoPaths) -> dict[str, list[Checkpoint]]:
    """Every task name that has checkpoints, with them, oldest first: what `mux gc` looks at."""
    found: dict[str, list[Checkpoint]] = {}
    for cp in _read_refs(repo, CHECKPOINT_PREFIX):
        if cp is not None:
            found.setdefault(_name_of(cp), []).append(cp)
    return {name: sorted(cps, key=lambda cp: cp.turn) for name, cps in found.items()}


def _read_refs(repo: RepoPaths, pattern: str) -> list[Checkpoint | None]:
    out = run_git(repo.main, "for-each-ref", f"--format={_FIELDS}", pattern).stdout
    # Six fields a record, each ended by a NUL; git ends each record with a newline, which starts the next one.
    fields = out.split("\0")
    return [_parse(fields[i : i + 6]) for i in range(0, len(fields) - 1, 6)]


def _parse(record: list[str]) -> Checkpoint | None:
    ref, commit, tree, parents, at, message = record
    ref = ref.lstrip("\n")
    number = ref.rsplit("/", 1)[-1]
    if not number.isdigit() or not commit:
        return None  # not a name mux wrote: not mux's to read
    sections = _sections(message)
    tip = next((line[len(TIP_TRAILER) :] for line in message.splitlines() if line.startswith(TIP_TRAILER)), "")
    return Checkpoint(
        turn=int(number),
        ref=ref,
        commit=commit,
        tree=tree,
        parent=parents.split(" ")[0] or None,
        tip=tip if tip and tip != "none" else None,
        at=float(at or 0),
        prompt=sections.get(PROMPT_SECTION, ""),
        summary=sections.get(SUMMARY_SECTION, ""),
        files=tuple(line for line in sections.get(FILES_SECTION, "").splitlines() if line),
    )


def _sections(message: str) -> dict[str, str]:
    """The indented sections of a checkpoint's message, by their heading."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in message.splitlines():
        if line in (PROMPT_SECTION, SUMMARY_SECTION, FILES_SECTION):
            current = found.setdefault(line, [])
        elif current is not None and (line.startswith(_INDENT) or not line):
            current.append(line[len(_INDENT) :])
        else:
            current = None
    return {heading: "\n".join(lines).strip("\n") for heading, lines in found.items()}


def trimmed(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def message_for(turn: int, tip: str | None, prompt: str, summary: str, files: list[str]) -> str:
    """A checkpoint's commit message: a subject, the prompt, the agent's summary (else the files changed), the
    trailers mux reads back."""
    prompt, summary = trimmed(prompt, MAX_PROMPT), trimmed(summary, MAX_SUMMARY)
    first = next((line.strip() for line in (prompt or summary).splitlines() if line.strip()), "")
    subject = f"mux turn {turn}: {first}" if first else f"mux turn {turn}"
    parts = [trimmed(subject, _SUBJECT)]
    if prompt:
        parts.append(_section(PROMPT_SECTION, prompt))
    if summary:
        parts.append(_section(SUMMARY_SECTION, summary))
    elif files:
        more = len(files) - _FILES_LISTED
        listed = files[:_FILES_LISTED] + ([f"... {more} more"] if more > 0 else [])
        parts.append(_section(FILES_SECTION, "\n".join(listed)))
    parts.append(f"{TURN_TRAILER}{turn}\n{TIP_TRAILER}{tip or 'none'}")
    return "\n\n".join(parts) + "\n"


def _section(heading: str, text: str) -> str:
    return heading + "\n" + "\n".join(_INDENT + line if line else "" for line in text.splitlines())


def changed_files(cwd: Path, before: str, after: str) -> list[str]:
    """The paths that differ between two trees (or commits)."""
    out = run_git(cwd, "diff-tree", "-r", "-z", "--name-only", "--no-renames", before, after).stdout
    return [path for path in out.split("\0") if path]


@dataclass(frozen=True)
class Taken:
    """What `take` did: the new checkpoint, or None when the worktree and tip were as the last one had them."""

    checkpoint: Checkpoint | None
    latest: Checkpoint | None


def take(
    repo: RepoPaths,
    name: str,
    worktree: Path,
    branch: str,
    start: str | None,
    prompt: str = "",
    summary: str = "",
) -> Taken:
    """Record the worktree as the next checkpoint of `name` unless nothing changed since the last one (files and
    branch tip alike). `start`: the commit the task started from, the first checkpoint's parent (None: none)."""
    tip = branch_tip(repo, branch)
    head, tree = worktree_tree(worktree)
    if tree is None:
        tree = tree_of(worktree, head)
    for _ in range(5):  # another mux (the monitor, an undo) may take the same number: read again, take the next
        existing = list_checkpoints(repo, name)
        latest = existing[-1] if existing else None
        if latest is not None and latest.tree == tree and latest.tip == tip:
            return Taken(None, latest)
        parent = latest.commit if latest else start
        if latest is None and start is not None and tree_of(worktree, start) == tree and tip == start:
            return Taken(None, None)  # the first turn changed nothing
        turn = latest.turn + 1 if latest else 1
        files = changed_files(worktree, latest.tree if latest else tree_of(worktree, start), tree)
        message = message_for(turn, tip, prompt, summary, files)
        args = ["commit-tree", "--no-gpg-sign", "-m", message, *(("-p", parent) if parent else ()), tree]
        commit = run_git(worktree, *args, env=MUX_IDENTITY).stdout.strip()
        ref = f"{refs_of(name)}{turn}"
        # An empty old value: update-ref fails rather than move a checkpoint another mux just wrote.
        proc = run_git(repo.main, "update-ref", "-m", "mux checkpoint", ref, commit, "", ok=(0, 1, 128))
        if proc.returncode == 0:
            made = next((cp for cp in list_checkpoints(repo, name) if cp.ref == ref), None)
            return Taken(made, made)
        if run_git(repo.main, "show-ref", "--verify", "-q", ref, ok=(0, 1)).returncode != 0:
            raise GitError(f"git update-ref {ref} failed: {error_line(proc.stderr)}")
    raise GitError(f"could not take a checkpoint of {name}: its checkpoints keep moving")


def reword(repo: RepoPaths, checkpoint: Checkpoint, prompt: str, summary: str) -> Checkpoint | None:
    """The checkpoint again, same files, parent, tip and time, with the prompt and summary a hook gave after it was
    taken (Codex's notify can land after the screen showed the turn over); only while it is the newest, and only
    from the commit it had (compare and swap): None when another mux moved on meanwhile. The old commit holds the
    same tree, so nothing of the files is lost with it."""
    existing = list_checkpoints(repo, _name_of(checkpoint))
    if not existing or existing[-1].ref != checkpoint.ref or existing[-1].commit != checkpoint.commit:
        return None
    message = message_for(checkpoint.turn, checkpoint.tip, prompt, summary, list(checkpoint.files))
    stamp = f"@{int(checkpoint.at)} +0000"
    env = {**MUX_IDENTITY, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    parent = ("-p", checkpoint.parent) if checkpoint.parent else ()
    args = ["commit-tree", "--no-gpg-sign", "-m", message, *parent, checkpoint.tree]
    commit = run_git(repo.main, *args, env=env).stdout.strip()
    update = ["update-ref", "-m", "mux checkpoint message", checkpoint.ref, commit, checkpoint.commit]
    if run_git(repo.main, *update, ok=(0, 1, 128)).returncode != 0:
        return None
    return next((cp for cp in list_checkpoints(repo, _name_of(checkpoint)) if cp.ref == checkpoint.ref), None)


def _name_of(checkpoint: Checkpoint) -> str:
    return checkpoint.ref[len(CHECKPOINT_PREFIX) :].rsplit("/", 1)[0]


def delete_checkpoint(repo: RepoPaths, checkpoint: Checkpoint) -> None:
    if not checkpoint.ref.startswith(CHECKPOINT_PREFIX):
        raise GitError(f"not a checkpoint: {checkpoint.ref}")
    run_git(repo.main, "update-ref", "-d", checkpoint.ref, checkpoint.commit)


def turn_diff(repo: RepoPaths, checkpoint: Checkpoint, stat: bool = False) -> str:
    """What the turn changed: its checkpoint against the one before (the first: against where the task started)."""
    before = checkpoint.parent or tree_of(repo.main, None)
    args = ["diff", "--no-ext-diff", "--no-textconv", "--stat" if stat else "--patch", "--color=never"]
    return run_git(repo.main, *args, before, checkpoint.commit, "--").stdout


def turn_numstat(repo: RepoPaths, checkpoint: Checkpoint) -> tuple[int, int, int]:
    """(files, lines added, lines removed) the turn changed."""
    before = checkpoint.parent or tree_of(repo.main, None)
    out = run_git(repo.main, "diff", "--numstat", "-z", "--no-renames", before, checkpoint.commit, "--").stdout
    files = added = removed = 0
    for field in filter(None, out.split("\0")):
        plus, minus, _ = field.split("\t", 2)
        files += 1
        if plus != "-":  # a binary file has no lines
            added, removed = added + int(plus), removed + int(minus)
    return files, added, removed


def operation_in_progress(worktree: Path) -> str | None:
    """What git is in the middle of in the worktree (a merge, a rebase, a cherry-pick, a revert), None if nothing."""
    marks = {"MERGE_HEAD": "a merge", "rebase-merge": "a rebase", "rebase-apply": "a rebase"}
    marks |= {"CHERRY_PICK_HEAD": "a cherry-pick", "REVERT_HEAD": "a revert"}
    asked = [arg for mark in marks for arg in ("--git-path", mark)]
    out = run_git(worktree, "rev-parse", "--path-format=absolute", *asked).stdout
    for mark, path in zip(marks, out.splitlines(), strict=True):
        if Path(path).exists():
            return marks[mark]
    return None


def reset_index(worktree: Path, commit: str) -> None:
    """The worktree's index as `commit` has it, no file touched (what `git reset --mixed` does to the index).
    `--reset`, a one-tree merge that looks at no file, keeps the stat data of the entries that match: a plain
    read-tree dropped it, and every later `git status` re-read all 3,000 files of the benchmark's repository."""
    run_git(worktree, "read-tree", "--reset", "--end-of-options", commit)


def move_branch(repo: RepoPaths, branch: str, new: str, old: str | None) -> None:
    """Move the task's branch (and so its worktree's HEAD) to `new`, only from `old`: an agent's commit in between
    makes it fail rather than be dropped."""
    run_git(repo.main, "update-ref", "-m", "mux undo", f"refs/heads/{branch}", new, old or "")


_TURNS_LISTED = 50
_TURN_LINE = 200


def turns_body(found: list[Checkpoint]) -> str:
    """A commit message's body listing each turn's prompt and the agent's summary: what `mux merge --squash` and
    the merge of an agent that never committed write, so the history keeps the reasons with the work."""
    lines = []
    for cp in found[-_TURNS_LISTED:]:
        prompt = next((line.strip() for line in cp.prompt.splitlines() if line.strip()), "")
        summary = " ".join(line.strip() for line in cp.summary.splitlines() if line.strip())
        if not (prompt or summary):
            continue
        lines.append(trimmed(f"Turn {cp.turn}: {prompt or '(no prompt recorded)'}", _TURN_LINE))
        if summary:
            lines.append("  " + trimmed(f"Agent: {summary}", _TURN_LINE))
    if not lines:
        return ""
    skipped = len(found) - _TURNS_LISTED
    return "\n".join(([f"({skipped} earlier turns: see `mux log`)"] if skipped > 0 else []) + lines)
