"""Profiles and settings, read from real files in the hermetic HOME and a tmp repo."""

from __future__ import annotations

import hashlib
import os
import sys
import tomllib
from pathlib import Path

import pytest

from muxagent.config import (
    GENERIC_WAITING,
    HOOK_ADAPTERS,
    Settings,
    command_available,
    expand_args,
    list_profiles,
    load_profile,
    load_settings,
    resolve_agent,
    shipped_profiles_dir,
    user_config_dir,
)
from muxagent.errors import AgentNotFoundError, ConfigError
from muxagent.model import AgentProfile
from muxagent.status import patterns

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"
SHIPPED = sorted(p.stem for p in REPO_CONFIG.glob("*.toml"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def user_profile(name: str, text: str) -> Path:
    return write(user_config_dir() / "agents" / f"{name}.toml", text)


def config_error(match_all: list[str], call: object) -> str:
    assert callable(call)
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for part in match_all:
        assert part in message, (part, message)
    return message


def test_shipped_profiles_dir_is_the_checkouts_config_folder() -> None:
    assert shipped_profiles_dir() == REPO_CONFIG
    assert {"claude", "codex", "opencode", "aider", "gemini", "shell"} <= set(SHIPPED)


def test_user_config_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert user_config_dir() == Path(os.environ["XDG_CONFIG_HOME"]) / "mux"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert user_config_dir() == Path.home() / ".config" / "mux"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_and_its_patterns_compile(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.command and all(isinstance(word, str) and word for word in profile.command)
    assert profile.hooks in HOOK_ADAPTERS
    assert profile.status.idle_after > 0
    if profile.prompt_args is not None:
        assert any("{prompt}" in arg for arg in profile.prompt_args)
    rules = profile.status
    for pattern in (*rules.waiting, *rules.working, *rules.idle, *rules.trust, *rules.login):
        patterns.check(pattern)  # by RE2, the engine mux searches screens with
    if profile.trust_choice is not None:
        patterns.check(profile.trust_choice)
    assert (REPO_CONFIG / f"{name}.toml").read_text().startswith("#"), "header comment says what it is"


def test_shipped_profiles_match_the_design() -> None:
    claude = load_profile("claude")
    assert claude.command == ("claude",) and claude.prompt_args == ("{prompt}",)
    assert claude.resume_args == ("--continue",) and claude.env == {"DISABLE_AUTOUPDATER": "1"}
    assert load_profile("codex").resume_args == ("resume", "--last")
    assert load_profile("aider").prompt_args is None
    assert load_profile("shell").status.waiting == GENERIC_WAITING
    assert [p.name for p in list_profiles()] == SHIPPED


def screen_state(profile: AgentProfile, screen: str) -> str | None:
    rules = profile.status
    for state, rules_of_state in (
        ("waiting", rules.trust + rules.login + rules.waiting),
        ("working", rules.working),
        ("idle", rules.idle),
    ):
        if patterns.first_match(rules_of_state, screen):
            return state
    return None


@pytest.mark.parametrize(
    ("name", "screen", "state"),
    [
        ("claude", "Do you want to create hello.py?\n❯ 1. Yes\n  2. No\n\nEsc to cancel\n", "waiting"),
        ("claude", "✽ Schlepping… (3s · esc to interrupt)\n", "working"),
        ("claude", "✻ Worked for 3s\n> \n  ? for shortcuts\n", "idle"),
        ("codex", "• Working (5s • esc to interrupt)\n", "working"),
        ("codex", "Would you like to run the following command?\n", "waiting"),
        ("codex", "› Ask Codex to do anything\n", "idle"),
        ("opencode", "△ Permission required\n", "waiting"),
        ("aider", "Add file to the chat? (Y)es/(N)o/(D)on't ask again [Yes]: \n", "waiting"),
        ("aider", "Applied edit to hello.py\n> \n\n", "idle"),
        ("aider", "> add a test\n\nThinking\n", None),
        ("gemini", "Do you trust the files in this folder?\n", "waiting"),
    ],
)
def test_shipped_patterns_classify_sample_screens(name: str, screen: str, state: str | None) -> None:
    assert screen_state(load_profile(name), screen) == state


@pytest.mark.parametrize(
    "screen",
    [
        "Removing foo\nProceed (Y/n)? ",
        "Do you want to continue? [Y/n] \n\n\n",
        "Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
        "Overwrite config? [y/N]",
        "[sudo] password for me: ",
        "Enter passphrase for key '/home/me/.ssh/id_ed25519': ",
        "Password:",
        "Press ENTER to continue...",
        "Continue? ",
    ],
)
def test_generic_waiting_patterns_catch_common_prompts(screen: str) -> None:
    assert patterns.first_match(GENERIC_WAITING, screen)


@pytest.mark.parametrize(
    "screen",
    [
        "Proceed (y/n)? y\nRemoved foo\n$ ",  # answered prompts scroll up and stay on screen
        "[sudo] password for me:\ninstalled\n$ ",
        "$ grep -r password src/\nsrc/auth.py: check_password(x)\n$ ",
        "Compiling...\n",
        "",
    ],
)
def test_generic_waiting_patterns_ignore_answered_prompts_and_plain_output(screen: str) -> None:
    assert not patterns.first_match(GENERIC_WAITING, screen)


def test_user_profile_overrides_key_by_key_and_status_key_by_key() -> None:
    user_profile("claude", "[status]\nidle_after = 7.5\n")
    shipped = load_profile("claude")
    assert shipped.status.idle_after == 7.5
    assert shipped.status.waiting and shipped.status.working == ("esc to interrupt",)
    assert shipped.command == ("claude",) and shipped.hooks == "claude"

    user_profile("claude", 'command = ["/opt/claude/bin/claude", "--verbose"]\nprompt_args = []\n')
    profile = load_profile("claude")
    assert profile.command == ("/opt/claude/bin/claude", "--verbose")
    assert profile.prompt_args is None  # [] drops the shipped prompt_args: the prompt is pasted
    assert profile.resume_args == ("--continue",) and profile.status.idle == (r"\? for shortcuts",)


def test_user_only_profile(fake_profile: Path) -> None:
    profile = load_profile("fake")
    assert profile.command[0] == sys.executable and profile.command[1].endswith("fake_agent.py")
    assert profile.prompt_args == ("{prompt}",) and profile.hooks == "none"
    written = tomllib.loads(fake_profile.read_text())["status"]
    assert profile.status.idle_after == written["idle_after"]
    assert profile.status.idle == tuple(written["idle"])
    assert profile.status.waiting == tuple(written["waiting"])
    assert "fake" in [p.name for p in list_profiles()]
    assert resolve_agent("fake") == profile


def test_unknown_profile() -> None:
    with pytest.raises(AgentNotFoundError, match="nope"):
        load_profile("nope")
    with pytest.raises(AgentNotFoundError):
        load_profile("../config/claude")


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ('command = ["x"]\nflavour = "mild"\n', ["flavour", "unknown key"]),
        ('command = ["x"]\n[status]\nidle_afterr = 1\n', ["status.idle_afterr", "unknown key"]),
        ("command = []\n", ["command"]),
        ('command = "claude --fast"\n', ["command", "list of strings"]),
        ('command = ["x"]\nprompt_args = ["--message"]\n', ["prompt_args", "{prompt}"]),
        ('command = ["x"]\nhooks = "vim"\n', ["hooks", "claude"]),
        ('command = ["x"]\nenv = { N = 1 }\n', ["env.N", "string"]),
        ('command = ["x"]\n[status]\nidle_after = 0\n', ["status.idle_after", "positive"]),
        ('command = ["x"]\n[status]\nidle_after = "3"\n', ["status.idle_after"]),
        ("command = [\"x\"]\n[status]\nwaiting = ['(unclosed']\n", ["status.waiting[0]", "regex"]),
        ('command = ["x"]\n[status]\nidle = "one"\n', ["status.idle", "list"]),
        ('command = ["x"]\n\ncommand = ["y"]\n', ["line 3"]),
        ('command = ["x"\nhooks = "none"\n', ["invalid TOML", "line 2"]),
        ('prompt_args = ["{prompt}"]\n', ["no command"]),
    ],
)
def test_bad_profile_is_one_line_naming_file_and_key(text: str, parts: list[str]) -> None:
    path = user_profile("broken", text)
    config_error([str(path), *parts], lambda: load_profile("broken"))


def test_a_bad_shipped_profile_override_names_the_user_file() -> None:
    path = user_profile("codex", "[status]\nworking = ['[']\n")
    config_error([str(path), "status.working[0]"], lambda: load_profile("codex"))


def test_settings_defaults_without_any_file(tmp_path: Path) -> None:
    assert load_settings(tmp_path) == Settings()


def test_repo_settings_override_user_settings_key_by_key(tmp_path: Path) -> None:
    write(
        user_config_dir() / "config.toml",
        'agent = "codex"\nbase = "develop"\ncopy = [".env"]\n'
        '[agents.claude]\nenv = { A = "1" }\n[agents.claude.status]\nidle_after = 9\n',
    )
    repo_text = (
        'base = "main"\nsetup = ["npm ci"]\nworktree_dir = "../wt/{task}"\n'
        "[agents.claude.status]\nworking = ['Thinking']\n"
        '[agents.helper]\ncommand = ["helper-bot", "--tui"]\n'
    )
    repo = write(tmp_path / ".mux.toml", repo_text)
    # As if the user ran `mux trust` on it (tests/test_setup_trust.py covers the untrusted case).
    settings = load_settings(tmp_path, is_trusted=lambda _main, _digest: True)
    assert settings.agent == "codex" and settings.base == "main" and settings.copy == (".env",)
    assert settings.setup == ("npm ci",) and settings.worktree_dir == "../wt/{task}"
    assert settings.symlink == ()
    assert settings.repo_config == repo
    assert settings.repo_config_sha256 == hashlib.sha256(repo_text.encode()).hexdigest()
    assert settings.repo_keys == {
        "base",
        "setup",
        "worktree_dir",
        "agents.claude.status",
        "agents.helper.command",
    }

    claude = load_profile("claude", settings)
    assert claude.env == {"A": "1"}  # env replaced as one key
    assert claude.status.idle_after == 9 and claude.status.working == ("Thinking",)
    assert claude.status.idle == (r"\? for shortcuts",) and claude.command == ("claude",)
    assert resolve_agent("helper", settings).command == ("helper-bot", "--tui")
    assert "helper" in [p.name for p in list_profiles(settings)]


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ('agent = "claude"\nworktree = "x"\n', ["worktree", "unknown key"]),
        ("copy = '.env'\n", ["copy", "list of strings"]),
        ('worktree_dir = "../shared"\n', ["worktree_dir", "{task}"]),
        ("base = 3\n", ["base"]),
        ("[agents.claude]\nstatuss = {}\n", ["agents.claude.statuss", "unknown key"]),
        ("[agents.claude.status]\nidle_after = -1\n", ["agents.claude.status.idle_after"]),
        ('[agents.cluade]\nhooks = "claude"\n', ["agents.cluade", "no profile"]),
        ('agent = "claude"\nagent = "codex"\n', ["invalid TOML", "line 2"]),
        ('\n\nsetup = ["a" "b"]\n', ["invalid TOML", "line 3"]),
    ],
)
def test_bad_repo_settings_are_one_line_naming_file_and_key(tmp_path: Path, text: str, parts: list[str]) -> None:
    path = write(tmp_path / ".mux.toml", text)
    config_error([str(path), *parts], lambda: load_settings(tmp_path))


