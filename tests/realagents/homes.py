"""Prepare a HOME for each real agent so it starts straight into its prompt, offline, against a fake server.

Each `*_env(home, repo, url, ...)` writes the agent's files under `home` and returns the environment variables
to run it with (merge them over a clean environment; they include HOME). Nothing outside `home` is touched.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FAKE_MODEL = "fake-model"

# Variables every agent gets: no colour tricks from the CI environment, a terminal tmux understands.
_COMMON = {"TERM": "tmux-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "COLORTERM": "truecolor"}


def _base_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        **_COMMON,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"),
    }


# -- Claude Code --------------------------------------------------------------------------------------------------
def claude_env(
    home: Path,
    repo: Path | None,
    url: str,
    *,
    trust: bool = True,
    permission_mode: str = "manual",
    diff_panel: bool = False,
    max_retries: int | None = 0,
    settings: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Claude Code against `url` (a FakeAnthropic). `trust=False` leaves `repo` untrusted (its trust dialog shows).

    Claude 2.1.330 defaults to `auto` permission mode, where a Write runs without asking: the default here is
    `manual`, which shows the real "Do you want to create ...?" dialog. Setting a non-auto default in the user
    settings makes Claude offer "Make auto mode your default permission mode?" after the first turn, a dialog
    that sits on top of the idle prompt: `hasSeenAutoDefaultNudge` turns it off. Its built-in diff plugin opens
    a side panel over the right half of a pane at least 110 columns wide once a file changes; `diff_panel=False`
    (the default here) sets `diffSidebarOpen: false` in `.claude.json` so screens stay one column. When the
    server is gone Claude retries 10 times over several minutes with "esc to interrupt" on screen;
    `max_retries=0` (CLAUDE_CODE_MAX_RETRIES) makes it settle at once on "API Error: ..." and its idle prompt
    (None keeps Claude's default).
    """
    env = _base_env(home)
    state: dict[str, Any] = {
        "hasCompletedOnboarding": True,
        "lastReleaseNotesSeen": "9999.0.0",
        "hasSeenAutoDefaultNotice": True,
        "hasSeenAutoDefaultNudge": True,
        "hasResetAutoModeOptInForDefaultOffer": True,
        "opusProMigrationComplete": True,
        "officialMarketplaceAutoInstallAttempted": True,
        "officialMarketplaceAutoInstalled": False,
        "bypassPermissionsModeAccepted": True,
        "numStartups": 1,
        "tipsHistory": {"new-user-warmup": 1},
        "projects": {},
    }
    if not diff_panel:
        state["diffSidebarOpen"] = False
    if repo is not None:
        state["projects"][str(repo)] = {"hasTrustDialogAccepted": trust, "allowedTools": []}
    (home / ".claude.json").write_text(json.dumps(state, indent=2))
    user_settings: dict[str, Any] = {"permissions": {"defaultMode": permission_mode}}
    user_settings.update(settings or {})
    (home / ".claude").mkdir(exist_ok=True)
    (home / ".claude" / "settings.json").write_text(json.dumps(user_settings, indent=2))
    env.update(
        {
            "ANTHROPIC_BASE_URL": url,
            # ANTHROPIC_API_KEY would ask "Do you want to use this API key?" first; a token does not.
            "ANTHROPIC_AUTH_TOKEN": "fake-token",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
        }
    )
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    return env


