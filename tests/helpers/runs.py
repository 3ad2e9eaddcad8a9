"""Hand-built finished runs with given test predictions, for evaluator tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from progbench.evaluate.finish import finish_scored_run
from progbench.runs import RunCost, RunSpec, run_dir_for, write_spec

Y = [0, 0, 1, 1, 0, 1]
GOOD = [0.1, 0.2, 0.8, 0.9, 0.3, 0.7]  # perfectly separated at 0.5
BAD = [0.9, 0.8, 0.2, 0.1, 0.7, 0.3]  # perfectly inverted


def build_run(
    root: Path,
    y_test: list[int],
    p_test: list[float],
    fold: int = 0,
    shots: int | None = None,
    repeat: int | None = None,
    cost: RunCost | None = None,
    patients: list[str] | None = None,
    strategy: str = "lora",
) -> Path:
    """A finished run with a tiny balanced validation part and the given test predictions."""
    spec = RunSpec(
        task="t",
        backbone="b",
        weights="random",
        strategy=strategy,
        regime="fewshot" if shots else "full",
        fold=fold,
        shots=shots,
        repeat=repeat,
        scheme="kfold",
    )
    run_dir = run_dir_for(root, spec)
    write_spec(run_dir, spec)
    tag = f"f{fold}r{repeat}"
    test_patients = patients or [f"f{fold}-p{i}" for i in range(len(y_test))]
    df = pd.DataFrame(
        {
            "image_id": [f"{tag}-v{i}" for i in range(4)]
            + [f"{tag}-t{i}" for i in range(len(y_test))],
            "patient_id": [f"{tag}-vp{i}" for i in range(4)] + test_patients,
            "split": ["val"] * 4 + ["test"] * len(y_test),
            "y_true": [0, 1, 0, 1, *y_test],
            "p_pos": [0.2, 0.8, 0.3, 0.9, *p_test],
        }
    )
    finish_scored_run(run_dir, df, cost=cost)
    return run_dir
