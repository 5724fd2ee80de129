"""Agent profiles and settings, read from TOML.

A profile is the shipped `config/NAME.toml`, then the user's `$XDG_CONFIG_HOME/mux/agents/NAME.toml`, then the
settings' `[agents.NAME]`, each replacing the one before key by key (and `[status]` key by key). Settings are
the user's `$XDG_CONFIG_HOME/mux/config.toml`, then the repo's `.mux.toml`, key by key.

Screen patterns are regexes in Python's syntax, searched by RE2 as with re.MULTILINE (`^` and `$` match at every
line of the visible screen): see patterns.py for why, and what RE2 refuses.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from muxagent.errors import AgentNotFoundError, ConfigError
from muxagent.model import AgentProfile, StatusRules
from muxagent.status import patterns

HOOK_ADAPTERS = ("claude", "codex", "opencode", "gemini", "aider", "none")

# For commands without a profile (and the shell profile): prompts a human must answer. Each one must be on the
# last non-blank line of the screen, because line-oriented programs leave answered prompts behind as they
# scroll; these are searched over the whole screen like any other pattern.
GENERIC_WAITING: tuple[str, ...] = (
    r"(?i)\((?:y/n|yes/no)\b[^)\n]*\)[^\n]*\s*\Z",  # (y/n)  (Y/n)  (yes/no)  (yes/no/[fingerprint])?
    r"(?i)\[(?:y/n|yes/no)\][^\n]*\s*\Z",  # [Y/n]  [y/N]  [yes/no]
    r"(?i)press (?:enter|return|any key) to continue[^\n]*\s*\Z",
    r"(?i)\b(?:password|passphrase)\b[^\n]*:\s*\Z",  # Password:  [sudo] password for me:  Enter passphrase
    r"(?i)\b(?:continue|proceed)\?[^\n]*\s*\Z",
)

_PROFILE_KEYS = (
    "command", "prompt_args", "resume_args", "env", "hooks", "status", "auto_trust", "trust_choice", "sandbox",
    "sandbox_writable", "sandbox_network", "sandbox_env", "sandbox_seed", "yolo_args",
)  # fmt: skip
_STATUS_KEYS = ("idle_after", "waiting", "working", "idle", "trust", "login")
_SETTINGS_KEYS = (
    "agent",
    "base",
    "worktree_dir",
    "copy",
    "symlink",
    "setup",
    "setup_timeout",
    "sync_after_merge",
    "checkpoints",
    "check",
    "sandbox",
    "sandbox_network",
    "agents",
)
SANDBOX_NETWORKS = ("full", "none")
# Profile names become file names: no separators, no leading dot.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


# What `mux init` writes: every key, commented out, with what it does. Valid TOML as it is, and with every
# `# key = value` line uncommented (a test checks both).
INIT_TEMPLATE = """\
# .mux.toml: how mux starts tasks in this repository (see "Configuration" in the mux README).
# Read from the main checkout only, never from a task's worktree. Every key is optional; the same keys in
# ~/.config/mux/config.toml apply to all your repositories, and this file overrides them key by key.
#
# Keys that run code (setup, check; an agent's command, env, prompt_args, resume_args, hooks; an `agent` that is a
# command line; any worktree_dir other than the default or a folder below it) apply only once `mux trust`
# approved this exact content. After any change to this file (an edit, a pull, a merge) run `mux trust` again.

# Default agent for `mux new` (a profile name, see `mux agents`).
# agent = "claude"

# Branch new tasks start from (default: the branch checked out in the main checkout).
# base = "main"

# Where task worktrees go, relative to this checkout; must contain {task} ({repo} is this folder's name).
# Anywhere but the default folder or below it needs `mux trust`: a checkout must not land where another
# program runs what it finds (~/.vim/pack, an autostart folder).
# worktree_dir = "../{repo}.worktrees/{task}"

# Untracked files (say, gitignored local config) copied or linked from this checkout into each new worktree.
# Globs relative to this folder: no absolute paths, no "..", at most two "**". A .worktreeinclude file
# (gitignore syntax) is honoured too.
# copy = [".env", "config/local.*"]
# symlink = ["data/fixtures-large"]

# Commands run by `sh -c` in each new worktree before its agent starts; output in `mux logs NAME`.
# setup = ["npm ci", "make dev-db"]
# Seconds each set-up command may take before it is stopped.
# setup_timeout = 600

# After each `mux merge`, bring every other idle task on the same base up to date (`mux sync --all`).
# sync_after_merge = true

