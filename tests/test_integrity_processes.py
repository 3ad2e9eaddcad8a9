"""Commands as processes meet an operating system (issues 11 and 12): concurrent commands on one
run tree, Ctrl-C, kill -9 and the worker processes, read-only folders and full disks."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import (
    TINY,
    CliResult,
    Watched,
    cli,
    descendants,
    done_files,
    gone_within,
    lp,
    patched,
    started_with_workers,
    task_of,
)
from tests.helpers.cohorts import write_cohort
from tests.helpers.system import fill, leftovers, mounted_tmpfs, read_only_view


@pytest.fixture
def lp_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    task = task_of(write_cohort(tmp_path / "cohort"))
    return task, tmp_path / "runs", tmp_path / "cache"


# ------------------------------------------------------------ 14. concurrent train commands


@pytest.mark.slow  # subprocesses
def test_three_concurrent_trains_do_each_run_once(tmp_path: Path) -> None:
    task = task_of(write_cohort(tmp_path / "cohort"))
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    args = ("train", task, *TINY, "--strategy", "lp", "--scheme", "kfold", "--folds", "2", "--shots", "2,4",
            "--repeats", "2", "--runs", runs)  # fmt: skip
    procs = [Watched(*args, cache=cache) for _ in range(3)]
    ends = [p.finish(timeout=300) for p in procs]
    for code, out, err in ends:
        assert code == 0, err
        assert "Traceback" not in out + err
    n_runs = 2 * (1 + 2 * 2)
    written = [int(out.split(" run(s) written")[0].split()[-1]) for _, out, _ in ends]
    assert sum(written) == n_runs, [out for _, out, _ in ends]
    dones = done_files(runs)
    assert len(dones) == n_runs
    for done in dones:
        spec = json.loads((done.parent / "spec.json").read_text())
        digests = json.loads(done.read_text())["digests"]
        assert set(digests) == {"spec.json", "predictions.parquet", "metrics.json"}
        assert spec["provenance"]["created"] <= json.loads(done.read_text())["finished_at"]
    assert not (runs / ".replaced").exists()
    assert not [p for p in runs.rglob("*") if p.name.endswith(".tmp")]
    r = cli("evaluate", runs, "--n-boot", "0")  # every DONE matches its files' digests
    assert r.code == 0, r.text


# ---------------------------------------------------- 15. Ctrl-C; 12. kill -9 and the workers

LP_GRID = (
    "--strategy",
    "lp",
    "--scheme",
    "kfold",
    "--folds",
    "2",
    "--shots",
    "2",
    "--repeats",
    "2",
)
# The LP grid's runs are written by worker processes from this many runs on (writers.py's
# PROCESS_WRITERS_FROM, lowered so that a 6-run grid takes the process path).
PROCESS_WRITERS = "progbench.train.writers.PROCESS_WRITERS_FROM = 2"


@pytest.mark.slow  # subprocesses
def test_ctrl_c_during_an_lp_grid_exits_130_without_a_traceback(tmp_path: Path) -> None:
    task = task_of(write_cohort(tmp_path / "cohort"))
    w = Watched("train", task, *TINY, *LP_GRID, "--runs", tmp_path / "runs",
                cache=tmp_path / "cache", command=patched(PROCESS_WRITERS))  # fmt: skip
    started_with_workers(w)
    family = descendants(w.pid)
    os.killpg(w.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
    code, out, err = w.finish(timeout=120)
    assert code == 130, err
    assert "interrupted: finished work is kept" in err
    assert err.count("interrupted") == 1  # the command only; its workers ignore SIGINT
    assert "Traceback" not in out + err
    assert gone_within(family, 3.0) == []


@pytest.mark.slow  # subprocesses
def test_kill_9_of_an_lp_grid_leaves_no_worker(tmp_path: Path) -> None:
    task = task_of(write_cohort(tmp_path / "cohort"))
    w = Watched("train", task, *TINY, *LP_GRID, "--runs", tmp_path / "runs",
                cache=tmp_path / "cache", command=patched(PROCESS_WRITERS))  # fmt: skip
    workers = started_with_workers(w)
    family = descendants(w.pid)
    assert {p.pid for p in workers} <= {p.pid for p in family}
    os.kill(w.pid, signal.SIGKILL)
    w.finish(timeout=30)
    assert gone_within(family, 2.5) == []


@pytest.mark.slow  # subprocesses
def test_kill_9_of_cache_images_leaves_no_worker(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path / "cohort", size=96)
    # Decoding uses workers from 2 * BLOCK images on; a block of 4 gets there on 94 images.
    w = Watched("cache", "images", manifest, "--size", "32", "--workers", "2",
                cache=tmp_path / "cache",
                command=patched("progbench.cache.imagestore.BLOCK = 4"))  # fmt: skip
    workers = started_with_workers(w)
    family = descendants(w.pid)
    assert {p.pid for p in workers} <= {p.pid for p in family}
    os.kill(w.pid, signal.SIGKILL)
    w.finish(timeout=30)
    assert gone_within(family, 2.5) == []
    # What the killed build left is resumed, not trusted or cleaned by hand.
    r = cli("cache", "images", manifest, "--size", "32", "--cache-dir", tmp_path / "cache")
    assert r.code == 0, r.text


# ------------------------------------------------------------------------ 16. OS errors


def one_os_error(r: CliResult, under: Path, cause: str) -> str:
    """The CLI's one error line: it names a path under `under` and the cause."""
    assert r.code == 1, r.text
    text = r.text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    assert f"cannot access {under}" in errors[0] and cause in errors[0], errors[0]
    return errors[0]


