"""The package's shape: no import circles between tamnas modules, and small modules.

Every import of a `tamnas` module counts, at module level, inside functions and
under `if TYPE_CHECKING:` alike: a circle that only a lazy import keeps from
failing is still two modules that cannot be understood apart.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import statistics
from pathlib import Path

import tamnas

MAX_LINES = 400
MEDIAN_LINES = 200


def package_modules() -> dict[str, Path]:
    """Every module of the package (packages as their __init__.py), by dotted name."""
    found = {"tamnas": Path(tamnas.__file__)}
    for info in pkgutil.walk_packages(tamnas.__path__, "tamnas."):
        found[info.name] = Path(importlib.util.find_spec(info.name).origin)
    return found


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved against `module`)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The tamnas modules `module` imports anywhere in its source.

    `from tamnas.x import y` counts as importing `tamnas.x.y` when that is a
    module of the package and as importing `tamnas.x` otherwise.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif source in known:
                    out.add(source)
    out.discard(module)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def circle_groups(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (each sorted), in a stable order.

    Tarjan's algorithm, iterative so that deep graphs need no recursion.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a closed path a -> ... -> a) through each group of `circle_groups`."""
    return [_cycle_in(graph, set(g)) for g in circle_groups(graph)]


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A closed path through the group, from its first member back to it (breadth first)."""
    start = min(group)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & group):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1] + [start]
                if child not in parent:
                    parent[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle through {sorted(group)}")


def test_cycle_finder_names_the_circle_and_passes_a_tree():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    graph.update(d={"f"}, f={"d", "b"})          # d joins a-b-c's circle; x <-> y is a second one
    graph.update(x={"y"}, y={"x", "a"})
    assert circle_groups(graph) == [["a", "b", "c", "d", "f"], ["x", "y"]]
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["x", "y", "x"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_resolver_sees_function_level_and_submodule_imports(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("from tamnas.supernets import shufflenet, build_space\n"
                   "from . import base\n"
                   "def f():\n    import tamnas.search.nsga2\n    from tamnas.supernets.base import Arch\n")
    known = {"tamnas.supernets", "tamnas.supernets.shufflenet", "tamnas.supernets.base",
             "tamnas.supernets.mod", "tamnas.search.nsga2"}
    assert imported_modules("tamnas.supernets.mod", src, known) == {
        "tamnas.supernets", "tamnas.supernets.shufflenet", "tamnas.supernets.base",
        "tamnas.search.nsga2"}


def test_no_import_circles():
    graph = import_graph()
    assert "tamnas.supernets.shufflenet.supernet" in graph        # the walk reaches sub-packages
    report = []
    for group in circle_groups(graph):
        cycle = _cycle_in(graph, set(group))
        tied = f" (tied in the same circle: {', '.join(group)})" if len(group) > len(cycle) - 1 else ""
        report.append(" -> ".join(cycle) + tied)
    assert not report, "import circles: " + "; ".join(report)


def _line_counts() -> dict[str, int]:
    return {name: len(path.read_text().splitlines()) for name, path in package_modules().items()}


def test_no_module_over_the_line_limit():
    long = {name: n for name, n in _line_counts().items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them along their jobs): {long}"


def test_median_module_is_small():
    median = statistics.median(_line_counts().values())
    assert median < MEDIAN_LINES, f"median module has {median} lines; keep it under {MEDIAN_LINES}"
