"""Imports run one way (components ← monitoring ← serving, pipelines above all), form no circle, and work alone.

The static checks read every import statement of the four packages with `ast`: at module level, inside
functions (including KFP component bodies) and under `if TYPE_CHECKING:`. A function-level import still
runs, so it counts in the layering and in the circles: moving an import into a function does not remove
a circle, it only delays it.
"""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROJECT = "ticketflow"
# Lowest floor first: a module may import from its own package and the ones before it.
LAYERS = ("components", "monitoring", "serving", "pipelines")
DYNAMIC_IMPORTERS = {"import_module", "__import__"}


def module_name(path: Path) -> str:
    """`serving/predictor.py` → `ticketflow.serving.predictor`; a package's `__init__.py` → the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PROJECT, *parts))


def project_files() -> dict[str, Path]:
    """Every module of the four packages, by dotted name."""
    files: dict[str, Path] = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[module_name(path)] = path
    return files


MODULES = project_files()


@dataclass(frozen=True)
class ImportStatement:
    """One name imported by one statement (or one `import_module`/`__import__` call)."""

    importer: str
    target: str  # dotted name, relative imports resolved; for `from m import x`, `m.x` when that is a module
    file: str  # repo-relative
    line: int
    in_function: bool
    relative: bool = False
    dynamic: bool = False

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" + (", in a function" if self.in_function else "")

    @property
    def project_module(self) -> str | None:
        """The ticketflow module this statement loads (the longest known prefix of the target), if any."""
        parts = self.target.split(".")
        for end in range(len(parts), 1, -1):
            if ".".join(parts[:end]) in MODULES:
                return ".".join(parts[:end])
        return None


def _nodes(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with whether it sits inside a function body (lambdas included)."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        yield node, in_function
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def _resolve_relative(importer: str, is_package: bool, module: str | None, level: int) -> str:
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _dynamic_target(call: ast.Call) -> str | None:
    """The module named by `importlib.import_module(...)` or `__import__(...)`, "" when not a literal."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in DYNAMIC_IMPORTERS:
        return None
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return ""


