"""`mux new --sandbox` and `--yolo`: a real bubblewrap sandbox around the agent, attacked from inside.

The stand-in agent is a shell script run in the sandbox: it tries every write a reckless agent could make, records
which ones went through, commits its own work, and waits. Each test checks what a user would notice: the main
checkout, another task, the home, the repository's config and hooks, other branches, all as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git, mux_ls, run_mux, wait_until, write_toml

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (.ci/run installs it)"
)

# Each line: a name, then a shell command that must fail inside the sandbox. Run with `sh -c`, in the worktree.
ATTACKS = {
    "main checkout": 'echo evil > "$MAIN/README.md"',
    "main checkout, new file": 'echo evil > "$MAIN/planted.py"',
    "other task's worktree": 'echo evil > "$OTHER/README.md"',
    "home": 'echo evil > "$HOME/.bashrc"',
    "etc": "echo evil > /etc/mux-sandbox-test",
    "main branch ref": 'echo 0000000000000000000000000000000000000000 > "$COMMON/refs/heads/main"',
    "other task's branch ref": 'echo 0000000000000000000000000000000000000000 > "$COMMON/refs/heads/mux/other"',
    "other task's branch deleted": 'rm -f "$COMMON/refs/heads/mux/other" && test ! -e "$COMMON/refs/heads/mux/other"',
    "git branch -f main": "git branch -f main HEAD",
    "git config": 'echo "[core] hooksPath = /tmp" >> "$COMMON/config"',
    "git config via git": "git config --local core.hooksPath /tmp/evil",
    "object store": 'f=$(find "$COMMON/objects" -type f -path "*/[0-9a-f][0-9a-f]/*" | head -n 1); rm "$f"',
    "object store, whole": 'rm -rf "$COMMON/objects" && test ! -e "$COMMON/objects"',
    "repo hook": 'echo "#!/bin/sh" > "$COMMON/hooks/post-checkout"',
    "worktree's .git file": 'echo "gitdir: $COMMON" > .git',
    "worktree's gitdir link": 'echo "$MAIN/.git" > "$(git rev-parse --git-dir)/gitdir"',
    "ssh keys read": 'cat "$HOME/.ssh/id_ed25519"',
    "tmux server": 'tmux -L "$SOCKET" new-window "touch $MAIN/from-tmux"',
}

AGENT = r"""#!/bin/sh
# The stand-in agent: every attack of ATTACKS, its own commit, then a prompt that stays.
out="$PWD/attacks.json"
first=1
printf '{' > "$out"
while IFS='	' read -r name command; do
    if sh -c "$command" >/dev/null 2>&1; then result=went-through; else result=refused; fi
    [ "$first" = 1 ] || printf ',' >> "$out"
    first=0
    printf '"%s": "%s"' "$name" "$result" >> "$out"
