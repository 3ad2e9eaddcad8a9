"""`scripts/typecheck.py` holds mypy's per-file error counts to a baseline that may only shrink
(issue 22.7). These tests feed it synthetic mypy output; mypy itself never runs here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load_typecheck():
    spec = importlib.util.spec_from_file_location("typecheck", REPO / "scripts" / "typecheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["typecheck"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


typecheck = _load_typecheck()

OUTPUT = """\
progbench/a.py:3: error: Item "None" of "Task | None" has no attribute "name"  [union-attr]
progbench/a.py:10:5: error: Incompatible return value type (got "int", expected "str")  [return-value]
progbench/a.py:10: note: See https://mypy.rtfd.io/en/stable/_refs.html#code-return-value
progbench/sub/b.py:7: error: Missing return statement  [return]
Found 3 errors in 2 files (checked 5 source files)
"""


def _output(counts: dict[str, int]) -> str:
    lines = [
        f"{path}:{i + 1}: error: something  [misc]" for path, n in counts.items() for i in range(n)
    ]
    total = sum(counts.values())
    summary = (
        f"Found {total} errors in {len(counts)} files (checked 9 source files)"
        if total
        else "Success: no issues found in 9 source files"
    )
    return "\n".join([*lines, summary]) + "\n"


def _run(tmp_path: Path, baseline: dict[str, int], now: dict[str, int], *extra: str):
    base = tmp_path / "baseline.json"
    typecheck.write_baseline(base, baseline)
    out = tmp_path / "mypy.txt"
    out.write_text(_output(now))
    code = typecheck.main(["--baseline", str(base), "--mypy-output", str(out), *extra])
    return code, typecheck.load_baseline(base)


def test_counts_errors_per_file_not_notes_or_summary():
    assert typecheck.count_errors(OUTPUT) == {"progbench/a.py": 2, "progbench/sub/b.py": 1}
    assert typecheck.count_errors("Success: no issues found in 5 source files\n") == {}


def test_output_without_summary_or_with_unrecognised_errors_never_passes(tmp_path, capsys):
    assert typecheck.check_complete(OUTPUT) is None
    assert typecheck.check_complete(_output({})) is None
    # mypy not installed: `python -m mypy` exits 1 (as for type errors) and prints no summary
    assert "summary" in typecheck.check_complete("/usr/bin/python: No module named mypy\n")
    assert "3 error lines" in typecheck.check_complete(OUTPUT.replace("3 errors", "4 errors"))

    base = tmp_path / "baseline.json"
    typecheck.write_baseline(base, {})
    out = tmp_path / "mypy.txt"
    out.write_text("/usr/bin/python: No module named mypy\n")
    assert typecheck.main(["--baseline", str(base), "--mypy-output", str(out)]) == 2
    assert typecheck.main(["--baseline", str(base), "--mypy-output", str(out), "--update"]) == 2
    assert "cannot compare" in capsys.readouterr().out


def test_compare_growth_new_file_shrink_and_vanished_file():
    result = typecheck.compare(
        {"a.py": 2, "b.py": 3, "gone.py": 4}, {"a.py": 3, "b.py": 1, "new.py": 1}
    )
    assert result.worse == [("a.py", 2, 3), ("new.py", 0, 1)]
    assert result.better == [("b.py", 3, 1), ("gone.py", 4, 0)]
    assert not result.ok


def test_growth_fails_and_names_the_file(tmp_path, capsys):
    code, _ = _run(tmp_path, {"a.py": 2}, {"a.py": 3})
    assert code == 1
    assert "a.py: 2 -> 3" in capsys.readouterr().out


def test_new_file_with_errors_fails(tmp_path, capsys):
    code, _ = _run(tmp_path, {"a.py": 2}, {"a.py": 2, "new.py": 1})
    assert code == 1
    assert "new.py: 0 -> 1 (new file)" in capsys.readouterr().out


def test_shrinking_or_a_vanished_file_passes(tmp_path, capsys):
    code, _ = _run(tmp_path, {"a.py": 2, "gone.py": 1}, {"a.py": 1})
    assert code == 0
    assert "--update" in capsys.readouterr().out


def test_update_shrinks_the_baseline_but_refuses_growth(tmp_path):
    code, after = _run(tmp_path, {"a.py": 2, "b.py": 1}, {"a.py": 1}, "--update")
    assert (code, after) == (0, {"a.py": 1})

    code, after = _run(tmp_path, {"a.py": 1}, {"a.py": 2}, "--update")
    assert (code, after) == (1, {"a.py": 1})
    code, after = _run(tmp_path, {"a.py": 1}, {"a.py": 2}, "--update", "--allow-growth")
    assert (code, after) == (0, {"a.py": 2})


def test_the_committed_baseline_is_readable():
    data = json.loads((REPO / "scripts" / "mypy-baseline.json").read_text())
    assert data["total"] == sum(data["files"].values())
    assert all(path.startswith("progbench/") and n > 0 for path, n in data["files"].items())


@pytest.mark.parametrize("flag", [[], ["--update"]])
def test_a_clean_run_passes(tmp_path, flag):
    code, after = _run(tmp_path, {}, {}, *flag)
    assert (code, after) == (0, {})
