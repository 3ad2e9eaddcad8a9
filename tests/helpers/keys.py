"""Every key progbench derives, computed on the tiny twin and a fixed cohort (tests/test_keys.py).

The cohort, backbone, options and splits are those of tests/data/keys/make_prev.sh (the run tree
commit babab05 made), so the same inputs can be compared with what that version recorded.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progbench.cache.imagestore import ImageStore, ImageStoreParams, build_image_store
from progbench.data.manifest import Task, load_task
from progbench.data.splits import Splits, read_splits
from progbench.extract.features import feature_key, legacy_feature_key
from progbench.models.identity import backbone_ref
from progbench.provenance import fingerprint
from progbench.runs import RunSpec
from progbench.train.features import FeatureContext, feature_settings
from progbench.train.finetune import prepare_finetune
from progbench.train.options import FinetuneOptions
from progbench.train.plan import SplitRequest, plan_runs, splits_path
from progbench.train.probe import ProbeConfig
from tests.helpers.cohorts import write_cohort

DATA = Path(__file__).resolve().parent.parent / "data" / "keys"
GOLDEN = DATA / "golden.json"
PREV = DATA / "prev-babab05.json"
SPLITS = DATA / "splits-kfold-2folds-val0.2-seed42.json"
BACKBONE, WEIGHTS, SIZE = "tiny-resnet", "random", 32
REQUEST = SplitRequest(scheme="kfold", folds=2)
STREAMED = FinetuneOptions(epochs=1, lr_head=1e-3, image_size=SIZE, device="cpu")


@dataclass
class Inputs:
    task: Task
    task_file: Path
    splits: Splits
    cache: Path
    runs: Path


def make_inputs(root: Path) -> Inputs:
    """The fixed cohort (24 patients, 2 centres, 32 px) and the splits babab05 made for it."""
    manifest = write_cohort(root / "cohort", patients=24, centers=2, size=SIZE)
    task_file = manifest.parent / "tasks" / "severity.yaml"
    return Inputs(
        load_task(task_file), task_file, read_splits(SPLITS), root / "cache", root / "runs"
    )


def identity(spec: RunSpec) -> dict[str, Any]:
    """A run's identity: its spec without `extra` (what the training state's key holds)."""
    return spec.model_dump(mode="json", exclude={"extra"})


def lp_spec(inp: Inputs, features: str, records: dict[str, Any] | None = None) -> RunSpec:
    """Fold 0's full-data LP run (default probe) on the feature store `features`."""
    ref = backbone_ref(BACKBONE, WEIGHTS)
    ctx = FeatureContext(BACKBONE, ref.weights, ref.weights_fingerprint, features)
    settings = feature_settings(ctx, ProbeConfig.preset("default"))
    path = splits_path(inp.task, REQUEST, "kfold", inp.runs)
    problems = plan_runs(inp.task, inp.splits, REQUEST, path, ctx.identity(), settings, records)
    return problems[0].spec


def streamed_spec(inp: Inputs, strategy: str = "bitfit") -> RunSpec:
    """Fold 0's full-data streamed run (1 epoch, head lr 1e-3)."""
    opts = dataclasses.replace(STREAMED, cache_dir=inp.cache)
    ctx = prepare_finetune(inp.task, BACKBONE, WEIGHTS, strategy, inp.runs, opts)
    path = splits_path(inp.task, REQUEST, "kfold", inp.runs)
    problems = plan_runs(inp.task, inp.splits, REQUEST, path, ctx.identity(), ctx.settings())
    return problems[0].spec


def store_keys(inp: Inputs) -> dict[str, Any]:
    """The image store's key and content fingerprint, the feature store's key and its legacy
    key (what babab05 named the same store)."""
    from progbench.accel import resolve_accel

    built = build_image_store(inp.task.manifest, ImageStoreParams(size=SIZE), inp.cache)
    store = ImageStore(built.path)
    ref = backbone_ref(BACKBONE, WEIGHTS)
    accel = resolve_accel("cpu", "auto", ref.spec.is_cnn, ref.spec.bf16_cast_weights)
    key = feature_key(store, ref, accel)
    return {
        "image_store": {"key": built.path.stem, "content_fingerprint": store.content_fingerprint},
        "feature_store": key.key,
        "feature_store_legacy": legacy_feature_key(key, ref.spec).key,
    }


def all_keys(inp: Inputs) -> dict[str, Any]:
    """Every key the golden file holds."""
    stores = store_keys(inp)
    lp, streamed = lp_spec(inp, stores["feature_store"]), streamed_spec(inp)
    return stores | {
        "splits": {
            "file": splits_path(inp.task, REQUEST, "kfold", inp.runs).name,
            "parameters": inp.splits.parameters(),
            "key": fingerprint(inp.splits.parameters()),
        },
        "lp_run": {"key": fingerprint(identity(lp)), "settings": lp.settings},
        "streamed_run": {"key": fingerprint(identity(streamed)), "settings": streamed.settings},
    }


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
