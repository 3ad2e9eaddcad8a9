#!/usr/bin/env python3
"""Run mypy on progbench and hold its errors to a baseline that may only shrink.

mypy's settings live in pyproject.toml ([tool.mypy]). The baseline, scripts/mypy-baseline.json,
records how many errors each file had when it was last updated: per-file counts, not line
numbers, which drift with every edit. The check fails when a file has more errors than its
baseline, or when a file that is not in the baseline has any; it prints what got worse. Files
with fewer errors pass (and the summary suggests `--update`); a file that disappeared is fine.

    python scripts/typecheck.py                  # run mypy, compare with the baseline
    python scripts/typecheck.py --update         # rewrite the baseline (counts may only shrink)
    python scripts/typecheck.py --update --allow-growth   # ... or grow, deliberately
    python scripts/typecheck.py --mypy-output F  # compare a saved mypy output instead of running it
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "scripts" / "mypy-baseline.json"

# "path/to/file.py:12: error: message  [code]" (a column may follow the line number).
_ERROR = re.compile(r"^(?P<path>[^:\n]+\.pyi?):\d+(?::\d+)?: error: ")
# mypy's last line: "Found 3 errors in 2 files (checked ...)" or "Success: no issues found ...".
_SUMMARY = re.compile(r"^(Found (?P<n>\d+) errors? in \d+ files?|Success: no issues found)")


def count_errors(mypy_output: str) -> dict[str, int]:
    """Errors per file in mypy's normal output (notes and the summary line are not counted)."""
    counts: Counter[str] = Counter()
    for line in mypy_output.splitlines():
        match = _ERROR.match(line.strip())
        if match:
            counts[match.group("path").replace("\\", "/")] += 1
    return dict(sorted(counts.items()))


@dataclass
class Comparison:
    worse: list[tuple[str, int, int]] = field(default_factory=list)  # (file, baseline, now)
    better: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.worse


def compare(baseline: dict[str, int], current: dict[str, int]) -> Comparison:
    """Which files have more errors than their baseline (a new file counts from 0), which fewer."""
    result = Comparison()
    for path in sorted(set(baseline) | set(current)):
        before, now = baseline.get(path, 0), current.get(path, 0)
        if now > before:
            result.worse.append((path, before, now))
        elif now < before:
            result.better.append((path, before, now))
    return result


def load_baseline(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {str(k): int(v) for k, v in data.get("files", {}).items()}


def write_baseline(path: Path, counts: dict[str, int]) -> None:
    data = {
        "comment": "mypy errors per file that scripts/typecheck.py allows; may only shrink "
        "(python scripts/typecheck.py --update)",
        "total": sum(counts.values()),
        "files": {k: v for k, v in sorted(counts.items()) if v > 0},
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def check_complete(mypy_output: str) -> str | None:
    """Why `mypy_output` is not a finished mypy run whose errors were all counted, or None.

    A run that never started (mypy not installed exits 1, like type errors do) or crashed has
    no summary line, and must never pass as "no errors"."""
    summaries = [m for line in mypy_output.splitlines() if (m := _SUMMARY.match(line.strip()))]
    if not summaries:
        return "no mypy summary line (did mypy run? is it installed?)"
    expected = int(summaries[-1].group("n") or 0)
    counted = sum(count_errors(mypy_output).values())
    if counted != expected:
        return f"mypy reports {expected} errors but {counted} error lines were recognised"
    return None


def run_mypy() -> str:
    """mypy's output for the packages pyproject.toml names; exits on a crash or a usage error."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-color-output", "--no-pretty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    # 0: clean, 1: type errors; anything else (2) is mypy failing to run, never a pass.
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stdout + proc.stderr)
        sys.exit(f"typecheck: mypy failed to run (exit {proc.returncode})")
    return proc.stdout + proc.stderr


def _describe(rows: list[tuple[str, int, int]]) -> str:
    return "\n".join(
        f"  {path}: {before} -> {now}" + (" (new file)" if before == 0 else "")
        for path, before, now in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite the baseline")
    parser.add_argument(
        "--allow-growth", action="store_true", help="with --update: let counts grow"
    )
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--mypy-output", type=Path, help="read mypy's output from this file")
    args = parser.parse_args(argv)

    output = args.mypy_output.read_text() if args.mypy_output else run_mypy()
    problem = check_complete(output)
    if problem:
        print(output, end="")
        print(f"typecheck: cannot compare with the baseline: {problem}")
        return 2
    current = count_errors(output)
    baseline = load_baseline(args.baseline)
    result = compare(baseline, current)
    total_now, total_before = sum(current.values()), sum(baseline.values())

    if args.update:
        if result.worse and not args.allow_growth:
            print("typecheck: refusing to grow the baseline (pass --allow-growth to mean it):")
            print(_describe(result.worse))
            return 1
        write_baseline(args.baseline, current)
        print(
            f"typecheck: baseline rewritten: {total_before} -> {total_now} errors "
            f"in {len(current)} files"
        )
        return 0

    if result.worse:
        print(output, end="" if output.endswith("\n") or not output else "\n")
        print("typecheck: more mypy errors than the baseline allows:")
        print(_describe(result.worse))
        print("Fix them (the errors are listed above), or if growth is really meant: ")
        print("  python scripts/typecheck.py --update --allow-growth")
        return 1
    message = (
        f"typecheck: ok, {total_now} mypy errors in {len(current)} files (baseline {total_before})"
    )
    if result.better:
        message += (
            f"; {len(result.better)} files improved, "
            "run `python scripts/typecheck.py --update` to lock that in"
        )
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
