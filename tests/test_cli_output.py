"""What the command line prints (issue 12): plain timestamped progress and full-width tables off a
terminal, a fast offline failure, list options, `predict --out`, and help text."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.cli import TINY, Watched, cli, cli_process
from tests.helpers.cohorts import write_cohort

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?P<what>.+): (?P<done>\d+)/(?P<total>\d+|\?)")


# --------------------------------------------------------------- 12.1. output off a terminal


@pytest.mark.slow  # subprocesses or a full report
def test_progress_off_a_terminal_is_timestamped_lines_while_it_runs(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path / "cohort")
    w = Watched("extract", manifest, *TINY, cache=tmp_path / "cache",
                PROGBENCH_PROGRESS_INTERVAL="0.5")  # fmt: skip
    assert w.wait_for("extracting tiny-resnet: 0/94", timeout=180), "".join(w.lines)
    running = w.proc.poll() is None
    code, _, err = w.finish()
    assert code == 0, err
    assert running  # the first line came while the command was still at work
    lines = [m for m in map(STAMP.match, err.splitlines()) if m]
    extracting = [m for m in lines if m["what"] == "extracting tiny-resnet"]
    assert extracting[-1]["done"] == extracting[-1]["total"] == "94"
    assert "\x1b[" not in err and "━" not in err  # no bar, no escape codes in a log


@pytest.mark.slow  # subprocesses or a full report
def test_tables_off_a_terminal_keep_their_natural_width(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path / "cohort")
    name = "a-very-long-task-name-that-a-study-might-well-use-for-its-outcome-of-interest"
    task = manifest.parent / "tasks" / "long.yaml"
    task.write_text(f"name: {name}\nmanifest: ../manifest.csv\noutcome: severity\npositive: 1\n")
    cache = tmp_path / "cache"
    r = cli_process("train", task, *TINY, "--strategy", "lp", "--folds", "2", "--runs",
                    tmp_path / "runs", cache=cache, COLUMNS="80")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"│ {name} │" in r.stdout and "…" not in r.stdout
    r = cli_process("cache", "ls", cache=cache, COLUMNS="80")
    assert r.returncode == 0, r.stderr
    keys = [p.stem for p in cache.rglob("*.zarr")]
    assert len(keys) == 2
    for key in keys:
        assert f"│ {key} │" in r.stdout
    assert "…" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) > 80


# ------------------------------------------------------------- 12.2. offline by default


def test_pretrained_weights_without_a_network_fail_fast_with_the_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    from progbench.models.sources import network

    for var in network.OFFLINE_ENVS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    manifest = write_cohort(tmp_path / "cohort")
    t0 = time.perf_counter()
    r = cli("extract", manifest, "--backbone", "dinov2-s", "--cache-dir", tmp_path / "cache")
    seconds = time.perf_counter() - t0
    assert r.code != 0 and "Traceback" not in r.text
    assert seconds < 5, f"{seconds:.1f} s"
    assert "huggingface.co" in r.err
    assert "`progbench weights fetch dinov2-s --to DIR`" in r.err and "--weights random" in r.err
    assert not (tmp_path / "cache" / "images").exists()  # it failed before decoding anything


# ------------------------------------------------------------------ 12.5. list options


def test_repeated_and_comma_separated_negatives_mean_the_same(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path / "cohort")
    df = pd.read_csv(manifest)
    number = df["patient_id"].str[1:].astype(int)
    df["grade"] = number.map(lambda p: ("low", "mid", "high")[p % 3])
    df.to_csv(manifest, index=False)
    outs = []
    for negative in (("--negative", "low,mid"), ("--negative", "low", "--negative", "mid")):
        out = tmp_path / f"splits-{len(outs)}.json"
        r = cli("splits", "--manifest", manifest, "--outcome", "grade", "--positive", "high",
                *negative, "--folds", "3", "--out", out)  # fmt: skip
        assert r.code == 0, r.text
        outs.append(json.loads(out.read_text()))
    assert outs[0] == outs[1]
    r = cli("splits", "--manifest", manifest, "--outcome", "grade", "--positive", "high",
            "--negative", "low", "--out", tmp_path / "x.json")  # fmt: skip
    assert r.code != 0 and "'mid'" in r.err  # a value neither positive nor negative is named


# ----------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(manifest, runs, cache) with an LP grid: full runs and k=2 draws of 2 folds."""
    root = tmp_path_factory.mktemp("predict")
    manifest = write_cohort(root / "cohort")
    runs, cache = root / "runs", root / "cache"
    r = cli("train", manifest.parent / "tasks" / "severity.yaml", *TINY, "--strategy", "lp",
            "--folds", "2", "--shots", "2", "--repeats", "1", "--runs", runs,
            "--cache-dir", cache)  # fmt: skip
    assert r.code == 0, r.text
    return manifest, runs, cache


