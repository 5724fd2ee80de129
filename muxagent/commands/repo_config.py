"""The repository's `.mux.toml`: `mux init` writes it, `mux trust` shows and approves it, `mux doctor` checks it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxagent import config
from muxagent.commands.context import Context
from muxagent.errors import ConfigError, MuxError
from muxagent.state import trust


@dataclass(frozen=True)
class TrustInfo:
    """What `mux trust` knows about the repo's `.mux.toml`."""

    path: Path
    text: str
    sha256: str
    trusted: bool
    approved: trust.Approval | None
    code_keys: tuple[str, ...]  # the keys that run code or need trust, present in the file

    def to_json(self) -> dict[str, Any]:
        """`mux trust --show --json`."""
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "trusted": self.trusted,
            "approved_sha256": self.approved.sha256 if self.approved else None,
            "approved": self.approved.approved if self.approved else None,
            "needs_trust": list(self.code_keys),
        }

    def lines(self) -> list[str]:
        """`mux trust --show`: whether the file is trusted as it is now, and what trusting it allows."""
        if self.trusted:
            lines = [f"{self.path}: trusted (approved {self.approved.approved if self.approved else '?'})"]
        elif self.approved is not None:
            lines = [f"{self.path}: changed since it was approved; `mux trust` to approve it as it is now"]
        else:
            lines = [f"{self.path}: not trusted; `mux trust` to approve it"]
        if self.code_keys:
            lines.append(f"keys that need trust: {', '.join(self.code_keys)}")
        return lines


def trust_info(ctx: Context) -> TrustInfo:
    path = ctx.repo.main / ".mux.toml"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: nothing to trust (`mux init` writes one)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    # Everything, as if trusted: the user must see what approving would allow. Parsed from the very bytes that
    # are hashed, so what is shown is what is approved.
    seen: list[str] = []

    def trusted_for_display(_main: Path, digest: str) -> bool:
        seen.append(digest)
        return False

    settings = config.load_settings(ctx.repo.main, is_trusted=trusted_for_display)
    digest = hashlib.sha256(data).hexdigest()
    if not seen or seen[0] != digest:
        raise ConfigError(f"{path} changed while it was read: run the command again")
    approved = trust.approval(ctx.repo.main)
    return TrustInfo(
        path=path,
        text=data.decode("utf-8", errors="replace"),
        sha256=digest,
        trusted=approved is not None and approved.sha256 == digest,
        approved=approved,
        code_keys=settings.ignored_keys,
    )


def approve_config(ctx: Context, info: TrustInfo) -> trust.Approval:
    """Approve exactly the content `info` showed (a file changed since is not approved by this)."""
    return trust.approve(ctx.repo.main, info.sha256)


def revoke_trust(ctx: Context) -> bool:
    return trust.revoke(ctx.repo.main)


def config_health(ctx: Context) -> tuple[bool, str, bool]:
    """For `mux doctor`: (ok, detail, fatal) about the settings and the repo config's trust."""
    try:
        settings = config.load_settings(ctx.repo.main)
    except ConfigError as exc:
        return False, str(exc), True
    if settings.repo_config is None:
        return True, "no .mux.toml (`mux init` writes one)", False
    if settings.ignored_keys:
        return False, config.untrusted_warning(settings) or "", False
    state = "trusted" if settings.repo_trusted else "nothing in it needs trust"
    return True, f"{settings.repo_config}: {state}", False


def init_config(ctx: Context) -> Path:
    """Write a commented `.mux.toml` at the main checkout's root; never over an existing one."""
    path = ctx.repo.main / ".mux.toml"
    try:
        with open(path, "x", encoding="utf-8") as file:
            file.write(config.INIT_TEMPLATE)
    except FileExistsError:
        raise MuxError(f"{path} already exists: edit it (then `mux trust`)") from None
    except OSError as exc:
        raise MuxError(f"cannot write {path}: {exc.strerror}") from None
    return path