def test_bad_user_settings_name_the_user_file(tmp_path: Path) -> None:
    path = write(user_config_dir() / "config.toml", "agnet = 'codex'\n")
    config_error([str(path), "agnet"], lambda: load_settings(tmp_path))


def test_resolve_agent_profile_name_or_command_line() -> None:
    assert resolve_agent("claude") == load_profile("claude")
    generic = resolve_agent("  my-agent --model 'big one' ")
    assert generic.name == "my-agent --model 'big one'"
    assert generic.command == ("my-agent", "--model", "big one")
    assert generic.prompt_args is None and generic.hooks == "none"
    assert generic.status.waiting == GENERIC_WAITING
    # A word that is not a profile is a one-word command line.
    assert resolve_agent("htop").command == ("htop",)


@pytest.mark.parametrize("spec", ["", "   ", "claude 'unclosed", "''"])
def test_resolve_agent_refuses_empty_or_unparsable_specs(spec: str) -> None:
    config_error([], lambda: resolve_agent(spec))


def test_command_available(tmp_path: Path) -> None:
    assert command_available(AgentProfile(name="py", command=(sys.executable,))) == sys.executable
    assert command_available(AgentProfile(name="sh", command=("sh", "-c", "true")))
    assert command_available(AgentProfile(name="no", command=("mux-no-such-agent-xyz",))) is None
    not_executable = write(tmp_path / "script", "#!/bin/sh\n")
    assert command_available(AgentProfile(name="s", command=(str(not_executable),))) is None


def test_expand_args_is_plain_replacement() -> None:
    prompt = "fix {bug} in {0} and {prompt}"
    assert expand_args(["--prompt", "{prompt}", "-x={prompt}!"], prompt) == [
        "--prompt",
        prompt,
        f"-x={prompt}!",
    ]
    assert expand_args([], "x") == []