done <<'ATTACKS'
@ATTACKS@
ATTACKS
printf '}\n' >> "$out"
echo "sandboxed work" > work.txt
echo run >> runs.txt  # each run commits something new
git add work.txt attacks.json runs.txt && git commit -q -m "work done in the sandbox" && echo committed > committed.flag
echo "agent> "
exec sleep 3600
"""


@pytest.fixture
def stand_in(tmp_path: Path, hermetic: str) -> Path:
    """The attacking agent as the user profile `stand-in`."""
    script = tmp_path / "agent.sh"  # the attacks inside it: the sandbox's /tmp is its own, only the script is seen
    script.write_text(AGENT.replace("@ATTACKS@", "\n".join(f"{name}\t{command}" for name, command in ATTACKS.items())))
    script.chmod(0o755)
    agents = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    write_toml(
        agents / "stand-in.toml",
        {
            "command": ["sh", str(script)],
            "env": {"SOCKET": hermetic},
            "yolo_args": ["--no-questions"],
            "status": {"idle_after": 1.0, "idle": ["agent> "]},
        },
    )
    return script


def start_other(repo: Path) -> Path:
    """A plain task `other`, the one the attacker must not touch: its worktree."""
    run_mux("new", "other", "-a", "bash", cwd=repo)
    other = Path(mux_ls(repo)["other"]["worktree"])
    wait_until(lambda: (other / "README.md").exists())
    return other


def start_attack(repo: Path, *flags: str) -> Path:
    """The attacking task `t` with `flags` (after `other`, started first if it is not there): its worktree,
    once its attacks are recorded and its work committed."""
    other = Path(mux_ls(repo)["other"]["worktree"]) if "other" in mux_ls(repo) else start_other(repo)
    home = Path(os.environ["HOME"])
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    env = {"MAIN": str(repo), "OTHER": str(other), "COMMON": str(repo / ".git")}
    agents = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents" / "stand-in.toml"
    import tomllib

    profile = tomllib.loads(agents.read_text())
    profile["env"] = {**profile["env"], **env}
    write_toml(agents, profile)
    run_mux("new", "t", "-a", "stand-in", *flags, cwd=repo)
    worktree = Path(mux_ls(repo)["t"]["worktree"])
    wait_until(lambda: (worktree / "committed.flag").exists(), timeout=30)
    return worktree


def test_a_sandboxed_agent_writes_and_commits_its_worktree_only_and_merge_brings_the_commit_home(
    repo: Path, stand_in: Path
) -> None:
    start_other(repo)
    before = {
        "main": git(repo, "rev-parse", "main"),
        "other": git(repo, "rev-parse", "mux/other"),
        "config": (repo / ".git" / "config").read_bytes(),
        "readme": (repo / "README.md").read_bytes(),
        "hooks": sorted(p.name for p in (repo / ".git" / "hooks").iterdir()),
    }

    worktree = start_attack(repo, "--sandbox")

    results = json.loads((worktree / "attacks.json").read_text())
    assert results == dict.fromkeys(ATTACKS, "refused")
    assert git(repo, "rev-parse", "main") == before["main"]
    assert git(repo, "rev-parse", "mux/other") == before["other"]
    assert (repo / ".git" / "config").read_bytes() == before["config"]
    assert (repo / "README.md").read_bytes() == before["readme"]
    assert sorted(p.name for p in (repo / ".git" / "hooks").iterdir()) == before["hooks"]
    assert not (repo / "planted.py").exists() and not (repo / "from-tmux").exists()
    assert not Path("/etc/mux-sandbox-test").exists()
    assert (Path(os.environ["HOME"]) / ".ssh" / "id_ed25519").read_text() == "PRIVATE KEY\n"
    # Its own commit is on its own branch, seen from outside.
    assert git(repo, "log", "-1", "--format=%s", "mux/t").strip() == "work done in the sandbox"
    row = mux_ls(repo)["t"]
    assert (row["sandbox"], row["yolo"], row["sandbox_network"]) == (True, False, "full")
    assert "stand-in [sandbox]" in run_mux("ls", cwd=repo).stdout

    run_mux("merge", "t", cwd=repo)

    assert (repo / "work.txt").read_text() == "sandboxed work\n"
    assert "work done in the sandbox" in git(repo, "log", "--format=%s", "main")
    # The task's own object store went into the repository's with it: nothing depends on it any more.
    assert not (repo / ".git" / "mux" / "objects" / "t").exists()
    assert (
        str(repo / ".git" / "mux" / "objects" / "t")
        not in (repo / ".git" / "objects" / "info" / "alternates").read_text()
    )
    assert subprocess.run(["git", "fsck", "--no-dangling"], cwd=repo, capture_output=True, text=True).returncode == 0
    restore = git(repo, "for-each-ref", "--format=%(refname)", "refs/mux/recovery/t")
    assert restore.strip() and git(repo, "cat-file", "-t", restore.split()[0]).strip() == "commit"


def test_yolo_adds_the_profiles_switch_inside_the_sandbox_and_restart_goes_back_in(repo: Path, stand_in: Path) -> None:
    worktree = start_attack(repo, "--yolo")
    assert json.loads((worktree / "attacks.json").read_text()) == dict.fromkeys(ATTACKS, "refused")
    row = mux_ls(repo)["t"]
    assert (row["sandbox"], row["yolo"]) == (True, True)
    assert "stand-in [yolo]" in run_mux("ls", cwd=repo).stdout
    pane_pid = int(
        subprocess.run(
            ["tmux", "-L", os.environ["MUX_TMUX_SOCKET"], "display", "-p", "-t", row["window"], "#{pane_pid}"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    argv = Path(f"/proc/{pane_pid}/cmdline").read_bytes().split(b"\0")
    assert argv[0].endswith(b"bwrap") and b"--no-questions" in argv

    subprocess.run(["tmux", "-L", os.environ["MUX_TMUX_SOCKET"], "kill-window", "-t", row["window"]], check=True)
    wait_until(lambda: mux_ls(repo)["t"]["state"] in ("exited", "missing"))
    (worktree / "committed.flag").unlink()
    (worktree / "attacks.json").unlink()
    run_mux("restart", "t", cwd=repo)

    wait_until(lambda: (worktree / "committed.flag").exists(), timeout=30)
    assert json.loads((worktree / "attacks.json").read_text()) == dict.fromkeys(ATTACKS, "refused")


@pytest.mark.parametrize("flag", ["--sandbox", "--yolo"])
def test_without_bubblewrap_the_sandbox_is_refused_in_one_line_and_nothing_is_made(
    repo: Path, stand_in: Path, tmp_path: Path, flag: str
) -> None:
    bin_dir = tmp_path / "bin"  # PATH with git, tmux and sh, and no bwrap
    bin_dir.mkdir()
    for tool in ("git", "tmux", "sh"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or tool)
    env = {**os.environ, "PATH": str(bin_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "muxagent", "new", "t", "-a", "stand-in", flag],
        cwd=repo, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bubblewrap is not installed" in lines[0], proc.stderr
    assert ("--yolo runs only in a sandbox" in lines[0]) == (flag == "--yolo")
    assert "Traceback" not in proc.stderr
    assert git(repo, "branch", "--list", "mux/t") == ""
    assert "t" not in mux_ls(repo)
    doctor = subprocess.run(
        [sys.executable, "-m", "muxagent", "doctor"], cwd=repo, env=env, capture_output=True, text=True, timeout=60
    )
    assert "warn  sandbox: bubblewrap is not installed" in doctor.stdout
    assert doctor.returncode == 0, doctor.stdout  # not fatal: tasks without a sandbox still work


def test_a_repo_config_cannot_turn_off_the_sandbox_the_users_config_asks_for(repo: Path, stand_in: Path) -> None:
    write_toml(Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "config.toml", {"sandbox": True})
    write_toml(repo / ".mux.toml", {"sandbox": False, "sandbox_network": "full"})
    git(repo, "add", ".mux.toml")
    git(repo, "commit", "-q", "-m", "a repo that would rather run unsandboxed")
    run_mux("trust", cwd=repo)

    worktree = start_attack(repo)

    assert json.loads((worktree / "attacks.json").read_text()) == dict.fromkeys(ATTACKS, "refused")
    assert mux_ls(repo)["t"]["sandbox"] is True


def test_yolo_for_an_agent_without_yolo_args_is_refused(repo: Path) -> None:
    proc = run_mux("new", "t", "-a", "bash", "--yolo", cwd=repo, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "mux: --yolo: the profile of 'bash' has no yolo_args (see `mux agents`)"
    ]
    assert git(repo, "branch", "--list", "mux/t") == ""


@pytest.mark.parametrize("network", ["full", "none"])
def test_sandbox_network_none_cuts_the_agent_off_the_machines_loopback(
    repo: Path, tmp_path: Path, network: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        script = tmp_path / "net.sh"
        connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5); print('connected')"
        tried = f'"{sys.executable}" -c "{connect}" > reach.txt 2>/dev/null || echo refused > reach.txt'
        script.write_text(f"#!/bin/sh\n{tried}\nexec sleep 3600\n")
        config = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        write_toml(config, {"sandbox": True, "sandbox_network": network})
        run_mux("new", "n", "-a", f"sh {script}", cwd=repo)
        reach = Path(mux_ls(repo)["n"]["worktree"]) / "reach.txt"
        wait_until(lambda: reach.exists() and reach.read_text().strip(), timeout=30)
        assert reach.read_text().strip() == ("connected" if network == "full" else "refused")
        shown = "net.sh [sandbox, offline]" if network == "none" else "net.sh [sandbox]"
        assert shown in run_mux("ls", cwd=repo).stdout


def test_a_worktree_whose_git_file_points_elsewhere_gets_no_sandbox(repo: Path, tmp_path: Path) -> None:
    run_mux("new", "t", "-a", "bash", "--sandbox", cwd=repo)
    row = mux_ls(repo)["t"]
    worktree = Path(row["worktree"])
    wait_until(lambda: (worktree / "README.md").exists())
    subprocess.run(["tmux", "-L", os.environ["MUX_TMUX_SOCKET"], "kill-window", "-t", row["window"]], check=True)
    wait_until(lambda: mux_ls(repo)["t"]["state"] == "missing")
    # Rewritten by hand (or by an agent before it was sandboxed): it would have the home bound writable.
    (worktree / ".git").write_text(f"gitdir: {os.environ['HOME']}\n")

    proc = run_mux("restart", "t", cwd=repo, check=False)

    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "does not point into" in proc.stderr, proc.stderr
    assert "t" not in {
        w.split()[1]
        for w in subprocess.run(
            ["tmux", "-L", os.environ["MUX_TMUX_SOCKET"], "list-windows", "-a", "-F", "#{window_id} #{@mux_task}"],
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        if len(w.split()) > 1
    }


def test_a_removed_sandboxed_task_keeps_its_commits_and_restore_starts_it_in_its_sandbox_again(
    repo: Path, stand_in: Path
) -> None:
    worktree = start_attack(repo, "--sandbox")
    tip = git(repo, "rev-parse", "mux/t").strip()

    out = run_mux("rm", "t", "--force", cwd=repo).stdout

    assert "mux restore t" in out
    # Its commit, written to the task's own object store, is in the repository's now.
    assert not (repo / ".git" / "mux" / "objects" / "t").exists()
    assert git(repo, "cat-file", "-t", tip).strip() == "commit"
    run_mux("restore", "t", cwd=repo)
    row = mux_ls(repo)["t"]
    assert row["sandbox"] is True
    assert (worktree / "work.txt").read_text() == "sandboxed work\n"
    pane_pid = subprocess.run(
        ["tmux", "-L", os.environ["MUX_TMUX_SOCKET"], "display", "-p", "-t", row["window"], "#{pane_pid}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    wait_until(lambda: Path(f"/proc/{pane_pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"bwrap"))


def test_where_user_namespaces_are_forbidden_the_sandbox_is_refused_saying_what_to_enable(
    repo: Path, stand_in: Path, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"  # a bwrap that fails as it does where the kernel forbids unprivileged namespaces
    bin_dir.mkdir()
    (bin_dir / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    (bin_dir / "bwrap").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "muxagent", "new", "t", "-a", "stand-in", "--yolo"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "No permissions to create new namespace" in line and "unprivileged_userns_clone" in line
    assert git(repo, "branch", "--list", "mux/t") == ""


def test_sync_brings_the_bases_new_commits_into_a_sandboxed_tasks_branch(repo: Path, stand_in: Path) -> None:
    worktree = start_attack(repo, "--sandbox")
    (repo / "later.txt").write_text("landed on main meanwhile\n")
    git(repo, "add", "later.txt")
    git(repo, "commit", "-q", "-m", "meanwhile on main")
    wait_until(lambda: mux_ls(repo)["t"]["state"] == "idle")

    run_mux("sync", "t", cwd=repo)

    assert (worktree / "later.txt").read_text() == "landed on main meanwhile\n"
    assert (worktree / "work.txt").read_text() == "sandboxed work\n"
    subjects = git(repo, "log", "--format=%s", "mux/t")
    assert "meanwhile on main" in subjects and "work done in the sandbox" in subjects


def test_an_agent_whose_interpreter_is_found_on_a_path_under_tmp_runs_in_the_sandbox(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As npm installs Claude Code: a script whose `#!/usr/bin/env` interpreter is found on PATH, both under /tmp
    (a CI cache, an unpacked node; NixOS keeps its whole PATH under /run), which the sandbox makes its own."""
    tools, programs = tmp_path / "tools" / "bin", tmp_path / "agent" / "bin"
    for folder, name, text in (
        (tools, "agent-interpreter", '#!/bin/sh\nexec /bin/sh "$@"\n'),
        (programs, "interpreted-agent", '#!/usr/bin/env agent-interpreter\necho "interpreted> "\nexec sleep 3600\n'),
    ):
        folder.mkdir(parents=True)
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{programs}{os.pathsep}{tools}{os.pathsep}{os.environ['PATH']}")
    agents = Path(os.environ["XDG_CONFIG_HOME"]) / "mux" / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    write_toml(
        agents / "interpreted.toml",
        {"command": ["interpreted-agent"], "status": {"idle_after": 1.0, "idle": ["interpreted> "]}},
    )
    run_mux("new", "t", "-a", "interpreted", "--sandbox", cwd=repo)
    row = wait_until(lambda: (r := mux_ls(repo)["t"])["state"] in ("idle", "exited") and r, timeout=20)
    assert (row["state"], row["sandbox"]) == ("idle", True), row
