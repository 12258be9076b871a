"""The import graph of ``extproc/``: no cycle between files or packages, and every import
pointing down the layer order that README's layout section lists (read from there, so the
document and the check cannot drift apart).

Runtime imports only, read with ``ast``: imports anywhere in a module count (a function-level
import is still an edge when it runs), except under ``if TYPE_CHECKING:``. ``from pkg import
name`` is an edge to the submodule ``pkg.name`` when there is one, else to ``pkg``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "extproc"
README = ROOT / "README.md"


@dataclass
class Graph:
    """Modules (dotted names) and the modules each one imports (ours only)."""

    files: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=dict)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, skipping the bodies of ``if TYPE_CHECKING:`` (not their else)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = name.split(".") if is_package else name.split(".")[:-1]
        anchor = package[: len(package) - node.level + 1]
        base = ".".join(anchor + ([node.module] if node.module else []))
    yield base
    for alias in node.names:
        yield f"{base}.{alias.name}"


def import_graph(root: Path) -> Graph:
    graph = Graph()
    for path in sorted(root.rglob("*.py")):
        graph.files[module_name(path, root)] = path
    for name, path in graph.files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        found: set[str] = set()
        for node in _runtime_imports(tree):
            targets = list(_targets(node, name, is_package))
            if isinstance(node, ast.ImportFrom):
                base, *names = targets
                submodules = [t for t in names if t in graph.files]
                # ``from pkg import a, b``: the submodules named, and pkg itself for the rest.
                found.update(submodules)
                if len(submodules) < len(names) and base in graph.files:
                    found.add(base)
            else:
                found.update(t for t in targets if t in graph.files)
        found.discard(name)
        graph.edges[name] = found
    return graph


def unit_of(module: str) -> str:
    """The layer unit of a module: its top-level subpackage, or itself (a top-level module);
    the root package's own ``__init__`` is ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_of(module: str, graph: Graph) -> str:
    """The package that holds a module (a package's ``__init__`` is the package itself); a
    top-level module counts as a package of its own, so the root is no node."""
    if graph.files[module].name == "__init__.py" or module.count(".") == 1:
        return module
    return module.rsplit(".", 1)[0]


def collapse(graph: Graph, key: object) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for source, targets in graph.edges.items():
        mine = key(source)
        edges.setdefault(mine, set())
        edges[mine].update(key(t) for t in targets if key(t) != mine)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def readme_layers(text: str) -> list[list[str]]:
    """``layer N  unit unit ...  description`` lines of README's layout section, in order."""
    section = text.split("### Layout", 1)[1].split("\n## ", 1)[0]
    layers: list[tuple[int, list[str]]] = []
    for match in re.finditer(r"^layer\s+(\d+)\s+(\S+(?: \S+)*?)(?:\s{2,}.*)?$", section, re.M):
        layers.append((int(match[1]), match[2].split()))
    return [units for _, units in sorted(layers)]


def upward_imports(graph: Graph, layers: list[list[str]]) -> list[str]:
    """Each import from a unit to one in its own layer or above, as ``a.b -> c.d``."""
    rank = {unit: number for number, units in enumerate(layers) for unit in units}
    wrong = []
    for source, targets in sorted(graph.edges.items()):
        for target in sorted(targets):
            mine, theirs = unit_of(source), unit_of(target)
            if mine != theirs and rank[mine] >= rank[theirs]:
                wrong.append(f"{source} -> {target}")
    return wrong


def _describe(edges: dict[str, set[str]], component: list[str]) -> str:
    members = set(component)
    ties = [f"{a} -> {b}" for a in component for b in sorted(edges.get(a, ())) if b in members]
    return "; ".join(ties)


# -- extproc itself --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(PACKAGE)


def test_no_cycle_between_files(graph: Graph) -> None:
    found = cycles(graph.edges)
    assert not found, [_describe(graph.edges, c) for c in found]


def test_no_cycle_between_packages(graph: Graph) -> None:
    for edges in (collapse(graph, unit_of), collapse(graph, lambda m: package_of(m, graph))):
        found = cycles(edges)
        assert not found, [_describe(edges, c) for c in found]


def test_every_import_points_down_the_readme_layers(graph: Graph) -> None:
    layers = readme_layers(README.read_text(encoding="utf-8"))
    listed = [unit for units in layers for unit in units]
    assert len(listed) == len(set(listed)), "a unit is listed in two layers"
    units = {unit_of(module) for module in graph.files}
    assert units == set(listed), "README's layers must list every package and top module"
    assert upward_imports(graph, layers) == []


def test_the_vocabulary_imports_nothing_of_ours(graph: Graph) -> None:
    assert graph.edges["extproc.vocabulary"] == set()


# -- the checks themselves, on a package made to break them ----------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return package


def test_the_checks_see_cycles_and_upward_imports_but_not_type_checking(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {
            "__init__.py": "",
            "top.py": "from pkg.low import a\n",
            "low/__init__.py": "",
            "low/a.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg import top\n"
                "def later():\n    from . import b\n"
            ),
            "low/b.py": "import pkg.low.a\nfrom pkg.mid import c\n",
            "mid/__init__.py": "",
            "mid/c.py": "from ..low.d import leaf\n",
            "low/d.py": "leaf = 1\n",
        },
    )
    graph = import_graph(package)
    assert graph.edges["pkg.low.a"] == {"pkg.low.b"}  # the TYPE_CHECKING import is not one
    assert cycles(graph.edges) == [["pkg.low.a", "pkg.low.b"]]
    assert cycles(collapse(graph, unit_of)) == [["low", "mid"]]
    assert unit_of("pkg") == "__init__"
    assert upward_imports(graph, [["top"], ["mid"], ["low"]]) == ["pkg.low.b -> pkg.mid.c"]
    assert upward_imports(graph, [["top"], ["low", "mid"]]) == [
        "pkg.low.b -> pkg.mid.c",
        "pkg.mid.c -> pkg.low.d",
    ]


def test_layers_are_read_from_the_layout_section() -> None:
    text = (
        "# x\n### Layout\n```\nlayer 2  b c  below\nlayer 1  a    the top\n```\n"
        "## Next\nlayer 3 z\n"
    )
    assert readme_layers(text) == [["a"], ["b", "c"]]