@pytest.mark.slow
def test_predict_out_is_not_overwritten_without_force(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    manifest, runs, cache = trained
    run = next(runs.rglob("full/fold-0"))
    out = tmp_path / "preds.csv"
    args = ("predict", run, manifest, "--out", out, "--cache-dir", cache)
    assert cli(*args).code == 0
    first = out.read_text()
    out.write_text("mine\n")
    r = cli(*args)
    assert r.code != 0 and f"{out} exists" in r.err and "--force" in r.err
    assert out.read_text() == "mine\n"
    assert cli(*args, "--force").code == 0
    assert out.read_text() == first


@pytest.mark.slow
def test_predict_on_a_manifest_names_the_part_each_image_played(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    manifest, runs, cache = trained
    run = next(runs.rglob("fewshot/fold-1/shots-2/rep-0"))
    out = tmp_path / "preds.csv"
    r = cli("predict", run, manifest, "--out", out, "--cache-dir", cache)
    assert r.code == 0, r.text
    preds = pd.read_csv(out).set_index("image_id")
    (splits_file,) = (runs / "tiny-severity").glob("splits-*.json")
    fold = json.loads(splits_file.read_text())["folds"][1]
    (draw,) = [d for d in fold["fewshot"] if (d["shots"], d["repeat"]) == (2, 0)]
    want = {i: "unused" for i in fold["train"]}
    want |= {i: "train" for i in draw["train"]}
    want |= {i: "val" for i in fold["val"]} | {i: "test" for i in fold["test"]}
    assert preds["part"].to_dict() == want
    # `split` is what `evaluate` reads: the run's validation images, and every other as test.
    assert preds["split"].to_dict() == {i: "val" if p == "val" else "test" for i, p in want.items()}
    assert len(draw["train"]) == 4  # k = 2 per class
    assert set(preds.columns) >= {"patient_id", "p_pos", "y_true", "split", "part"}
    assert "4 image(s) were in the run's training part" in " ".join(r.out.split())


# ------------------------------------------------------------- a reused step shows no bar


@pytest.mark.slow
def test_a_reused_extract_shows_no_empty_progress(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path / "cohort")
    cache = tmp_path / "cache"
    first = cli("extract", manifest, *TINY, "--cache-dir", cache)
    assert first.code == 0 and "extracting tiny-resnet" in first.err
    again = cli("extract", manifest, *TINY, "--cache-dir", cache)
    assert again.code == 0 and "reused complete feature store" in again.out
    assert "extracting" not in again.err and "0/?" not in again.text and "/94" not in again.err


# ------------------------------------------------------------------------------- --help


def commands() -> list[tuple[str, ...]]:
    import typer.main

    from progbench.cli import app

    root = typer.main.get_command(app)
    out = []
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        out += [(name, sub) for sub in subs] if subs else [(name,)]
    return out


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_help_has_no_bool_types_and_no_broken_sentences(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer.main

    from progbench.cli import app

    monkeypatch.setenv("COLUMNS", "2000")  # every paragraph fits on one line
    r = cli(*path, "--help")
    assert r.code == 0, r.text
    assert "<bool>" not in r.out and "BOOLEAN" not in r.out
    cmd = typer.main.get_command(app)
    for part in path:
        cmd = cmd.commands[part]  # type: ignore[attr-defined]
    lines = [" ".join(line.strip(" │").split()) for line in r.out.splitlines()]
    for paragraph in (cmd.help or "").split("\n\n"):
        if paragraph.startswith("\b") or "[" in paragraph:
            continue  # kept lines, or rich markup that help renders differently
        text = " ".join(paragraph.split())
        assert text in lines, f"{text!r} is broken across lines in `{' '.join(path)} --help`"
