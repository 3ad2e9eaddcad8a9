"""The audit's checks, in the order they run (cheapest first). Adding a check is a class with
`name`, `summary`, `skip_reason` and `run` (progbench.audit.check.Check) added here."""

from __future__ import annotations

from progbench.audit.centre import CentrePredictsLabel
from progbench.audit.check import Check
from progbench.audit.permutation import LabelPermutation
from progbench.audit.randominit import RandomInitControl
from progbench.audit.shortcut import MetadataShortcut

CHECKS: tuple[Check, ...] = (
    MetadataShortcut(),
    CentrePredictsLabel(),
    RandomInitControl(),
    LabelPermutation(),
)
CHECK_NAMES: tuple[str, ...] = tuple(c.name for c in CHECKS)