# Keep every turn's files as a checkpoint (`mux log`, `mux undo`); false turns it off for this repository.
# checkpoints = true

# The repository's check (its tests), run by `sh -c` in each member's worktree by `mux compare NAME --check`.
# check = "pytest -q"

# Start every agent in a bubblewrap sandbox (as `mux new --sandbox` does): it writes its worktree, its own branch
# and its own state dirs only. "none" also cuts it off the network. Neither undoes what your own config asks.
# sandbox = true
# sandbox_network = "none"

# Per-repo agent profile overrides: the same keys as a profile file (see `mux agents`).
# [agents.claude]
# env = { DISABLE_AUTOUPDATER = "1" }
"""


def shipped_profiles_dir() -> Path:
    """The shipped profiles: inside the installed wheel, or the repo's top-level `config/` in a checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "_data" / "config"
    return installed if installed.is_dir() else here.parent / "config"


def user_config_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says to ignore a relative value.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return base / "mux"


@dataclass(frozen=True)
class Settings:
    agent: str = "claude"
    base: str | None = None
    worktree_dir: str = "../{repo}.worktrees/{task}"
    copy: tuple[str, ...] = ()
    symlink: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    # Seconds each set-up command may run before it is stopped (a hung `npm ci` must not hold a task forever).
    setup_timeout: float = 600.0
    sync_after_merge: bool = False
    # The monitor records the worktree when a turn ends (`mux log`, `mux undo`); false: no checkpoint is taken.
    checkpoints: bool = True
    # The repository's own test command (`mux compare --check` runs it in each member's worktree), like `setup`.
    check: str | None = None
    # Every task in a sandbox (`mux new --sandbox`), and its network. Either file can turn the sandbox on or the
    # network off, neither can undo what the other asked: a repo's `sandbox = false` must not take the user's away.
    sandbox: bool = False
    sandbox_network: str = "full"
    # Per-profile overrides from [agents.NAME], user config then repo config merged key by key.
    agents: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    # Where the repo's part came from, for the trust check: `setup` and agent overrides (command, env, ...)
    # run code, so the caller must not use them until the user approved this exact content (`mux trust`).
    repo_config: Path | None = None
    repo_config_sha256: str | None = None
    repo_keys: frozenset[str] = frozenset()  # e.g. {"setup", "agents.claude.command"}
    # False when the repo file holds content the user has not approved; what was left out because of it.
    repo_trusted: bool = True
    ignored_keys: tuple[str, ...] = ()
    # True when worktree_dir comes from an untrusted repo file: each task's worktree must then stay below the
    # default folder, symlinks followed, with its real name (see `confined_worktree`).
    confine_worktrees: bool = False


def load_settings(main_checkout: Path, is_trusted: Callable[[Path, str], bool] | None = None) -> Settings:
    """The user's config.toml, then `<main_checkout>/.mux.toml`, key by key; errors name file and key.

    Keys of the repo file that run code (see `_untrusted_part`) apply only if `is_trusted(main_checkout,
    sha256)` (by default: the user ran `mux trust` on this content); otherwise they are left out and listed in
    `ignored_keys`. Always called with the main checkout, so an agent cannot change the config of its own
    runs by editing the `.mux.toml` in its worktree.
    """
    values: dict[str, object] = {}
    agents: dict[str, dict[str, object]] = {}
    unchecked: dict[str, dict[str, object]] = {}  # as written, for the "is there such a profile" check
    agent_origin: dict[str, str] = {}
    repo_keys: set[str] = set()
    ignored: list[str] = []
    repo_config: Path | None = None
    digest: str | None = None
    trusted = True
    sandbox = False
    offline = False
    for path, from_repo in ((user_config_dir() / "config.toml", False), (main_checkout / ".mux.toml", True)):
        data = _read_bytes(path)
        if data is None:
            continue
        table = _parse_toml(data, path)
        where = str(path)
        _check_settings(table, where)
        for name, over in _tables(table.get("agents", {})).items():
            unchecked[name] = _merge(unchecked.get(name, {}), over)
            agent_origin[name] = where
        if from_repo:
            import hashlib  # only repos with a .mux.toml pay for it

            repo_config, digest = path, hashlib.sha256(data).hexdigest()
            repo_keys.update(_dotted_keys(table))
            if is_trusted is None:
                from muxagent.state import trust

                is_trusted = trust.is_trusted
            trusted = is_trusted(main_checkout, digest)
            if not trusted:
                table, ignored = _untrusted_part(table, main_checkout, agents)
        sandbox = sandbox or table.get("sandbox") is True
        offline = offline or table.get("sandbox_network") == "none"
        for key, value in table.items():
            if key == "agents":
                for name, over in _tables(value).items():
                    agents[name] = _merge(agents.get(name, {}), over)
            else:
                values[key] = value
    for name, table in unchecked.items():
        if "command" not in table and not _profile_files(name):
            raise ConfigError(
                f"{agent_origin[name]}: agents.{name}: there is no profile {name!r} to override "
                "(give it a command to define a new one)"
            )
    # A profile the repo defined, minus its ignored command, is no profile at all.
    agents = {name: table for name, table in agents.items() if "command" in table or _profile_files(name)}
    return Settings(
        agent=_opt_str(values, "agent") or Settings.agent,
        base=_opt_str(values, "base"),
        worktree_dir=_opt_str(values, "worktree_dir") or Settings.worktree_dir,
        copy=tuple(_list(values, "copy")),
        symlink=tuple(_list(values, "symlink")),
        setup=tuple(_list(values, "setup")),
        setup_timeout=_number(values, "setup_timeout", Settings.setup_timeout),
        sync_after_merge=values.get("sync_after_merge") is True,
        checkpoints=values.get("checkpoints") is not False,
        check=_opt_str(values, "check"),
        sandbox=sandbox,
        sandbox_network="none" if offline else "full",
        agents=agents,
        repo_config=repo_config,
        repo_config_sha256=digest,
        repo_keys=frozenset(repo_keys),
        repo_trusted=trusted,
        ignored_keys=tuple(ignored),
        confine_worktrees=not trusted and "worktree_dir" in repo_keys and "worktree_dir" not in ignored,
    )