# -- Codex --------------------------------------------------------------------------------------------------------
def codex_env(
    home: Path,
    repo: Path | None,
    url: str,
    *,
    trust: bool = True,
    extra_toml: str = "",
    approval_policy: str = "on-request",
    sandbox_mode: str = "workspace-write",
) -> dict[str, str]:
    """Codex against `url` (a FakeOpenAI, Responses API). `trust=False` leaves `repo` out (its trust screen shows).

    Codex 0.169 starts a background app-server daemon by default (copying its 400 MB binary into CODEX_HOME and
    outliving the TUI and the tmux server): `features.daemon_auto_start = false` keeps everything in the one
    process the pane runs.
    """
    env = _base_env(home)
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    lines = [
        f'model = "{FAKE_MODEL}"',
        'model_provider = "fake"',
        "check_for_update_on_startup = false",
        f'approval_policy = "{approval_policy}"',
        f'sandbox_mode = "{sandbox_mode}"',
        "",
        "[model_providers.fake]",
        'name = "fake"',
        f'base_url = "{url}/v1"',
        'wire_api = "responses"',
        'env_key = "OPENAI_API_KEY"',
        "request_max_retries = 0",
        "stream_max_retries = 0",
        "",
        "[features]",
        "daemon_auto_start = false",
        "in_app_updates = false",
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[tui]",
        "screen_reader_detection_done = true",
        "",
    ]
    if repo is not None and trust:
        lines += [f"[projects.{json.dumps(str(repo))}]", 'trust_level = "trusted"', ""]
    if extra_toml:
        lines.append(extra_toml)
    (codex_home / "config.toml").write_text("\n".join(lines) + "\n")
    env.update({"CODEX_HOME": str(codex_home), "OPENAI_API_KEY": "fake-key"})
    return env


# -- OpenCode -----------------------------------------------------------------------------------------------------
def opencode_config(
    url: str | None, plugins: Sequence[str] = (), extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON for OPENCODE_CONFIG_CONTENT: a `fake` OpenAI-compatible provider at `url`, plus plugin URLs."""
    config: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
    }
    if url is not None:
        config["provider"] = {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake",
                "options": {"baseURL": f"{url}/v1", "apiKey": "fake-key"},
                "models": {FAKE_MODEL: {"name": "Fake Model", "tool_call": True}},
            }
        }
        config["model"] = f"fake/{FAKE_MODEL}"
        config["small_model"] = f"fake/{FAKE_MODEL}"
    if plugins:
        config["plugin"] = list(plugins)
    if extra:
        config.update(extra)
    return config


def seed_opencode_config(home: Path, seed: Path) -> None:
    """Give `home` OpenCode's config-dir dependency install from `seed` (see `install.opencode_config_seed`), so
    OpenCode neither reaches the registry nor makes plugins wait ~11 s for `@opencode-ai/plugin`."""
    config = home / ".config" / "opencode"
    config.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        if (seed / name).exists():
            shutil.copyfile(seed / name, config / name)
    (config / ".gitignore").write_text("node_modules\npackage.json\npackage-lock.json\nbun.lock\n.gitignore\n")
    link = config / "node_modules"
    if not link.exists():
        link.symlink_to(seed / "node_modules", target_is_directory=True)


def opencode_env(
    home: Path,
    repo: Path | None,
    url: str | None,
    *,
    plugins: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
    seed: Path | None = None,
) -> dict[str, str]:
    """OpenCode against `url` (a FakeOpenAI, chat completions). `plugins` are `file:///abs/path.js` URLs; `seed`
    is `RealAgents.opencode_config_seed` (strongly advised: see `seed_opencode_config`).

    OpenCode needs `rg` on PATH (the harness's bin_dir has Codex's): without it, it tries to download ripgrep
    from GitHub and the first prompt stalls.
    """
    del repo  # OpenCode has no per-folder trust.
    env = _base_env(home)
    if seed is not None:
        seed_opencode_config(home, seed)
    env.update(
        {
            "OPENCODE_CONFIG_CONTENT": json.dumps(opencode_config(url, plugins, extra)),
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_SHARE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        }
    )
    return env


def merge_opencode_plugins(env: dict[str, str], plugins: Sequence[str]) -> dict[str, str]:
    """Return `env` with `plugins` appended to the `plugin` list inside OPENCODE_CONFIG_CONTENT."""
    config = json.loads(env.get("OPENCODE_CONFIG_CONTENT") or "{}")
    config["plugin"] = [*config.get("plugin", []), *plugins]
    return {**env, "OPENCODE_CONFIG_CONTENT": json.dumps(config)}
