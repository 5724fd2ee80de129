"""Which repo config files the user approved: `$XDG_STATE_HOME/mux/trust.json`, keyed by repo and content hash.

A repo's `.mux.toml` can hold code (`setup` commands, an agent's `command` or `env`). Cloning a repo must not be
enough to run it, so such keys apply only once the user ran `mux trust` on that exact content: any change to the
file (a pull, a merge, a checkout of another branch) changes its sha256 and needs a new approval. The store
lives in the user's state dir, never in the repo, so a repo cannot approve itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from muxagent.errors import StoreError
from muxagent.state import files

FORMAT_VERSION = 1
TRUST_FILE = "trust.json"


@dataclass(frozen=True)
class Approval:
    repo: str  # realpath of the main checkout
    sha256: str
    approved: str  # ISO 8601 UTC


def state_dir() -> Path:
    xdg = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec says to ignore a relative value.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return base / "mux"


def trust_path() -> Path:
    return state_dir() / TRUST_FILE


def repo_key(main_checkout: Path) -> str:
    # realpath: the same checkout reached through a symlink is the same repo.
    return os.path.realpath(main_checkout)


def approval(main_checkout: Path) -> Approval | None:
    """The approval on record for this repo (of whatever content), or None."""
    entry = _read().get(repo_key(main_checkout))
    if entry is None:
        return None
    return Approval(repo=repo_key(main_checkout), sha256=entry["sha256"], approved=entry["approved"])


def is_trusted(main_checkout: Path, sha256: str) -> bool:
    found = approval(main_checkout)
    return found is not None and found.sha256 == sha256


def approve(main_checkout: Path, sha256: str) -> Approval:
    """Record that the user approved this content; it replaces the repo's earlier approval."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    key = repo_key(main_checkout)
    with _locked() as entries:
        entries[key] = {"sha256": sha256, "approved": stamp}
    return Approval(repo=key, sha256=sha256, approved=stamp)


def revoke(main_checkout: Path) -> bool:
    """Forget the repo's approval; False if there was none."""
    with _locked() as entries:
        return entries.pop(repo_key(main_checkout), None) is not None


# -- the file ------------------------------------------------------------------------------------------------


def _read() -> dict[str, dict[str, str]]:
    """Entries on disk; an unreadable or damaged file trusts nothing (the safe way to fail)."""
    try:
        data = trust_path().read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StoreError(f"cannot read {trust_path()}: {exc.strerror}") from None
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    repos = doc.get("repos") if isinstance(doc, dict) else None
    if not isinstance(repos, dict):
        return {}
    return {
        key: {"sha256": value["sha256"], "approved": str(value.get("approved", ""))}
        for key, value in repos.items()
        if isinstance(value, dict) and isinstance(value.get("sha256"), str)
    }


@contextlib.contextmanager
def _locked() -> Iterator[dict[str, dict[str, str]]]:
    """Read-modify-write under a lock, so two `mux trust` in two repos at once both stick."""
    folder = state_dir()
    with contextlib.ExitStack() as lock:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock.enter_context(files.locked(folder / f"{TRUST_FILE}.lock"))
        except OSError as exc:
            raise StoreError(f"cannot write to {folder}: {exc.strerror}") from None
        entries = _read()
        yield entries
        _write(entries)


def _write(entries: dict[str, dict[str, str]]) -> None:
    payload = json.dumps({"version": FORMAT_VERSION, "repos": entries}, indent=2, sort_keys=True) + "\n"
    try:
        # Always the user's alone, whatever mode the file was given: other users must not approve code.
        files.atomic_write(trust_path(), payload.encode(), mode=0o600)
    except OSError as exc:
        raise StoreError(f"cannot write {trust_path()}: {exc.strerror}") from None
