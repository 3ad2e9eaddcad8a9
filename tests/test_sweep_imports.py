"""`progbench sweep plan` imports neither torch, scikit-learn nor pandas (issue 14): they take
seconds to load and planning needs none of them, so a top-level import of one of them on the
plan path would make the command slow again. This is a test of imports, not of time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "sklearn", "pandas")

# The library path (load, plan, the cost modules), then the command as a user runs it (its
# table printing included); the last line is what either loaded.
PLAN_SCRIPT = f"""
import contextlib, io, json, sys
import progbench.commands.sweep, progbench.sweep.plan, progbench.sweep.cost
from progbench.sweep.spec import load_sweep
from progbench.sweep.plan import make_plan

plan = make_plan(load_sweep("ruffini2025"))
assert plan.applicable, "the reference sweep planned no cells"
library = sorted(m for m in {HEAVY!r} if m in sys.modules)

from progbench.cli import main

out = io.StringIO()
try:
    with contextlib.redirect_stdout(out):
        main(["sweep", "plan", "ruffini2025"])
except SystemExit as exit_:
    assert not exit_.code, exit_.code
assert "ruffini2025" in out.getvalue(), out.getvalue()[-2000:]
command = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps({{"library": library, "command": command}}))
"""


@pytest.mark.slow  # a subprocess: a fresh interpreter is the only way to see what loads
def test_planning_the_reference_sweep_loads_no_torch_sklearn_or_pandas(tmp_path: Path) -> None:
    # A preset's relative paths start at the current folder: an empty one, so no task is
    # prepared and nothing reads a manifest (which does need pandas).
    r = subprocess.run(
        [sys.executable, "-c", PLAN_SCRIPT], cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    assert loaded == {"library": [], "command": []}, loaded
