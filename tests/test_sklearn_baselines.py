"""scikit-learn estimators on the frozen features (`kind: sklearn`): a YAML-only estimator and the
presets train through the LP path, write runs that are evaluated, and predict refuses a swapped
estimator file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from progbench.data.manifest import Task, load_task
from progbench.data.splits import make_splits
from progbench.errors import RegistryError, RunError
from progbench.evaluate.results import evaluate_tree, summarise
from progbench.models.matrix import cell_text, compute_matrix
from progbench.models.registry import STRATEGIES_DIR_ENV, get_strategy_spec
from progbench.models.strategies import get_strategy
from progbench.predict import PredictOptions, predict_run
from progbench.runs import iter_runs, read_run
from progbench.train.features import FeatureContext
from progbench.train.options import FinetuneOptions
from progbench.train.pipeline import SplitRequest, TrainRequest, train_features
from progbench.train.solvers import solver_for
from tests.helpers.cohorts import write_cohort
from tests.helpers.features import feature_runs

PRESETS = ["knn", "svm-rbf", "random-forest", "logreg"]
TREE = {
    "name": "tree",
    "kind": "sklearn",
    "estimator": "sklearn.tree.DecisionTreeClassifier",
    "params": {"random_state": 0},
    "grid": {"max_depth": [1, 3]},
    "class_weight": "balanced",
}


@dataclass(frozen=True)
class Signal:
    task: Task
    x: np.ndarray  # one 16-d feature per image, label signal on 4 dimensions


@pytest.fixture(scope="module")
def signal(tmp_path_factory: pytest.TempPathFactory) -> Signal:
    root = tmp_path_factory.mktemp("sk")
    write_cohort(root / "cohort", patients=60, multi_image_every=1000)
    task = load_task(root / "cohort" / "tasks" / "severity.yaml")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((len(task.labels), 16)).astype(np.float32)
    x[:, :4] += 1.5 * (2 * task.labels[:, None] - 1)
    return Signal(task, x)


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_presets_learn_the_signal_with_a_grid_point_chosen_on_validation(
    signal: Signal, name: str, tmp_path: Path
) -> None:
    strategy = get_strategy(name)
    solver = solver_for(strategy, "default")
    ctx = FeatureContext("synthetic", "random", "none", "synthetic", strategy=name)
    splits = make_splits(signal.task, "kfold", folds=2, seed=42)
    feature_runs(signal.task, splits, signal.x, ctx, tmp_path, solver, fewshot=False)
    runs = [read_run(p) for p in iter_runs(tmp_path).done]
    assert len(runs) == 2 and {r.spec.strategy for r in runs} == {name}
    spec = get_strategy_spec(name)
    for run in runs:
        chosen = run.spec.extra["selected"]["params"]
        assert set(chosen) == set(spec.grid) and all(chosen[k] in spec.grid[k] for k in chosen)
        assert run.spec.settings["sklearn"]["estimator"] == spec.estimator
        assert run.spec.extra["variant"] == "cls1"
        assert {"estimator.joblib", "standardise.safetensors"} <= {
            f.name for f in run.path.iterdir()
        }
        assert run.cost is not None and run.cost.trainable is None  # not a parameter count
    records = summarise(evaluate_tree(tmp_path, n_boot=0, cache=False).results)
    mcc = next(r for r in records if r["regime"] == "full")["metrics"]["mcc"]["mean"]
    assert mcc > 0.5, (name, mcc)


@pytest.mark.slow
def test_a_yaml_only_estimator_trains_is_evaluated_and_predicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "strategies"
    folder.mkdir()
    (folder / "tree.yaml").write_text(yaml.safe_dump(TREE))
    monkeypatch.setenv(STRATEGIES_DIR_ENV, str(folder))
    manifest = write_cohort(tmp_path / "cohort", patients=30, size=40)
    task = load_task(tmp_path / "cohort" / "tasks" / "severity.yaml")
    cache, runs_root = tmp_path / "cache", tmp_path / "runs"
    opts = FinetuneOptions(device="cpu", cache_dir=cache, image_size=32)
    req = SplitRequest(scheme="kfold", folds=2)
    summary = train_features(
        TrainRequest(task, "tiny-resnet", "tree", req, runs_root, "random", options=opts)
    )
    assert len(summary.written) == 2
    run = read_run(next(p for p in summary.written if p.name == "fold-0"))
    assert run.spec.strategy == "tree" and run.spec.extra["selected"]["params"]["max_depth"] in (
        1,
        3,
    )
    results = evaluate_tree(runs_root, n_boot=0, cache=False).results
    assert set(results["strategy"]) == {"tree"} and results["value"].notna().any()

    popts = PredictOptions(device="cpu", cache_dir=cache)
    preds = predict_run(run.path, manifest, popts)
    merged = run.predictions.merge(preds, on="image_id", suffixes=("_run", "_new"))
    np.testing.assert_allclose(merged["p_pos_new"], merged["p_pos_run"], atol=1e-6)

    # Another pickle in its place is never unpickled: its digest differs from the recorded one.
    other = next(p for p in summary.written if p.name == "fold-1") / "estimator.joblib"
    (run.path / "estimator.joblib").write_bytes(other.read_bytes())
    with pytest.raises(RunError, match=r"refusing to load .*sha256"):
        predict_run(run.path, manifest, popts)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"estimator": "sklearn.tree.NoSuchTree"}, "cannot import estimator"),
        ({"estimator": "sklearn.preprocessing.StandardScaler"}, "not a scikit-learn classifier"),
        ({"estimator": "sklearn.neighbors.KNeighborsClassifier"}, r"takes no parameter\(s\)"),
        ({"estimator": "sklearn.svm.SVC", "grid": {"C": [1.0]}}, "no predict_proba"),
        ({"kind": "lp", "params": {}, "grid": {}, "class_weight": None}, "are sklearn fields"),
        ({"backbone_lr": 1e-4}, "not used for lp/sklearn"),
    ],
)
def test_bad_estimator_presets_are_refused_on_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict, message: str
) -> None:
    data = TREE | change
    if "KNeighbors" in data["estimator"]:
        data["params"] = {}  # class_weight: kNN has none
        data["grid"] = {"n_neighbors": [3]}
    if data["estimator"] == "sklearn.svm.SVC":
        data["params"] = {}
    (tmp_path / "tree.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv(STRATEGIES_DIR_ENV, str(tmp_path))
    with pytest.raises(RegistryError, match=message):
        get_strategy_spec("tree")


def test_models_lists_them_for_every_backbone_without_a_count() -> None:
    matrix = compute_matrix(
        ["tiny-resnet", "tiny-dinov2"], strategies=["lp", *PRESETS], use_cache=False
    )
    for b in ("tiny-resnet", "tiny-dinov2"):
        for s in PRESETS:
            c = matrix.cell(b, s)
            assert c.applicable and c.trainable is None and cell_text(c) == "-"
        assert cell_text(matrix.cell(b, "lp")) not in ("-", "n/a")


def test_a_grid_point_too_big_for_a_few_shot_draw_is_skipped(
    signal: Signal, tmp_path: Path
) -> None:
    """kNN with k = 9 or 27 cannot fit 4 images: a 2-shot draw keeps k = 3 and says so."""
    from progbench.data.fewshot import add_fewshot

    ctx = FeatureContext("synthetic", "random", "none", "synthetic", strategy="knn")
    splits = add_fewshot(make_splits(signal.task, "kfold", folds=2, seed=42), signal.task, [2], 1)
    solver = solver_for(get_strategy("knn"), "default")
    feature_runs(signal.task, splits, signal.x, ctx, tmp_path, solver, full=False)
    runs = [read_run(p) for p in iter_runs(tmp_path).done]
    assert len(runs) == 2
    for run in runs:
        selected = run.spec.extra["selected"]
        assert selected["params"] == {"n_neighbors": 3} and selected["skipped_grid_points"] == 2
        assert len(run.predictions) > 0