def untrusted_warning(settings: Settings) -> str | None:
    """One line for the user when part of the repo config was left out for lack of trust."""
    if not settings.ignored_keys:
        return None
    return (
        f"{settings.repo_config} is not trusted: ignoring {', '.join(settings.ignored_keys)} "
        "(read it, then run `mux trust` to allow it)"
    )


def _dotted_keys(table: Mapping[str, object]) -> set[str]:
    keys: set[str] = set()
    for key, value in table.items():
        if key == "agents":
            keys.update(f"agents.{name}.{sub}" for name, over in _tables(value).items() for sub in over)
        else:
            keys.add(key)
    return keys


def _untrusted_part(
    table: Mapping[str, object], main_checkout: Path, defined: Mapping[str, Mapping[str, object]]
) -> tuple[dict[str, object], list[str]]:
    """The repo table without what could run code or write outside the repo's folder, and what was left out.

    `setup` runs commands; an agent's `command`, `env`, `prompt_args`, `resume_args` and `hooks` decide what
    runs in its pane (screen patterns under `status` do not, and stay); `agent` may be a command line rather
    than a profile name; `worktree_dir` decides where mux writes a checkout: `../.vim/pack/{task}` from a clone
    in $HOME had the next `vim` run the repo's plugin, so only the default folder or below it is kept.
    """
    kept: dict[str, object] = {}
    ignored: list[str] = []
    for key, value in table.items():
        if key == "agents":
            overrides: dict[str, object] = {}
            for name, over in _tables(value).items():
                ignored += [f"agents.{name}.{sub}" for sub in over if sub != "status"]
                if "status" in over:
                    overrides[name] = {"status": over["status"]}
            kept[key] = overrides
        elif _unsafe(key, value, main_checkout, defined):
            ignored.append(key)
        else:
            kept[key] = value
    return kept, ignored


def _unsafe(key: str, value: object, main_checkout: Path, defined: Mapping[str, Mapping[str, object]]) -> bool:
    if key in ("setup", "check"):
        return True
    if key == "agent" and isinstance(value, str):
        return not (_profile_files(value) or value in defined)
    if key == "worktree_dir" and isinstance(value, str):
        return confined_worktree(value, main_checkout, "task") is None
    return False


def worktree_location(template: str, main_checkout: Path, name: str) -> Path:
    """Where `worktree_dir` puts the worktree of task `name`: relative to the main checkout, `~` expanded."""
    relative = template.replace("{repo}", main_checkout.name).replace("{task}", name)
    path = Path(os.path.expanduser(relative))
    if not path.is_absolute():
        path = main_checkout / path
    return Path(os.path.normpath(path))