def test_read_only_runs_folder_is_one_line(lp_tree: tuple[Path, Path, Path]) -> None:
    task, _, cache = lp_tree
    with mounted_tmpfs(task.parents[2] / "ro", read_only=True) as ro:
        r = lp(task, ro / "runs", cache)
        one_os_error(r, ro / "runs", "Read-only file system")


def test_runs_folder_that_is_a_file_is_one_line(lp_tree: tuple[Path, Path, Path]) -> None:
    task, runs, cache = lp_tree
    runs.write_text("not a folder")
    r = lp(task, runs, cache)
    one_os_error(r, runs, "Not a directory")


@pytest.mark.slow
def test_read_only_report_out_and_tree_are_one_line(
    lp_tree: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    task, runs, cache = lp_tree
    assert lp(task, runs, cache).code == 0
    with mounted_tmpfs(tmp_path / "ro", read_only=True) as ro:
        r = cli("report", runs, "--out", ro / "report", "--n-boot", "0", "--metric", "mcc")
        one_os_error(r, ro / "report", "Read-only file system")
    with read_only_view(runs):
        r = cli("evaluate", runs, "--n-boot", "0")
        line = one_os_error(r, runs, "Read-only file system")
        assert f"cannot access {runs / 'results.parquet'}:" in line  # the file, not a temp name
    r = cli("evaluate", runs, "--n-boot", "0")
    assert r.code == 0, r.text


@pytest.mark.slow
@pytest.mark.parametrize("leave_kb", [0, 24, 120])
def test_full_cache_disk_is_one_line_and_resumes(tmp_path: Path, leave_kb: int) -> None:
    manifest = write_cohort(tmp_path / "cohort")
    with mounted_tmpfs(tmp_path / "disk", size="1m") as disk:
        cache = disk / "cache"
        if leave_kb:  # the digest memo exists, the stores do not fit
            assert cli("cache", "images", manifest, "--size", "8", "--cache-dir", cache).code == 0
        filler = fill(disk, leave_kb * 1024)
        r = cli("extract", manifest, *TINY, "--cache-dir", cache)
        one_os_error(r, cache, "full" if leave_kb == 0 else "No space left on device")
        assert leftovers(disk) == []
        filler.unlink()
        r = cli("extract", manifest, *TINY, "--cache-dir", cache)
        assert r.code == 0, r.text
        r = cli("cache", "verify", "--cache-dir", cache)
        assert r.code == 0, r.text


def write_splits_of(task: Path, runs: Path) -> None:
    """The splits file and task.json `lp(...)` uses, written as train writes them."""
    from progbench.data.manifest import load_task
    from progbench.runs.taskdata import claim_task
    from progbench.train.plan import SplitRequest, resolve_splits

    claim_task(load_task(task), runs)
    resolve_splits(load_task(task), SplitRequest(scheme="kfold", folds=2), runs)


@pytest.fixture
def runs_disk(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(task, runs on a 1 MB tmpfs, cache elsewhere with the features extracted)."""
    manifest = write_cohort(tmp_path / "cohort")
    cache = tmp_path / "cache"
    assert cli("extract", manifest, *TINY, "--cache-dir", cache).code == 0
    with mounted_tmpfs(tmp_path / "disk", size="1m") as disk:
        yield task_of(manifest), disk / "runs", cache


@pytest.mark.slow
def test_full_runs_disk_is_one_line_and_resumes(runs_disk: tuple[Path, Path, Path]) -> None:
    task, runs, cache = runs_disk
    filler = fill(runs.parent)
    r = lp(task, runs, cache)
    line = one_os_error(r, runs / "tiny-severity", "No space left on device")
    assert line.split(": ")[1].endswith("task.json")  # the first file a train writes
    assert not list(runs.rglob("task.json")) and not list(runs.rglob("splits-*.json"))
    filler.unlink()
    write_splits_of(task, runs)
    filler = fill(runs.parent)  # the splits fit, the first run's spec.json does not
    r = lp(task, runs, cache)
    line = one_os_error(r, runs / "tiny-severity" / "kfold", "No space left on device")
    assert line.split(": ")[1].endswith("spec.json")
    assert leftovers(runs.parent) == [] and done_files(runs) == []
    filler.unlink()
    r = lp(task, runs, cache)
    assert r.code == 0, r.text
    assert len(done_files(runs)) == 2
    assert cli("evaluate", runs, "--n-boot", "0").code == 0


def test_full_disk_while_writing_the_probe_is_one_line(
    runs_disk: tuple[Path, Path, Path],
) -> None:
    task, runs, cache = runs_disk
    write_splits_of(task, runs)
    # three pages: the holder notes of the two folds' run locks and spec.json (1.7 kB) fit,
    # probe.safetensors not
    fill(runs.parent, leave=12288)
    r = lp(task, runs, cache)
    line = one_os_error(r, runs / "tiny-severity" / "kfold", "No space left on device")
    assert line.split(": ")[1].endswith("probe.safetensors")
