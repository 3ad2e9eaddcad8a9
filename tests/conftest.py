"""Shared fixtures: tiny hand-made cohorts (PNG files + manifest) that need no synthesiser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.cohorts import write_cohort

# Keep tests on the CPU and small thread pools: CI has 2 cores.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# A user's weights folder must not change what a test loads.
os.environ.pop("PROGBENCH_WEIGHTS_DIR", None)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs three xdist workers on CI's 2 cores: one torch thread each.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """Path to the manifest of a 60-patient, 3-centre cohort."""
    return write_cohort(tmp_path / "cohort")


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("PROGBENCH_CACHE", str(d))
    return d


@pytest.fixture(scope="module")
def cluster() -> str:
    """A real SLURM cluster (scripts/slurm-local.sh up); without one the test is skipped, unless
    PROGBENCH_REQUIRE_SLURM=1 (CI), where a missing cluster fails it."""
    from progbench.sweep.slurm import slurm_available

    ok, why = slurm_available()
    if not ok:
        if os.environ.get("PROGBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"PROGBENCH_REQUIRE_SLURM=1 but {why}")
        pytest.skip(why)
    return why


# The long poles of `make test` (seconds measured in CI, 3 workers on 2 cores), started first so
# that no worker begins one near the end while the others sit idle.
LONG_FIRST = (
    "tests/test_readme.py::test_the_readme_chain_runs_as_written",  # ~400
    "@slurm",  # the SLURM group, ~200 in all, one worker
    "tests/test_finetune_signal.py::",  # ~190
    "tests/test_gpu_check.py::test_cpu_dry_run",  # ~110
    "tests/test_sweep.py::",  # ~350 over six tests
    "tests/test_extract.py::test_sigkill_resume",
    "@test_features",  # one module fixture, ~150 in all
    "tests/test_models_matrix.py::",
)


def _rank(item: pytest.Item) -> int:
    group = item.get_closest_marker("xdist_group")
    ids = item.nodeid + (f"@{group.args[0]}" if group is not None and group.args else "")
    return next((i for i, key in enumerate(LONG_FIRST) if key in ids), len(LONG_FIRST))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the long poles first (a stable sort: a group's tests keep their order). The
    workers collect, each the same way; the controller schedules in their order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_rank)