def confined_worktree(template: str, main_checkout: Path, name: str) -> Path | None:
    """The worktree of `name` if it lies below the default worktree folder once symlinks are followed, else None.

    Task names hold no `/` and no `..`, so `{task}` cannot climb; a symlink on the way can (a task's worktree
    tracking `link -> ~/.vim/pack`), hence realpath on both sides.
    """
    default_root = worktree_location(Settings.worktree_dir, main_checkout, name).parent
    path = worktree_location(template, main_checkout, name)
    inside = Path(os.path.realpath(default_root)) in Path(os.path.realpath(path)).parents
    return path if inside else None


def _tables(value: object) -> dict[str, dict[str, object]]:
    # Only for tables _check_settings accepted: [agents.NAME] sub-tables.
    assert isinstance(value, dict)
    return value


def load_profile(name: str, settings: Settings | None = None) -> AgentProfile:
    """Shipped, then user, then `settings.agents[name]`, key by key; AgentNotFoundError if none exists."""
    layers: list[tuple[str, Mapping[str, object]]] = []
    for path in _profile_files(name):
        data = _read_bytes(path)
        if data is None:  # removed since listed
            continue
        table = _parse_toml(data, path)
        _check_profile(table, str(path), "")
        layers.append((str(path), table))
    if settings is not None and name in settings.agents:
        # Already checked by load_settings, with the file name; checked again for settings built by hand.
        override = settings.agents[name]
        _check_profile(override, "settings", f"agents.{name}.")
        layers.append((f"[agents.{name}]", override))
    if not layers:
        known = ", ".join(_profile_names(settings)) or "none"
        raise AgentNotFoundError(
            f"no agent profile {name!r} (known: {known}; "
            f"add one as {user_config_dir() / 'agents' / name}.toml, or give a command line)"
        )
    merged: Mapping[str, object] = {}
    for _, layer in layers:
        merged = _merge(merged, layer)
    return _build_profile(name, merged, " then ".join(source for source, _ in layers))


def list_profiles(settings: Settings | None = None) -> list[AgentProfile]:
    """Shipped, user and settings-defined profiles, sorted by name."""
    return [load_profile(name, settings) for name in _profile_names(settings)]


def resolve_agent(spec: str, settings: Settings | None = None) -> AgentProfile:
    """`mux new -a SPEC`: the profile of that name, or else SPEC as a command line with generic detection."""
    text = spec.strip()
    if not text:
        raise ConfigError("empty agent: give a profile name (see `mux agents`) or a command line")
    if _profile_files(text) or (settings is not None and text in settings.agents):
        return load_profile(text, settings)
    import shlex

    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"cannot parse agent command line {text!r}: {exc}") from None
    if not words or not words[0]:
        raise ConfigError(f"agent command line {text!r} names no program")
    return AgentProfile(
        name=text,
        command=tuple(words),
        prompt_args=None,
        status=StatusRules(waiting=GENERIC_WAITING),
    )


def command_available(profile: AgentProfile) -> str | None:
    """The path of the profile's program if it can be run, else None. A relative path with a slash is taken
    relative to the current directory."""
    import shutil  # imports bz2 and lzma: keep it off the `mux ls` path

    return shutil.which(profile.command[0])


def expand_args(args: Sequence[str], prompt: str) -> list[str]:
    # str.replace, not str.format: a prompt or argument holding braces must pass through untouched.
    return [arg.replace("{prompt}", prompt) for arg in args]


# -- reading and checking ------------------------------------------------------------------------------------


def _profile_names(settings: Settings | None) -> list[str]:
    names: set[str] = set()
    for folder in (shipped_profiles_dir(), user_config_dir() / "agents"):
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml") if _NAME.match(p.stem))
    if settings is not None:
        names.update(settings.agents)
    return sorted(names)


def _profile_files(name: str) -> list[Path]:
    if not _NAME.match(name):
        return []
    candidates = (shipped_profiles_dir() / f"{name}.toml", user_config_dir() / "agents" / f"{name}.toml")
    return [path for path in candidates if path.is_file()]


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _parse_toml(data: bytes, path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(data.decode())
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)", or "(at end of document)": name the line there too.
        last = data.decode(errors="replace").count("\n") or 1
        message = str(exc).replace("(at end of document)", f"(at line {last}, the end of the file)")
        raise ConfigError(f"{path}: invalid TOML: {message}") from None


def _merge(base: Mapping[str, object], over: Mapping[str, object]) -> dict[str, object]:
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if key == "status" and isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = {**below, **value}
        else:
            merged[key] = value
    return merged