def imports_of(importer: str, path: Path) -> list[ImportStatement]:
    """Every import statement of one module, in source order."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    file = str(path.relative_to(ROOT))
    found: list[ImportStatement] = []
    for node, in_function in _nodes(tree):
        if isinstance(node, ast.Import):
            found += [ImportStatement(importer, a.name, file, node.lineno, in_function) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            relative = node.level > 0
            base = node.module or ""
            if relative:
                base = _resolve_relative(importer, path.name == "__init__.py", node.module, node.level)
            # `from m import a, b` loads m once; `from package import module` loads the module.
            targets = dict.fromkeys(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
            found += [ImportStatement(importer, t, file, node.lineno, in_function, relative) for t in targets]
        elif isinstance(node, ast.Call) and (target := _dynamic_target(node)) is not None:
            found.append(ImportStatement(importer, target, file, node.lineno, in_function, dynamic=True))
    return sorted(found, key=lambda s: s.line)


STATEMENTS = [s for name, path in MODULES.items() for s in imports_of(name, path)]


def layer(module: str) -> int:
    """The floor of a ticketflow module: 0 for components up to 3 for pipelines."""
    return LAYERS.index(module.split(".")[1])


def test_the_scan_sees_every_package() -> None:
    # Guards the checks below against passing because they read nothing.
    assert {name.split(".")[1] for name in MODULES} == set(LAYERS)
    assert any(s.target == "ticketflow.components.config" for s in STATEMENTS)


def test_imports_come_from_the_same_or_a_lower_layer() -> None:
    violations = [
        f"{s.where}: {s.importer} imports {s.project_module} "
        f"({LAYERS[layer(s.project_module)]} is above {LAYERS[layer(s.importer)]})"
        for s in STATEMENTS
        if s.project_module and layer(s.project_module) > layer(s.importer)
    ]
    assert not violations, "imports running back up the layers:\n" + "\n".join(violations)


def import_graph() -> dict[str, dict[str, ImportStatement]]:
    """Importer → imported ticketflow module → the first statement making that edge."""
    graph: dict[str, dict[str, ImportStatement]] = {name: {} for name in MODULES}
    for s in STATEMENTS:
        if s.project_module:
            graph[s.importer].setdefault(s.project_module, s)
    return graph


def strongly_connected(graph: dict[str, dict[str, ImportStatement]]) -> list[list[str]]:
    """Tarjan's strongly connected components (each a list of modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def shortest_cycle(graph: dict[str, dict[str, ImportStatement]], start: str, members: set[str]) -> list[str]:
    """The shortest import circle from `start` back to itself inside one strongly connected component."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node]):
                if successor == start:
                    return [*paths[node], start]
                if successor in members and successor not in paths:
                    paths[successor] = [*paths[node], successor]
                    following.append(successor)
        frontier = following
    return []


def describe_cycle(graph: dict[str, dict[str, ImportStatement]], cycle: list[str]) -> str:
    """One circle on one line: each arrow is followed by the statement making it."""
    return "  " + cycle[0] + "".join(f" → {b} ({graph[a][b].where})" for a, b in itertools.pairwise(cycle))


def test_no_import_circles() -> None:
    graph = import_graph()
    reports = []
    for component in strongly_connected(graph):
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        cycles = {tuple(shortest_cycle(graph, member, set(component))) for member in component}
        # One circle per member, deduplicated by rotation, names every file that takes part.
        seen: set[frozenset[tuple[str, str]]] = set()
        described = []
        for cycle in sorted(cycles, key=len):
            edges = frozenset(itertools.pairwise(cycle))
            if edges not in seen:
                seen.add(edges)
                described.append(describe_cycle(graph, list(cycle)))
        reports.append(f"circle among {', '.join(component)}:\n" + "\n".join(described))
    assert not reports, "import circles (function-level imports count):\n" + "\n".join(reports)


def test_no_dynamic_import_of_project_modules() -> None:
    violations = [
        f"{s.where}: {s.importer} imports {s.target or 'a computed name'} dynamically"
        for s in STATEMENTS
        if s.dynamic and (not s.target or s.target.startswith(".") or s.target.split(".")[0] in (PROJECT, *LAYERS))
    ]
    assert not violations, "importlib.import_module/__import__ of project modules:\n" + "\n".join(violations)


def test_no_import_by_the_old_top_level_names() -> None:
    violations = [
        f"{s.where}: {s.importer} imports {s.target!r}; say ticketflow.{s.target}"
        for s in STATEMENTS
        if not s.relative and s.target.split(".")[0] in LAYERS
    ]
    assert not violations, "imports of the generic top-level names:\n" + "\n".join(violations)


@pytest.mark.parametrize("package", LAYERS)
def test_each_package_imports_alone(package: str, tmp_path: Path) -> None:
    # From a temporary working directory, so the repo root is not on sys.path: only the installed names work.
    proc = subprocess.run(
        [sys.executable, "-c", f"import {PROJECT}.{package}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


# One interpreter imports the third-party modules our modules import at module level, then forks one child
# per ticketflow module; each child starts with no ticketflow module loaded and imports one. That catches
# order-dependent imports among ours at a fork's cost instead of a fresh interpreter's (torch, mlflow and
# kserve take seconds each). Input comes on stdin: kserve parses sys.argv when imported.
FORK_IMPORTS = textwrap.dedent(
    """
    import importlib, json, os, sys, traceback

    request = json.loads(sys.stdin.read())
    for name in request["preload"]:
        try:
            importlib.import_module(name)
        except Exception:
            pass  # the child importing the module that needs it reports the failure
    results = {}
    for name in request["modules"]:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            try:
                importlib.import_module(name)
                message = b""
            except BaseException:
                message = traceback.format_exc().encode()
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(message)
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        results[name] = message or ("" if status == 0 else f"the child died (wait status {status})")
    with open(request["out"], "w") as f:
        json.dump(results, f)
    """
)


def third_party_modules() -> list[str]:
    """What our modules import at module level that is not ours (preloaded before the forks)."""
    names = {
        s.target
        for s in STATEMENTS
        if not s.in_function and not s.dynamic and not s.relative and s.target.split(".")[0] not in (PROJECT, *LAYERS)
    }
    return sorted(names - {"__future__"})


@pytest.fixture(scope="module")
def import_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each ticketflow module imported alone: module → traceback, "" when it imported."""
    workdir = tmp_path_factory.mktemp("imports")
    out = workdir / "results.json"
    request = {"preload": third_party_modules(), "modules": sorted(MODULES), "out": str(out)}
    proc = subprocess.run(
        [sys.executable, "-c", FORK_IMPORTS],
        input=json.dumps(request),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_alone(module: str, import_errors: dict[str, str]) -> None:
    assert not import_errors[module], f"{module} fails when imported first:\n{import_errors[module][-3000:]}"
