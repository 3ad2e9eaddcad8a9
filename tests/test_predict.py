"""`progbench predict`: a finished run (LP, adapter, BitFit, FFT) applied to a manifest, a folder or
one image reproduces the run's own predictions."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from progbench.data.manifest import load_task
from progbench.errors import RunError
from progbench.predict import PredictOptions, predict_run
from progbench.runs import read_run, read_spec
from progbench.train.finetune import run_finetune
from progbench.train.options import FinetuneOptions
from progbench.train.pipeline import SplitRequest, TrainRequest, resolve_splits, train_features
from tests.helpers.cohorts import write_cohort

STORE_SIZE = 32


@dataclass(frozen=True)
class Trained:
    manifest: Path
    cache: Path
    runs: dict[str, Path]  # strategy -> fold-0 run directory


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("predict")
    manifest = write_cohort(root / "cohort", patients=30, size=40)
    task = load_task(root / "cohort" / "tasks" / "severity.yaml")
    cache, runs_root = root / "cache", root / "runs"
    req = SplitRequest(scheme="kfold", folds=2)
    lp_opts = FinetuneOptions(device="cpu", cache_dir=cache, image_size=STORE_SIZE)
    lp = train_features(
        TrainRequest(task, "tiny-dinov2", "lp", req, runs_root, "random", options=lp_opts)
    )
    splits, splits_file, _ = resolve_splits(task, req, runs_root)
    one = splits.model_copy(update={"folds": splits.folds[:1]})
    runs = {"lp": next(p for p in lp.written if p.name == "fold-0")}
    # The study's variant grid (lbfgs): a head on whichever tokens validation picked.
    lpv = train_features(
        TrainRequest(
            task, "tiny-dinov2", "lp", req, root / "runs-variants", "random", probe="variants",
            options=lp_opts,
        )
    )  # fmt: skip
    runs["lp-variants"] = next(p for p in lpv.written if p.name == "fold-0")
    for backbone, strategy, input_size in (
        ("tiny-dinov2", "lora-r8", None),
        ("tiny-densenet", "bitfit", None),
        ("tiny-densenet", "fft", 48),  # a CNN at another input size than its own (32)
    ):
        opts = FinetuneOptions(
            epochs=2, batch_size=8, eval_every=1, lr_backbone=1e-3, lr_head=1e-2, augment=False,
            image_size=STORE_SIZE, input_size=input_size, cache_dir=cache, device="cpu",
        )  # fmt: skip
        (run_dir,), _ = run_finetune(
            task, one, backbone, "random", strategy, runs_root, opts, source=splits_file
        )
        runs[strategy] = run_dir
    return Trained(manifest, cache, runs)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["lp", "lp-variants", "lora-r8", "bitfit", "fft"])
def test_predict_reproduces_the_runs_test_predictions(trained: Trained, strategy: str) -> None:
    run = read_run(trained.runs[strategy])
    opts = PredictOptions(device="cpu", cache_dir=trained.cache)
    preds = predict_run(run.path, trained.manifest, opts)
    assert len(preds) == len(pd.read_csv(trained.manifest))  # every image of the manifest
    merged = run.predictions.merge(preds, on="image_id", suffixes=("_run", "_new"))
    assert len(merged) == len(run.predictions)
    np.testing.assert_allclose(merged["p_pos_new"], merged["p_pos_run"], rtol=0, atol=1e-6)
    # y_true comes from the outcome and positive value recorded in spec.json by both trainers.
    assert list(preds.columns) == ["image_id", "patient_id", "split", "y_true", "p_pos", "part"]
    # Each image says which part of the run's fold it was in: its own training images too.
    assert (merged["part"] == merged["split_run"]).all()
    assert (merged["split_new"] == merged["split_run"]).all()  # val stays val, test stays test
    assert (merged["patient_id_new"] == merged["patient_id_run"]).all()
    rest = preds[~preds["image_id"].isin(run.predictions["image_id"])]
    assert set(rest["part"]) == {"train"} and set(rest["split"]) == {"test"}
    np.testing.assert_array_equal(merged["y_true_new"], merged["y_true_run"])


def test_predict_on_a_folder_or_one_image_matches_the_manifest_path(
    trained: Trained, tmp_path: Path
) -> None:
    run_dir = trained.runs["lora-r8"]
    opts = PredictOptions(device="cpu", cache_dir=trained.cache)
    from_manifest = predict_run(run_dir, trained.manifest, opts).set_index("image_id")
    folder = trained.manifest.parent / "images"
    from_folder = predict_run(run_dir, folder, opts)
    assert "y_true" not in from_folder.columns  # no manifest, no outcome
    # Ids drop the extension, as the manifest's do: the same images, the same parts of the run.
    ids = from_folder["image_id"]
    assert not ids.str.endswith(".png").any() and set(ids) == set(from_manifest.index)
    np.testing.assert_allclose(
        from_folder["p_pos"].to_numpy(), from_manifest.loc[ids, "p_pos"].to_numpy(), atol=1e-6
    )
    assert (from_folder["part"].to_numpy() == from_manifest.loc[ids, "part"].to_numpy()).all()
    one = sorted(folder.iterdir())[3]
    single = predict_run(run_dir, one, opts)
    assert single["image_id"].tolist() == [one.stem]
    assert single["p_pos"].iloc[0] == pytest.approx(from_manifest.loc[one.stem, "p_pos"], abs=1e-6)


def test_predict_follows_the_recorded_sizes_unless_told_otherwise(trained: Trained) -> None:
    # The fft run was trained at input 48 from a 32 px store; its reproduction above needs both.
    extra = read_spec(trained.runs["fft"]).extra
    assert (extra["image_size"], extra["input_size"]) == (STORE_SIZE, 48)
    image = sorted((trained.manifest.parent / "images").iterdir())[0]
    same = predict_run(trained.runs["fft"], image, PredictOptions("cpu"))["p_pos"].iloc[0]
    other = predict_run(trained.runs["fft"], image, PredictOptions("cpu", image_size=24))
    assert other["p_pos"].iloc[0] != pytest.approx(same, abs=1e-9)


def test_lp_runs_record_the_variant_their_head_reads(trained: Trained) -> None:
    assert read_spec(trained.runs["lp"]).extra["variant"] == "cls1"
    extra = read_spec(trained.runs["lp-variants"]).extra
    searched = [s["variant"] for s in extra["variant_search"]]
    assert searched == ["cls1", "cls1+avg"]  # the grid's n=4 is more than tiny-dinov2 offers
    assert extra["variant"] in searched


def test_predict_refuses_an_unfinished_run(trained: Trained, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(trained.runs["bitfit"], copy)
    (copy / "DONE").unlink()
    with pytest.raises(RunError, match="not a finished run"):
        predict_run(copy, trained.manifest)


def test_cli_predict_writes_the_csv(trained: Trained, tmp_path: Path) -> None:
    from progbench.cli import app

    out = tmp_path / "preds.csv"
    args = [
        "predict", str(trained.runs["bitfit"]), str(trained.manifest), "--out", str(out),
        "--device", "cpu", "--cache-dir", str(trained.cache),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out, dtype={"image_id": str})
    opts = PredictOptions("cpu", cache_dir=trained.cache)
    expected = predict_run(trained.runs["bitfit"], trained.manifest, opts)
    assert written["image_id"].tolist() == expected["image_id"].tolist()
    np.testing.assert_allclose(written["p_pos"], expected["p_pos"], atol=1e-9)
    text = " ".join(result.output.split())
    assert "in the run's training part" in text and f"progbench evaluate {out}" in text
    # The table is one `evaluate` scores: its test rows as test, the run's val rows as val, and
    # the images the run trained on left out (counted).
    scored = CliRunner().invoke(app, ["evaluate", str(out), "--json"])
    assert scored.exit_code == 0, scored.output
    got = json.loads(scored.output)
    trained_on = int((expected["part"] == "train").sum())
    assert trained_on > 0 and got["left_out_train"] == trained_on
    assert got["test"]["n"] == int(
        ((expected["split"] == "test") & (expected["part"] != "train")).sum()
    )
    assert got["val"]["n"] == int((expected["part"] == "val").sum())
    plain = CliRunner().invoke(app, ["evaluate", str(out)])
    assert f"{trained_on} row(s) with part = train left out" in " ".join(plain.output.split())


def test_folder_ids_drop_the_image_extension_and_clashes_are_refused(tmp_path: Path) -> None:
    from progbench.errors import ConfigError
    from progbench.predict import _image_set, image_id_of

    assert image_id_of(Path("sub/P0001-1.PNG")) == "sub/P0001-1"
    assert image_id_of(Path("1.2.840.5")) == "1.2.840.5"  # a DICOM without extension keeps it
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match="would both be image 'a'"):
        _image_set(tmp_path, 32, False, None)