def _fail(where: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{where}: {key}: {problem}")


def _unknown(where: str, key: str, known: Sequence[str]) -> ConfigError:
    return _fail(where, key, f"unknown key (expected one of: {', '.join(known)})")


def _strings(where: str, key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(where, key, f"must be a list of strings, not {_show(value)}")
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_settings(table: Mapping[str, object], where: str) -> None:
    for key, value in table.items():
        if key in ("agent", "base", "worktree_dir", "check"):
            if not isinstance(value, str) or not value.strip():
                raise _fail(where, key, f"must be a non-empty string, not {_show(value)}")
            if key == "worktree_dir" and "{task}" not in value:
                raise _fail(where, key, "must contain {task}, or every task would share one worktree")
        elif key in ("copy", "symlink"):
            for index, pattern in enumerate(_strings(where, key, value)):
                problem = _outside_checkout(pattern) or _costly_glob(pattern)
                if problem:
                    raise _fail(where, f"{key}[{index}]", f"{_show(pattern)} {problem}")
        elif key == "setup":
            _strings(where, key, value)
        elif key == "setup_timeout":
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise _fail(where, key, f"must be a positive number of seconds, not {_show(value)}")
        elif key in ("sync_after_merge", "checkpoints", "sandbox"):
            if not isinstance(value, bool):
                raise _fail(where, key, f"must be true or false, not {_show(value)}")
        elif key == "sandbox_network":
            _check_network(where, key, value)
        elif key == "agents":
            if not isinstance(value, dict):
                raise _fail(where, key, "must be a table of [agents.NAME] tables")
            for name, profile in value.items():
                if not _NAME.match(name):
                    raise _fail(where, f"agents.{name}", "not a valid profile name")
                if not isinstance(profile, dict):
                    raise _fail(where, f"agents.{name}", "must be a table")
                _check_profile(profile, where, f"agents.{name}.")
        else:
            raise _unknown(where, key, _SETTINGS_KEYS)


def _outside_checkout(pattern: str) -> str | None:
    """Why a copy/symlink glob could reach outside the main checkout, or None: they name the repo's own files."""
    if not pattern.strip():
        return "is empty"
    if pattern.startswith("~") or os.path.isabs(pattern):
        return "is not relative to the repo root"
    if ".." in pattern.replace("\\", "/").split("/"):
        return "leaves the repo root ('..')"
    return None


# Each `**` walks every folder below the one before, in Python's glob (copy, symlink) and in git's wildmatch
# (.worktreeinclude) alike. Over a 30-deep folder chain a repo can track, Python's glob took 0.01 s with 2 of
# them, 1.2 s with 4, over 20 s with 6; git's ls-files over 30 s with 12.
MAX_RECURSIVE_GLOBS = 2


def too_many_recursive_globs(pattern: str) -> bool:
    return pattern.replace("\\", "/").split("/").count("**") > MAX_RECURSIVE_GLOBS


def _costly_glob(pattern: str) -> str | None:
    """Why a copy/symlink glob could stall `mux new` (see MAX_RECURSIVE_GLOBS), or None.

    A `**` that is not a whole component makes pathlib raise.
    """
    if any("**" in part and part != "**" for part in pattern.replace("\\", "/").split("/")):
        return "has a '**' that is not a whole path component"
    if too_many_recursive_globs(pattern):
        return f"has more than {MAX_RECURSIVE_GLOBS} '**' (each one walks every folder again)"
    return None


def _check_profile(table: Mapping[str, object], where: str, prefix: str) -> None:
    """Check a profile table, possibly partial (an override); `command` is required only after merging."""
    for key, value in table.items():
        dotted = prefix + key
        if key == "command":
            words = _strings(where, dotted, value)
            if not words or not words[0]:
                raise _fail(where, dotted, 'must name a program, e.g. command = ["claude"]')
        elif key == "prompt_args":
            words = _strings(where, dotted, value)
            # An empty list means "paste the prompt": the way to drop a shipped prompt_args.
            if words and not any("{prompt}" in word for word in words):
                raise _fail(where, dotted, "must contain {prompt} (or be [] to paste the prompt instead)")
        elif key in ("env", "sandbox_env", "sandbox_seed"):
            if not isinstance(value, dict):
                raise _fail(where, dotted, f'must be a table of strings, e.g. {key} = {{ FOO = "1" }}')
            for var, text in value.items():
                if not isinstance(text, str):
                    raise _fail(where, f"{dotted}.{var}", f"must be a string, not {_show(text)}")
        elif key == "hooks":
            if value not in HOOK_ADAPTERS:
                raise _fail(where, dotted, f"must be one of {', '.join(HOOK_ADAPTERS)}, not {_show(value)}")
        elif key in ("resume_args", "sandbox_writable", "yolo_args"):
            _strings(where, dotted, value)
        elif key == "sandbox_network":
            _check_network(where, dotted, value)
        elif key in ("auto_trust", "sandbox"):
            if not isinstance(value, bool):
                raise _fail(where, dotted, f"must be true or false, not {_show(value)}")
        elif key == "trust_choice":
            if not isinstance(value, str):
                raise _fail(where, dotted, f"must be a regex string, not {_show(value)}")
            _check_pattern(where, dotted, value)
        elif key == "status":
            if not isinstance(value, dict):
                raise _fail(where, dotted, "must be a table")
            _check_status(value, where, dotted + ".")
        else:
            raise _unknown(where, dotted, _PROFILE_KEYS)


def _check_network(where: str, key: str, value: object) -> None:
    if value not in SANDBOX_NETWORKS:
        raise _fail(where, key, f"must be one of {', '.join(SANDBOX_NETWORKS)}, not {_show(value)}")


def _check_status(table: Mapping[str, object], where: str, prefix: str) -> None:
    for key, value in table.items():
        dotted = prefix + key
        if key == "idle_after":
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise _fail(where, dotted, f"must be a positive number of seconds, not {_show(value)}")
        elif key in ("waiting", "working", "idle", "trust", "login"):
            if len(_strings(where, dotted, value)) > patterns.MAX_PATTERNS:
                raise _fail(where, dotted, f"more than {patterns.MAX_PATTERNS} patterns: every screen pays for each")
            for index, pattern in enumerate(_strings(where, dotted, value)):
                _check_pattern(where, f"{dotted}[{index}]", pattern)
        else:
            raise _unknown(where, dotted, _STATUS_KEYS)


def _check_pattern(where: str, key: str, pattern: str) -> None:
    try:
        patterns.check(pattern)
    except patterns.PatternError as exc:
        raise _fail(where, key, f"bad regex {_show(pattern)}: {exc}") from None


def _build_profile(name: str, merged: Mapping[str, object], sources: str) -> AgentProfile:
    command = merged.get("command")
    if not isinstance(command, list):
        raise ConfigError(f"agent profile {name!r} has no command ({sources})")
    status = merged.get("status", {})
    assert isinstance(status, Mapping)
    idle_after = status.get("idle_after", StatusRules.idle_after)
    assert isinstance(idle_after, int | float)
    prompt_args = merged.get("prompt_args")
    env = merged.get("env", {})
    hooks = merged.get("hooks", "none")
    assert isinstance(env, Mapping) and isinstance(hooks, str)
    trust_choice = merged.get("trust_choice")
    return AgentProfile(
        name=name,
        command=tuple(command),
        prompt_args=tuple(prompt_args) if isinstance(prompt_args, list) and prompt_args else None,
        resume_args=tuple(_list(merged, "resume_args")),
        env=dict(env),
        hooks=hooks,
        status=StatusRules(
            idle_after=float(idle_after),
            waiting=tuple(_list(status, "waiting")),
            working=tuple(_list(status, "working")),
            idle=tuple(_list(status, "idle")),
            trust=tuple(_list(status, "trust")),
            login=tuple(_list(status, "login")),
        ),
        auto_trust=merged.get("auto_trust") is True,
        trust_choice=trust_choice if isinstance(trust_choice, str) else None,
        sandbox=merged.get("sandbox") is True,
        sandbox_writable=tuple(_list(merged, "sandbox_writable")),
        sandbox_network="none" if merged.get("sandbox_network") == "none" else "full",
        sandbox_env=_table(merged, "sandbox_env"),
        sandbox_seed=_table(merged, "sandbox_seed"),
        yolo_args=tuple(_list(merged, "yolo_args")),
    )


# Accessors for tables already checked: the asserts only tell the type checker what the checks established.
def _list(table: Mapping[str, object], key: str) -> list[str]:
    value = table.get(key, [])
    assert isinstance(value, list)
    return value


def _table(table: Mapping[str, object], key: str) -> dict[str, str]:
    value = table.get(key, {})
    assert isinstance(value, Mapping)
    return dict(value)


def _number(table: Mapping[str, object], key: str, default: float) -> float:
    value = table.get(key, default)
    assert isinstance(value, int | float)
    return float(value)


def _opt_str(table: Mapping[str, object], key: str) -> str | None:
    value = table.get(key)
    assert value is None or isinstance(value, str)
    return value
