"""The checks a manifest gets anyway (progbench.data.manifest), run on the manifest `prepare` is
about to write, with every problem naming the clinical table's row instead of a manifest line.

The candidate manifest is written to a temporary folder (absolute paths) and loaded with
load_manifest and binary_labels, which find empty ids, duplicate image ids, a patient in two
centres, missing or unreadable image files, bad box values and a patient whose images carry
different labels. Their row lists are merged with prepare's own problems into one error
(progbench.data.prepare.problems).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from progbench.config import TaskConfig
from progbench.data.manifest import Manifest, binary_labels, load_manifest
from progbench.errors import ManifestError


def manifest_problems(
    frame: pd.DataFrame, file_name: str, row_names: Sequence[str], tasks: Sequence[TaskConfig]
) -> list[str]:
    """Every problem load_manifest and binary_labels find in `frame`, rows named by `row_names`."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="progbench-prepare-") as tmp:
        staged = Path(tmp) / file_name
        frame.to_csv(staged, index=False)
        try:
            manifest = load_manifest(staged, row_names=row_names)
        except ManifestError as err:
            problems += err.problems or [err.message]
            # Outcome checks still run, on the frame as built, so one run lists everything.
            manifest = Manifest(frame=frame.astype(str), source=staged, row_names=tuple(row_names))
        for task in tasks:
            task = task.model_copy(update={"manifest": staged})
            try:
                binary_labels(manifest, task)
            except ManifestError as err:
                problems += err.problems or [f"task {task.name!r}: {err.message}"]
    return problems
