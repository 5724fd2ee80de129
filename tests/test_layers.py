"""The package's layout is its architecture: every import points down a layer, no module imports another's private
names, no import cycle, and each third-party library lives in one room (README, "How the code is laid out").

Read from the source with `ast`, function-level imports included: a lazy import is an arrow all the same.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "muxagent"

# Top to bottom. A unit (a top-level module or a subpackage) may import units of lower layers only; units that
# share a layer (the rooms for the outside systems; the ground) do not import each other.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"__main__"}),
    frozenset({"cli", "fastpath"}),
    frozenset({"live"}),
    frozenset({"monitor"}),
    frozenset({"commands"}),
    frozenset({"completion", "config", "hosts"}),
    frozenset({"status"}),
    frozenset({"git", "tmux", "state", "sandbox", "ssh"}),
    frozenset({"render", "naming"}),
    frozenset({"model", "errors"}),
    frozenset({"listing"}),
)
# Each third-party library is imported by one unit only: the room that speaks to its outside system. libtmux has no
# room (so no module may import it): the tests read tmux through it, mux runs plain tmux (muxagent/tmux/runner.py).
ROOMS = {"typer": "cli", "git": "git", "watchdog": "monitor", "re2": "status", "tomli_w": "hosts"}

# The modules that start processes. git and tmux each have one runner, so that a remote host can take every call
# of either by the runner's `host`; the others run what is neither git nor tmux.
PROCESS_RUNNERS = {
    "muxagent.git.runner": "every git call",
    "muxagent.tmux.runner": "every tmux call",
    "muxagent.monitor.daemon": "notify-send, the desktop notification of a task needing its user",
    "muxagent.commands.worktree_setup": "the repo's own set-up commands (`setup` in its config), by `sh -c`",
    "muxagent.sandbox.bwrap": "bwrap, the probe that says whether a sandbox can be made here",
    "muxagent.ssh.runner": "every ssh call: a command on another host, its shared connection",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module (or package), dotted
    names: tuple[str, ...]  # names taken from it by `from ... import`
    line: int
    bound: str = ""  # the name a `from PACKAGE import MODULE [as NAME]` binds to that module


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def unit(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def imports() -> Iterator[Import]:
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, alias.name, (), node.lineno)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = []
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    if submodule in MODULES:  # `from muxagent.git import runner` imports the module muxagent.git.runner
                        yield Import(module, submodule, (), node.lineno, alias.asname or alias.name)
                    else:
                        names.append(alias.name)
                if names:
                    yield Import(module, node.module, tuple(names), node.lineno)


ALL = list(imports())
OWN = [i for i in ALL if i.target.startswith("muxagent")]


def layer_of(name: str) -> int:
    return next(index for index, layer in enumerate(LAYERS) if name in layer)


def test_every_unit_of_the_package_has_a_layer() -> None:
    for module in MODULES:
        if module != "muxagent":
            assert any(unit(module) in layer for layer in LAYERS), f"{module} belongs to no layer"


def test_every_import_points_down_a_layer() -> None:
    wrong = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in OWN
        if i.target != "muxagent"
        and unit(i.module) != unit(i.target)
        and layer_of(unit(i.module)) >= layer_of(unit(i.target))
    ]
    assert wrong == []


def test_no_module_imports_another_modules_private_names() -> None:
    wrong = [f"{i.module}:{i.line} takes {n} from {i.target}" for i in OWN for n in i.names if n.startswith("_")]
    for module, path in MODULES.items():
        bound = {i.bound for i in OWN if i.module == module and i.bound}
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                wrong.append(f"{module}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert wrong == []


def test_no_import_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for i in OWN:
        if i.target in MODULES and i.target != i.module:
            graph[i.module].add(i.target)
    cycles = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("library", sorted(ROOMS))
def test_each_third_party_library_lives_in_one_room(library: str) -> None:
    users = {unit(i.module) for i in ALL if i.target.split(".")[0] == library}
    assert users <= {ROOMS[library]}, f"{library} is imported outside {ROOMS[library]}: {sorted(users)}"


def test_only_the_runners_start_processes() -> None:
    """A git or tmux call beside its runner would be the one call a remote host does not take."""
    users = {i.module for i in ALL if i.target == "subprocess"}
    assert users <= set(PROCESS_RUNNERS), (
        f"subprocess imported outside the runners: {sorted(users - set(PROCESS_RUNNERS))}"
    )


def test_every_third_party_import_has_a_room() -> None:
    outside = {
        i.target.split(".")[0]
        for i in ALL
        if not i.target.startswith("muxagent") and i.target.split(".")[0] not in sys.stdlib_module_names
    }
    assert outside <= set(ROOMS), f"no room for {sorted(outside - set(ROOMS))}"


def test_package_init_files_hold_no_code() -> None:
    """The hook command and TAB import these on every call: a docstring costs nothing, an import does."""
    for path in PACKAGE.rglob("__init__.py"):
        body = ast.parse(path.read_text()).body
        assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body), path
