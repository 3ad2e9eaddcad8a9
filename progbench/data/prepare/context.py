"""What `prepare` hands its writer: the caller's context and each output as built.

Its own module so that the pipeline (which builds them) and the writer (which records them)
both import it and not each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from progbench.config import TaskConfig
from progbench.data.prepare.locate import Roots
from progbench.data.prepare.schema import OutputSpec


@dataclass
class PrepareContext:
    """What a caller adds to a spec: its command line, folders to scan, files and notes to record."""

    command: str = "progbench prepare table"
    roots: dict[int, Roots] = field(default_factory=dict)  # source index -> what to scan
    files: dict[str, Path] = field(default_factory=dict)  # role -> file, hashed in prepare.json
    notes: dict[str, Any] = field(default_factory=dict)  # dataset choices and study facts
    scan: dict[str, Any] = field(default_factory=dict)  # how the image folders were scanned


@dataclass
class BuiltOutput:
    """One manifest as it will be written (absolute paths), and its tasks."""

    spec: OutputSpec
    frame: pd.DataFrame
    row_names: list[str]
    tasks: list[TaskConfig]
