"""The import rules of docs/ARCHITECTURE.md, checked on the source with `ast` (nothing is imported;
the checker is tests/helpers/architecture.py).

- No import cycle between the packages of progbench, nor between its modules. The graphs are
  the ones the project's structure check (structure.py) draws, edge for edge: one for every
  `import progbench...` and `from progbench... import ...` (relative imports resolved),
  wherever it sits: at module level, inside a function (a lazy import) and under
  `if TYPE_CHECKING:`. Counting every
  kind is deliberate: a lazy or type-only import that closes a loop is still a loop in the
  design, only hidden from the interpreter. Today no function-level import hides a cycle (the
  package graph is acyclic with every kind counted, and so is the module graph of module-level
  imports alone); progbench's lazy imports only keep torch, zarr and the like out of
  `progbench --help`. The one module cycle when this test was written,
  progbench.data.prepare.pipeline <-> progbench.data.prepare.write, is closed by a TYPE_CHECKING
  import in write.py and is being removed on another branch; `test_no_module_cycles` fails on it
  until that lands.
- A package imports only packages of lower layers (LAYERS below), never its own layer or a higher
  one. A "package" is a sub-package or top-level module of progbench (`progbench.train`,
  `progbench.cli`); imports inside one package are free (the module-cycle rule covers them).
- Only progbench/cli.py and progbench/commands/ write to the terminal or end the process: no
  `print`, `sys.exit`, `exit()`, `os._exit`, `raise SystemExit`, `raise typer.Exit`,
  `sys.stdout` / `sys.stderr` writes, and no typer / rich / click imports anywhere else. Library
  code raises progbench.errors.ProgbenchError subclasses and returns plain data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.architecture import (
    Import,
    collect_imports,
    describe_cycles,
    find_cycles,
    layer_violations,
    module_files,
    module_graph,
    output_violations,
    package_graph,
    package_of,
)

ROOT = Path(__file__).resolve().parents[1] / "progbench"

# Bottom to top: (layer name, its packages). A package may import the packages of lower layers
# only. Derived from the imports the code has (docs/ARCHITECTURE.md, "Import rules"); a new
# package must be placed here.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("core", frozenset({"progbench", "progbench.errors"})),
    (
        "foundations",
        frozenset(
            {
                "progbench.atomic",
                "progbench.locking",
                "progbench.provenance",
                "progbench.workers",
                "progbench.accel",
                "progbench.config",
            }
        ),
    ),
    ("data", frozenset({"progbench.data"})),
    ("stores and run format", frozenset({"progbench.cache", "progbench.runs"})),
    ("models and evaluator", frozenset({"progbench.models", "progbench.evaluate"})),
    ("extraction and report", frozenset({"progbench.extract", "progbench.report"})),
    ("training", frozenset({"progbench.train"})),
    ("audit", frozenset({"progbench.audit"})),
    ("applications", frozenset({"progbench.predict", "progbench.sweep"})),
    ("demo", frozenset({"progbench.demo"})),
    ("commands", frozenset({"progbench.commands"})),
    ("entry point", frozenset({"progbench.cli"})),
)

# Where terminal output and process exits belong: the CLI (a folder ends in "/").
OUTPUT_ALLOWED = ("cli.py", "commands/")

# Legitimate exceptions to the output rule: (path under progbench/, what) -> why.
OUTPUT_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("workers.py", "os._exit"): "a pool worker whose command died ends itself from its watchdog "
    "thread (SystemExit in a thread would not end the process); no user sees it",
}


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return collect_imports(ROOT)


def test_no_package_cycles(imports: list[Import]) -> None:
    cycles = find_cycles(package_graph(imports))
    assert not cycles, "package import cycles:\n" + "\n".join(
        describe_cycles(cycles, imports, ROOT, package_of)
    )


def test_no_module_cycles(imports: list[Import]) -> None:
    cycles = find_cycles(module_graph(imports))
    assert not cycles, "module import cycles:\n" + "\n".join(
        describe_cycles(cycles, imports, ROOT, lambda m: m)
    )


def test_every_package_has_a_layer() -> None:
    placed = {pkg for _, pkgs in LAYERS for pkg in pkgs}
    packages = {package_of(m) for m in module_files(ROOT)}
    assert packages == placed, (
        f"packages without a layer: {sorted(packages - placed)}; "
        f"layers naming no package: {sorted(placed - packages)}"
    )


def test_layers(imports: list[Import]) -> None:
    bad = layer_violations(imports, LAYERS, ROOT)
    assert not bad, "imports against the layering (docs/ARCHITECTURE.md):\n" + "\n".join(bad)


def test_only_the_cli_prints_or_exits() -> None:
    bad, used = output_violations(ROOT, OUTPUT_ALLOWED, OUTPUT_EXCEPTIONS)
    assert not bad, "terminal output or exits in library code:\n" + "\n".join(bad)
    stale = set(OUTPUT_EXCEPTIONS) - used
    assert not stale, f"exceptions that match nothing any more (remove them): {sorted(stale)}"


# The checker on synthetic trees: every rule above must be able to fail.


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "progbench"
    for rel, src in {"__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(src)
    return root


def test_checker_finds_cycles_through_lazy_relative_and_type_only_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "low/__init__.py": "",
            "low/a.py": "def f():\n    from ..high import b\n",  # lazy and relative
            "high/__init__.py": "",
            "high/b.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
            "    from progbench.low.a import f\n",
            "solo/__init__.py": "from progbench.solo import c\n",  # a re-export: no package cycle
            "solo/c.py": "try:\n    import progbench.solo\nexcept ImportError:\n    pass\n",
            "ok.py": "class K:\n    import progbench.errors\n",  # a class body runs on import
            "errors.py": "",
        },
    )
    imports = collect_imports(root)
    kinds = {(i.module, i.target): i.kind for i in imports}
    assert kinds == {
        ("progbench.low.a", "progbench.high.b"): "function",
        ("progbench.high.b", "progbench.low.a"): "type-checking",
        ("progbench.solo", "progbench.solo.c"): "module",
        ("progbench.solo.c", "progbench.solo"): "module",
        ("progbench.ok", "progbench.errors"): "module",
    }
    assert find_cycles(package_graph(imports)) == [["progbench.high", "progbench.low"]]
    assert find_cycles(module_graph(imports)) == [
        ["progbench.high.b", "progbench.low.a"],
        ["progbench.solo", "progbench.solo.c"],
    ]
    text = describe_cycles(find_cycles(package_graph(imports)), imports, root, package_of)[0]
    assert "progbench/low/a.py:2 progbench.low.a -> progbench.high.b (function)" in text


def test_checker_names_the_module_line_and_rule_of_a_layer_violation(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "errors.py": "",
            "low.py": "import os\n\nfrom progbench import errors\nfrom progbench.high import x\n",
            "high/__init__.py": "",
            "high/x.py": "from progbench import low\n",
            "stray.py": "from progbench import errors\n",
        },
    )
    layers = (
        ("base", frozenset({"progbench", "progbench.errors"})),
        ("low", frozenset({"progbench.low"})),
        ("high", frozenset({"progbench.high"})),
    )
    assert layer_violations(collect_imports(root), layers, root) == [
        "progbench/low.py:4: progbench.low imports progbench.high.x (module import); rule: "
        "layer 1 'low' (progbench.low) may import only lower layers, and progbench.high is in "
        "layer 2 'high'",
        "progbench/stray.py:1: progbench.stray has no layer in LAYERS",
    ]


def test_checker_finds_output_and_exits_outside_the_cli(tmp_path: Path) -> None:
    body = (
        "import sys\nimport typer\nfrom rich.console import Console\n"
        "def f():\n    print('x')\n    sys.exit(2)\n    sys.stdout.write('x')\n"
        "    raise typer.Exit(code=1)\n\ndef g():\n    raise SystemExit\n"
    )
    root = _tree(
        tmp_path,
        {"lib.py": body, "cli.py": body, "commands/__init__.py": "", "commands/x.py": body},
    )
    bad, used = output_violations(root, OUTPUT_ALLOWED, {("lib.py", "sys.exit"): "a test"})
    assert used == {("lib.py", "sys.exit")}
    assert [b.split(";")[0] for b in bad] == [
        "progbench/lib.py:2: import typer",
        "progbench/lib.py:3: import rich.console",
        "progbench/lib.py:5: print",
        "progbench/lib.py:7: sys.stdout.write",
        "progbench/lib.py:8: raise typer.Exit",
        "progbench/lib.py:11: raise SystemExit",
    ]
    assert bad[0].endswith(
        "rule: only progbench/cli.py, progbench/commands/ print or exit, library code raises "
        "ProgbenchError"
    )
