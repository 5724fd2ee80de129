"""`pip install .` gives a user the `mux` command, the shipped profiles, the completion scripts and the type marker."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    return next(out.glob("muxagent-*.whl"))


def test_wheel_carries_profiles_completions_and_the_console_script(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for profile in (ROOT / "config").glob("*.toml"):
        assert f"muxagent/_data/config/{profile.name}" in names
    for script in (ROOT / "completions").iterdir():
        assert f"muxagent/_data/completions/{script.name}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mux = muxagent.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_wheel_carries_the_typed_marker(wheel: Path) -> None:
    """PEP 561: code that imports muxagent is type-checked against mux's own annotations."""
    assert "muxagent/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_installed_package_finds_its_shipped_profiles(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = "from muxagent import config; print(config.shipped_profiles_dir())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(out) == target / "muxagent" / "_data" / "config"
    assert (Path(out) / "claude.toml").is_file()


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flag_prints_the_installed_version(flag: str, tmp_path: Path) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = subprocess.run([sys.executable, "-m", "muxagent", flag], cwd=tmp_path, capture_output=True, text=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"mux {declared}\n", "")
