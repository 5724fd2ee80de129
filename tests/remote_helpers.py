"""The test side of the stand-in host (sshd_server.py): a fixture per test, and recording it with `mux host add`."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_mux
from sshd_server import RemoteHost, available, close_host, open_host


@pytest.fixture
def remote_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RemoteHost]:
    if not available():
        pytest.skip("needs ssh and sshd (openssh-server; .ci/run installs it)")
    # Short: the shared connections' sockets live under XDG_RUNTIME_DIR, and a socket path has ~107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="mxs", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    host, proc = open_host(folder, tmp_path / "remote")
    try:
        yield host
    finally:
        close_host(host, proc, folder)


def add_host(host: RemoteHost, repo: Path, name: str = "box", timeout: float | None = None) -> None:
    run_mux(*host.add_args(name, timeout), cwd=repo)
