"""Install the pinned real agents from the npm registry into `<repo>/.cache/agents/<key>/`, once per machine.

npm's install scripts are skipped: each package ships its native binary in a platform package under
`node_modules/` (`@anthropic-ai/claude-code-linux-x64/claude`, ...), and those are what we run. A cold install
takes about 20 s and 1.1 GB on disk (opencode pulls both its x64 and x64-baseline builds).
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "agents"

PACKAGES = {
    "claude": ("@anthropic-ai/claude-code", "2.1.330"),
    "codex": ("@openai/codex", "0.169.0"),
    "opencode": ("opencode-ai", "1.18.33"),
}
NAMES = tuple(PACKAGES)


class InstallError(RuntimeError):
    """npm or the registry failed; the message says which and how."""


def _arch() -> tuple[str, str, str]:
    """(npm arch, Rust target arch, opencode arch) for this machine."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x64", "x86_64", "x64"
    if machine in ("aarch64", "arm64"):
        return "arm64", "aarch64", "arm64"
    raise InstallError(f"no agent binaries for machine type {machine!r}")


def _is_musl() -> bool:
    return not platform.libc_ver()[0] and Path("/etc/alpine-release").exists()


def _os() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    raise InstallError(f"no agent binaries for platform {sys.platform!r}")


def cache_key() -> str:
    """A directory name that changes with any pinned version, so a bump installs afresh beside the old one."""
    versions = "_".join(f"{name}-{version}" for name, (_, version) in PACKAGES.items())
    return f"{versions}-{_os()}-{_arch()[0]}"


def install_dir() -> Path:
    return CACHE / cache_key()


def binary_paths(root: Path) -> dict[str, Path]:
    """Where the runnable native binaries of each agent live inside an install."""
    system, (npm_arch, rust_arch, oc_arch) = _os(), _arch()
    modules = root / "node_modules"
    rust_os = "unknown-linux-musl" if system == "linux" else "apple-darwin"
    musl = "-musl" if _is_musl() else ""
    candidates = {
        "claude": [modules / f"@anthropic-ai/claude-code-{system}-{npm_arch}{musl}/claude"],
        "codex": [modules / f"@openai/codex-{system}-{npm_arch}/vendor/{rust_arch}-{rust_os}/bin/codex"],
        # The plain build needs AVX2; the baseline one runs everywhere.
        "opencode": [
            modules / f"opencode-{system}-{oc_arch}{musl}/bin/opencode",
            modules / f"opencode-{system}-{oc_arch}-baseline{musl}/bin/opencode",
        ],
    }
    if not _has_avx2():
        candidates["opencode"].reverse()
    found: dict[str, Path] = {}
    for name, paths in candidates.items():
        for path in paths:
            if path.is_file():
                found[name] = path
                break
    return found


def _has_avx2() -> bool:
    try:
        return " avx2 " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return sys.platform == "darwin"


def opencode_config_seed() -> Path:
    """A ready `~/.config/opencode/` dependency install (`@opencode-ai/plugin` at OpenCode's version).

    OpenCode npm-installs that package into its config dir at start-up and, when any plugin is configured, waits
    for it before loading plugins: about 11 s per fresh HOME, from the registry. `homes.seed_opencode_config`
    copies the package files from here and links `node_modules`, so a fresh HOME starts in about 6 s.
    """
    return install_dir() / "opencode-config"


def _complete(root: Path) -> dict[str, Path] | None:
    if not (root / ".complete").exists() or not (opencode_config_seed() / "node_modules").is_dir():
        return None
    found = binary_paths(root)
    return found if set(found) == set(NAMES) else None


def _npm_install(root: Path, specs: list[str]) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("npm registry unreachable: `npm` is not on PATH (install Node.js >= 20 and npm)")
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "package.json").exists():
        (root / "package.json").write_text(json.dumps({"name": "mux-test-agents", "private": True}) + "\n")
    cmd = [
        npm,
        "install",
        "--no-audit",
        "--no-fund",
        "--save-exact",
        "--ignore-scripts",
        "--no-update-notifier",
        "--loglevel=error",
        "--cache",
        str(CACHE / "npm-cache"),
        "--prefix",
        str(root),
        *specs,
    ]
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"npm registry unreachable: `npm install` timed out after {exc.timeout}s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise InstallError(
            f"npm registry unreachable: `npm install {' '.join(specs)}` exited {proc.returncode}:\n{tail}"
        )


def ensure_agents() -> dict[str, Path]:
    """Install the pinned agents if needed and return {name: absolute path of its native binary}.

    Safe to call from parallel pytest workers: a file lock serialises the install and a `.complete` marker
    written last means a half-finished install (killed worker) is redone, not used.
    """
    root = install_dir()
    found = _complete(root)
    if found:
        return found
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{cache_key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _complete(root)
        if found:
            return found
        if root.exists():
            shutil.rmtree(root)
        started = time.monotonic()
        _npm_install(root, [f"{pkg}@{version}" for pkg, version in PACKAGES.values()])
        seed = opencode_config_seed()
        seed.mkdir(parents=True)
        (seed / "package.json").write_text(json.dumps({"dependencies": {}}) + "\n")
        _npm_install(seed, [f"@opencode-ai/plugin@{PACKAGES['opencode'][1]}"])
        found = binary_paths(root)
        missing = sorted(set(NAMES) - set(found))
        if missing:
            raise InstallError(f"npm installed the agents but no native binary was found for {missing} in {root}")
        (root / ".complete").write_text(f"installed in {time.monotonic() - started:.1f}s\n")
    return found


def ensure_bin_dir() -> Path:
    """A directory with `claude`, `codex`, `opencode` symlinks to the native binaries, to put first on PATH."""
    binaries = ensure_agents()
    bin_dir = install_dir() / "bin"
    bin_dir.mkdir(exist_ok=True)
    links = dict(binaries)
    # OpenCode downloads ripgrep from GitHub when `rg` is not on PATH (no network here): Codex ships one.
    rg = next(binaries["codex"].parent.parent.glob("codex-path/rg"), None)
    if rg is not None and shutil.which("rg") is None:
        links["rg"] = rg
    for name, target in links.items():
        link = bin_dir / name
        if not (link.is_symlink() and Path(os.readlink(link)) == target):
            tmp = bin_dir / f".{name}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, link)
    return bin_dir


def main() -> int:
    started = time.monotonic()
    try:
        binaries = ensure_agents()
        bin_dir = ensure_bin_dir()
    except InstallError as exc:
        print(exc, file=sys.stderr)
        return 1
    for name, path in binaries.items():
        print(f"{name:9} {path}")
    print(f"bin_dir   {bin_dir}")
    print(f"ready in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
