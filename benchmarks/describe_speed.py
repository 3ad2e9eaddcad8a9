"""Wall time of the commands that only describe models or weights, each in a fresh process.

    python benchmarks/describe_speed.py [--baseline DIR] [--repeats 3]
        [--out benchmarks/results/describe_speed.json]

Commands: `progbench models --refresh` (the study's 11 backbones, and the README's three),
`progbench weights ls` (an empty folder; `--help` too), `progbench weights fetch` of a folder
already there. Each runs as `python -m progbench.cli ...` with the checkout's progbench first on
PYTHONPATH; `--baseline DIR` is another progbench tree (e.g. `git archive <commit> | tar -x -C
DIR`), run alternately with this one so that load on a shared machine hits both. The best of
`--repeats` is kept per command and tree. Also records what each command imported of torch,
transformers, peft and pandas. Prints a summary and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from progbench.provenance import git_sha, library_versions, now_iso

HERE = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "pandas")
# Runs `progbench.cli.main(argv)` and reports the heavy modules it imported on stderr.
RUNNER = f"""
import json, os, sys
import progbench
sys.stderr.write("LOADED-FROM " + os.path.dirname(os.path.dirname(progbench.__file__)) + "\\n")
from progbench.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit_:
    assert not exit_.code, exit_.code
sys.stderr.write("LOADED " + json.dumps([m for m in {HEAVY!r} if m in sys.modules]) + "\\n")
"""


def commands(weights: Path) -> dict[str, list[str]]:
    return {
        "models (11 backbones)": ["models", "--refresh", "--json"],
        "models --backbone resnet18,dinov2-s,medclip-r50": [
            "models",
            "--refresh",
            "--backbone",
            "resnet18,dinov2-s,medclip-r50",
        ],
        "weights ls --help": ["weights", "ls", "--help"],
        "weights ls": ["weights", "ls", str(weights / "empty")],
        "weights fetch (already there)": ["weights", "fetch", "resnet18", "--to", str(weights)],
    }


def prepare_weights(root: Path) -> None:
    """A weights folder holding resnet18 (fake bytes, recorded in weights.json)."""
    from progbench.config import BackboneSpec
    from progbench.models.weights import fetch_weights

    def fake(spec: BackboneSpec, to_dir: Path) -> None:
        (to_dir / "resnet18-f37072fd.pth").write_bytes(b"not really weights")

    fetch_weights(["resnet18"], root, fetcher=fake)


def run_once(tree: Path, argv: list[str], cache: Path) -> tuple[float, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PROGBENCH_CACHE": str(cache)}
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PROGBENCH_WEIGHTS_DIR"):
        env.pop(var, None)
    t = time.perf_counter()
    r = subprocess.run(  # cwd: `-c` puts the current folder first on sys.path
        [sys.executable, "-c", RUNNER, *argv], env=env, cwd=cache.parent, capture_output=True,
        text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t
    if f"LOADED-FROM {tree}" not in r.stderr:
        raise RuntimeError(f"{argv} did not import progbench from {tree}:\n{r.stderr[-3000:]}")
    if r.returncode != 0:
        raise RuntimeError(f"{tree}: {argv} failed:\n{r.stderr[-3000:]}")
    loaded = next(ln for ln in r.stderr.splitlines() if ln.startswith("LOADED "))
    return wall, json.loads(loaded.removeprefix("LOADED "))


def measure(trees: dict[str, Path], repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights"
        prepare_weights(weights)
        for label, argv in commands(weights).items():
            out[label] = {name: {"walls": [], "loaded": None} for name in trees}
            for _ in range(repeats):
                for name, tree in trees.items():  # alternated: drift hits every tree
                    wall, loaded = run_once(tree, argv, Path(tmp) / f"cache-{name}")
                    out[label][name]["walls"].append(round(wall, 2))
                    out[label][name]["loaded"] = loaded
            for name in trees:
                out[label][name]["best"] = min(out[label][name]["walls"])
            print(label, {n: (v["best"], v["loaded"]) for n, v in out[label].items()}, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another progbench tree to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "benchmarks/results/describe_speed.json")
    args = parser.parse_args()
    trees = {"this": HERE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    results = measure(trees, args.repeats)
    record = {
        "when": now_iso(),
        "git_sha": git_sha(),
        "versions": library_versions(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "repeats": args.repeats,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
