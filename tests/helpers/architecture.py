"""The import-rule checker of tests/test_architecture.py: a package's own import graph and its
terminal output, read from the source with `ast` (nothing is imported).

The graphs are those of the project's structure check (structure.py): an edge for every
`import pkg...` and `from pkg... import ...` statement, relative imports resolved,
`from pkg.sub import module` counted as importing that module, wherever the statement sits
(module level, inside a function, under `if TYPE_CHECKING:`; each edge records which).
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TYPE_CHECKING_TESTS = frozenset({"TYPE_CHECKING", "typing.TYPE_CHECKING"})
TERMINAL_LIBRARIES = ("typer", "rich", "click")
TERMINAL_CALLS = frozenset({"print", "exit", "quit", "sys.exit", "os._exit"})
TERMINAL_RAISES = frozenset({"SystemExit", "typer.Exit", "typer.Abort"})
Layers = Sequence[tuple[str, frozenset[str]]]


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the package's module it imports, dotted
    path: Path
    line: int
    kind: str  # "module", "function" or "type-checking"

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root.parent).as_posix()}:{self.line}"


def module_files(root: Path) -> dict[str, Path]:
    """Dotted name of every module of the package at `root` (a package's name for its __init__)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


@functools.cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def _statements(body: Iterable[ast.AST], kind: str) -> Iterator[tuple[ast.AST, str]]:
    """Every statement under `body` with where it runs: only statements can hold imports."""
    for node in body:
        yield node, kind
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(
                node.body, "type-checking" if kind == "type-checking" else "function"
            )
        elif isinstance(node, ast.If) and dotted(node.test) in TYPE_CHECKING_TESTS:
            yield from _statements(node.body, "type-checking")
            yield from _statements(node.orelse, kind)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _statements([child], kind)
                elif isinstance(child, ast.excepthandler | ast.match_case):
                    yield from _statements(child.body, kind)


def _targets(
    node: ast.Import | ast.ImportFrom, name: str, is_init: bool, known: set[str]
) -> list[str]:
    pkg = name.split(".")[0]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == pkg]
    base = node.module or ""
    if node.level:  # relative: resolved as structure.py does
        parts = name.split(".")[: None if is_init else -1]
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    if base.split(".")[0] != pkg:
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def collect_imports(root: Path) -> list[Import]:
    """Every import of one of the package's modules by another, in file and line order."""
    files = module_files(root)
    known = set(files)
    found = []
    for name, path in files.items():
        for node, kind in _statements(parse(path).body, "module"):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, name, path.name == "__init__.py", known):
                    if target in known and target != name:
                        found.append(Import(name, target, path, node.lineno, kind))
    return found


def package_of(module: str) -> str:
    """`pkg.sub` for any module under it; a top-level module is its own package."""
    return ".".join(module.split(".")[:2])


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def enter(v: str) -> tuple[str, Iterator[str]]:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        return v, iter(sorted(graph.get(v, ())))

    for start in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if start in index:
            continue
        work = [enter(start)]
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    work.append(enter(w))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = [stack.pop()]
                while comp[-1] != v:
                    comp.append(stack.pop())
                on_stack.difference_update(comp)
                if len(comp) > 1:
                    cycles.append(sorted(comp))
    return sorted(cycles)


def module_graph(imports: Iterable[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        graph[imp.module].add(imp.target)
    return graph


def package_graph(imports: Iterable[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        src, dst = package_of(imp.module), package_of(imp.target)
        if src != dst:  # a package's __init__ re-exporting its children is no cycle
            graph[src].add(dst)
    return graph


def describe_cycles(cycles: list[list[str]], imports: list[Import], root: Path, key) -> list[str]:
    """Each cycle with the import statements that make its edges."""
    out = []
    for comp in cycles:
        members = set(comp)
        edges = {
            f"    {imp.where(root)} {imp.module} -> {imp.target} ({imp.kind})"
            for imp in imports
            if {key(imp.module), key(imp.target)} <= members and key(imp.module) != key(imp.target)
        }
        out.append(" <-> ".join(comp) + "\n" + "\n".join(sorted(edges)))
    return out


def layer_violations(imports: Iterable[Import], layers: Layers, root: Path) -> list[str]:
    """Imports of a package of the same or a higher layer, and packages without a layer."""
    level = {pkg: i for i, (_, pkgs) in enumerate(layers) for pkg in pkgs}
    out = []
    for imp in imports:
        src, dst = package_of(imp.module), package_of(imp.target)
        if src == dst:
            continue
        missing = [p for p in (src, dst) if p not in level]
        if missing:
            out.append(f"{imp.where(root)}: {', '.join(missing)} has no layer in LAYERS")
        elif level[dst] >= level[src]:
            i, j = level[src], level[dst]
            out.append(
                f"{imp.where(root)}: {imp.module} imports {imp.target} ({imp.kind} import); "
                f"rule: layer {i} '{layers[i][0]}' ({src}) may import only lower layers, and "
                f"{dst} is in layer {j} '{layers[j][0]}'"
            )
    return out


def terminal_uses(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, what) for each thing in a module that prints or ends the process."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in TERMINAL_CALLS or name.startswith(("sys.stdout.", "sys.stderr.")):
                found.append((node.lineno, name))
        elif isinstance(node, ast.Raise) and node.exc is not None:
            exc = dotted(node.exc.func if isinstance(node.exc, ast.Call) else node.exc)
            if exc in TERMINAL_RAISES:
                found.append((node.lineno, f"raise {exc}"))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found += [
                (node.lineno, f"import {m}")
                for m in mods
                if m and m.split(".")[0] in TERMINAL_LIBRARIES
            ]
            if isinstance(node, ast.ImportFrom) and node.module in {"sys", "os"}:
                found += [
                    (node.lineno, f"{node.module}.{a.name}")
                    for a in node.names
                    if a.name in {"exit", "_exit", "stdout", "stderr"}
                ]
    return sorted(found)


def output_violations(
    root: Path, allowed: tuple[str, ...], exceptions: Mapping[tuple[str, str], str]
) -> tuple[list[str], set[tuple[str, str]]]:
    """Terminal output or exits outside the `allowed` paths (files, or folders ending in "/"),
    and the listed exceptions that matched something."""
    out, used = [], set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in allowed or rel.startswith(tuple(a for a in allowed if a.endswith("/"))):
            continue
        for line, what in terminal_uses(parse(path)):
            if (rel, what) in exceptions:
                used.add((rel, what))
                continue
            out.append(
                f"{root.name}/{rel}:{line}: {what}; rule: only "
                f"{', '.join(root.name + '/' + a for a in allowed)} print or exit, library code "
                "raises ProgbenchError"
            )
    return out, used
