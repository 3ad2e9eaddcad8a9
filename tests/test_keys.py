"""Keys derived from declarations (progbench.config.keys), golden keys, and what the previous
version (commit babab05) made still found.

Regenerate tests/data/keys/golden.json after an intended key change with
`PROGBENCH_WRITE_GOLDEN_KEYS=1 pytest tests/test_keys.py -k golden -n 0`, and say why in
docs/DESIGN_NOTES.md: every finished run and feature store of users moves with it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
import zarr

from progbench.cache.imagestore import ImageStoreParams
from progbench.config import (
    AdapterTargets,
    BackboneSpec,
    FeatureSpec,
    PeftMethod,
    ProjectionSpec,
    StrategySpec,
    TargetSpec,
    TaskConfig,
    VariantGrid,
    parse_model,
)
from progbench.config.keys import (
    IDENTITY,
    Identity,
    Recorded,
    declarations,
    identity_fields,
    identity_of,
    undeclared,
)
from progbench.config.probes import ProbePreset
from progbench.extract.features import extract_features
from progbench.models.registry import get_backbone_spec
from progbench.models.strategies import get_strategy
from progbench.runs import RunSpec, identity_diff
from progbench.train.augment import AugmentConfig
from progbench.train.options import FinetuneOptions
from progbench.train.plan import SplitRequest, splits_path
from progbench.train.probe import ProbeConfig
from tests.helpers import keys as K

KEYED = [
    BackboneSpec,
    FeatureSpec,
    ProjectionSpec,
    AdapterTargets,
    TargetSpec,
    VariantGrid,
    StrategySpec,
    PeftMethod,
    ProbePreset,
    ProbeConfig,
    FinetuneOptions,
    TaskConfig,
    ImageStoreParams,
    AugmentConfig,
    SplitRequest,
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> K.Inputs:
    return K.make_inputs(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def keys(inputs: K.Inputs) -> dict[str, Any]:
    return K.all_keys(inputs)


# ------------------------------------------------------------------ declarations


@pytest.mark.parametrize("cls", KEYED, ids=lambda c: c.__name__)
def test_every_field_of_a_keyed_schema_is_declared(cls: type) -> None:
    assert undeclared(cls) == [], (
        f"{cls.__name__}: declare each field Annotated[..., Identity(...)] or "
        "Annotated[..., Recorded('why')] (progbench.config.keys)"
    )


@pytest.mark.parametrize("cls", KEYED, ids=lambda c: c.__name__)
def test_descriptive_fields_are_never_identity(cls: type) -> None:
    for name in ("description", "note", "order", "study", "not_applicable"):
        if name in declarations(cls):
            assert isinstance(declarations(cls)[name], Recorded), f"{cls.__name__}.{name}"


def test_a_new_field_without_a_declaration_is_found_and_builds_no_key() -> None:
    @dataclasses.dataclass(frozen=True)
    class MoreOptions(FinetuneOptions):
        label_smoothing: float = 0.0

    class MoreSpec(StrategySpec):
        temperature: float = 1.0

    assert undeclared(MoreOptions) == ["label_smoothing"]
    assert undeclared(MoreSpec) == ["temperature"]
    with pytest.raises(TypeError, match="label_smoothing"):
        identity_of(MoreOptions())


def test_a_declared_new_option_enters_the_identity_and_a_recorded_one_does_not() -> None:
    @dataclasses.dataclass(frozen=True)
    class MoreOptions(FinetuneOptions):
        label_smoothing: Annotated[float, IDENTITY] = 0.0
        log_every: Annotated[int, Recorded("logging only")] = 10

    base = identity_of(MoreOptions())
    assert base["label_smoothing"] == 0.0 and "log_every" not in base
    assert identity_of(MoreOptions(log_every=3)) == base
    assert identity_of(MoreOptions(label_smoothing=0.1)) != base


def test_via_and_resolved_names_are_identity_fields() -> None:
    for cls in KEYED:
        for name, m in declarations(cls).items():
            if isinstance(m, Identity) and m.via:
                assert isinstance(declarations(cls)[m.via], Identity), f"{cls.__name__}.{name}"
    with pytest.raises(KeyError, match="device"):
        identity_of(FinetuneOptions(), resolved={"device": "cpu"})


def test_a_probe_preset_and_its_config_declare_the_same_identity() -> None:
    assert identity_fields(ProbePreset) == identity_fields(ProbeConfig)
    adam = ProbeConfig(solver="adam").describe()
    assert {"lrs", "eval_every", "patience"} <= set(adam)
    assert {"lrs", "eval_every", "patience"}.isdisjoint(ProbeConfig().describe())


def test_one_feature_definition() -> None:
    import progbench.extract.features as features

    assert not hasattr(features, "FEATURE_FIELDS") and not hasattr(features, "feature_definition")
    spec = get_backbone_spec("tiny-dinov2")
    assert list(spec.feature_definition()) == identity_fields(BackboneSpec, "feature")
    assert spec.feature_definition()["feature"] == {"pooling": "cls", "projection": "none"}


@pytest.mark.parametrize("name", ["knn", "svm-rbf", "logreg", "random-forest"])
def test_a_sklearn_runs_identity_is_what_babab05_listed(name: str) -> None:
    from progbench.train.solvers import solver_for

    s = get_strategy(name).spec
    listed = {  # train.estimators' hand-written identity at babab05
        "estimator": s.estimator,
        "params": s.params,
        "grid": s.grid,
        "class_weight": s.class_weight,
        "calibration": s.calibration,
        "variants": s.variant_grid.identity(),
    }
    assert solver_for(get_strategy(name), "default").identity() == {"sklearn": listed}


def test_a_tasks_description_is_no_part_of_a_run(inputs: K.Inputs) -> None:
    from progbench.train.plan import task_definition

    before = task_definition(inputs.task)
    assert before == {"outcome": "severity", "positive": "1", "negative": None,
                      "per_image_labels": False}  # fmt: skip
    config = inputs.task.config.model_copy(update={"description": "reworded"})
    assert task_definition(dataclasses.replace(inputs.task, config=config)) == before


SPLIT_CHANGES = {"scheme": "loco", "folds": 3, "val_fraction": 0.3, "seed": 7, "shots": (2, 4),
                 "repeats": 2, "per_center": True, "test_fraction": 0.3}  # fmt: skip


@pytest.mark.parametrize("name", identity_fields(SplitRequest))
def test_every_split_setting_names_another_splits_file(name: str, inputs: K.Inputs) -> None:
    """The splits file is the split's key: each identity field of SplitRequest is in its name."""
    m = declarations(SplitRequest)[name]
    assert isinstance(m, Identity)
    scheme = dict(m.only_if).get("scheme", "kfold")
    base = SplitRequest(scheme=scheme, shots=(2,))
    changed = dataclasses.replace(base, **{name: SPLIT_CHANGES[name]})
    path = splits_path(inputs.task, base, scheme, inputs.runs)
    assert splits_path(inputs.task, changed, changed.scheme, inputs.runs) != path
    recorded = {"splits_file": Path("x.json"), "regimes": ("full",), "max_folds": 1}
    assert set(recorded) == set(declarations(SplitRequest)) - set(identity_fields(SplitRequest))
    again = dataclasses.replace(base, **recorded)  # recorded-only fields name no other file
    assert splits_path(inputs.task, again, scheme, inputs.runs) == path


# ------------------------------------------------------------------ invariance


def _edited_backbone(name: str, **edits: Any) -> BackboneSpec:
    """The registry's entry of `name` (a twin's merged with its full-size backbone's YAML) with
    its descriptive text rewritten, parsed as a YAML file is."""
    data = yaml.safe_load(yaml.safe_dump(get_backbone_spec(name).model_dump(mode="json")))
    data["description"] = "reworded " + str(data.get("description", ""))
    data["feature"]["note"] = "reworded note"
    data.setdefault("variants", {})["note"] = "reworded variants note"
    data["targets"]["study"] = "reworded study targets"
    data["order"] = 7
    data |= edits
    return parse_model(BackboneSpec, data, name)


@dataclasses.dataclass
class _Ref:
    spec: BackboneSpec
    weights_fingerprint: str = "w"


@pytest.mark.parametrize("name", ["tiny-resnet", "tiny-dinov2", "tiny-clip"])
def test_rewording_a_backbone_yaml_moves_no_key(name: str, inputs: K.Inputs) -> None:
    from progbench.accel import resolve_accel
    from progbench.cache.imagestore import ImageStore, build_image_store
    from progbench.extract.features import feature_key

    store = ImageStore(
        build_image_store(inputs.task.manifest, ImageStoreParams(32), inputs.cache).path
    )
    accel = resolve_accel("cpu", "fp32")
    spec, edited = get_backbone_spec(name), _edited_backbone(name)
    assert edited.feature.note != spec.feature.note
    assert feature_key(store, _Ref(edited), accel).key == feature_key(store, _Ref(spec), accel).key
    assert edited.feature_definition() == spec.feature_definition()
    assert edited.transform() == spec.transform()
    # A change of what the encoder computes does move it.
    other = _edited_backbone(name, feature_dim=spec.feature_dim * 2)
    assert feature_key(store, _Ref(other), accel).key != feature_key(store, _Ref(spec), accel).key


def test_rewording_a_streamed_runs_yamls_moves_no_run(inputs: K.Inputs) -> None:
    from progbench.train.finetune import prepare_finetune

    opts = dataclasses.replace(K.STREAMED, cache_dir=inputs.cache)
    ctx = prepare_finetune(inputs.task, K.BACKBONE, K.WEIGHTS, "bitfit", inputs.runs, opts)
    strat = ctx.strategy
    with_grid = type(strat)(strat.spec.model_copy(update={"variants": VariantGrid()}))
    ctx.fit = dataclasses.replace(ctx.fit, strategy=with_grid)
    before = ctx.settings()
    grid = VariantGrid(note="reworded")
    reworded = type(strat)(
        strat.spec.model_copy(update={"description": "reworded", "order": 1, "variants": grid})
    )
    edited = _edited_backbone(K.BACKBONE)
    edited = edited.model_copy(update={"input_size": ctx.fit.model_spec.input_size})
    ctx.fit = dataclasses.replace(ctx.fit, strategy=reworded, model_spec=edited)
    assert ctx.settings() == before
    # Recorded-only options move nothing either; an identity option does.
    ctx.fit = dataclasses.replace(
        ctx.fit, opts=dataclasses.replace(opts, workers=3, compile=True, preset="x")
    )
    assert ctx.settings() == before
    ctx.fit = dataclasses.replace(ctx.fit, opts=dataclasses.replace(opts, epochs=2))
    assert ctx.settings()["train"]["epochs"] == 2


def test_a_peft_runs_identity_holds_where_its_adapters_go(inputs: K.Inputs) -> None:
    from progbench.train.finetune import prepare_finetune

    opts = dataclasses.replace(K.STREAMED, cache_dir=inputs.cache)
    ctx = prepare_finetune(inputs.task, K.BACKBONE, K.WEIGHTS, "lora-r4", inputs.runs, opts)
    spec = ctx.fit.model_spec
    before = ctx.settings()
    assert before["adapters"] == identity_of(spec.targets.for_kind("lora"))
    reworded = spec.targets.model_copy(update={"study": "reworded"})
    ctx.fit = dataclasses.replace(ctx.fit, model_spec=spec.model_copy(update={"targets": reworded}))
    assert ctx.settings() == before
    old_lora = spec.targets.for_kind("lora")
    lora = old_lora.model_copy(update={"modules": [*old_lora.modules, "fc"]})
    moved = spec.targets.model_copy(update={"sets": spec.targets.sets | {"lora": lora}})
    ctx.fit = dataclasses.replace(ctx.fit, model_spec=spec.model_copy(update={"targets": moved}))
    assert ctx.settings()["adapters"]["modules"][-1] == "fc"
    # A LoRA run made before the adapters were recorded (babab05) is compared without them.
    new = K.streamed_spec(inputs, "lora-r4")
    old = new.model_copy(
        update={"settings": {k: v for k, v in new.settings.items() if k != "adapters"}}
    )
    assert identity_diff(old, new) == []
    assert identity_diff(new, old) == [
        f"adapters.{k}: {v!r} there, unset now" for k, v in sorted(new.settings["adapters"].items())
    ]


def test_rewording_a_strategy_or_probe_description_moves_no_identity() -> None:
    lp = get_strategy("lora-r8")
    again = type(lp)(lp.spec.model_copy(update={"description": "reworded", "order": 3}))
    assert again.settings() == lp.settings()
    from progbench.config.probes import load_probe_preset

    preset = load_probe_preset("reference")
    data = preset.model_dump() | {"description": "reworded"}
    data["variants"] = {"n_last_blocks": [1, 4], "avgpool": [False, True], "note": "reworded"}
    edited = type(preset).model_validate(data)
    assert edited.variants == preset.variants
    assert identity_of(edited) == identity_of(preset)
    assert identity_of(preset)["solver"] == "adam" and "lrs" in identity_of(preset)


# ------------------------------------------------------------------ golden keys


def test_golden_keys(keys: dict[str, Any]) -> None:
    if os.environ.get("PROGBENCH_WRITE_GOLDEN_KEYS"):
        K.GOLDEN.write_text(json.dumps(keys, indent=1, sort_keys=True) + "\n")
    golden = K.read_json(K.GOLDEN)
    moved = sorted(k for k in golden.keys() | keys.keys() if golden.get(k) != keys.get(k))
    assert not moved, (
        f"keys moved: {moved}; every user's stores or finished runs of that kind would be "
        "recomputed or refused. If intended, regenerate with `PROGBENCH_WRITE_GOLDEN_KEYS=1 "
        "pytest tests/test_keys.py -k golden -n 0` and record why in docs/DESIGN_NOTES.md "
        "(and METHODOLOGY's Resume keys)."
    )


# ------------------------------------------------------------------ made by babab05


def test_stores_made_by_babab05_keep_their_keys(keys: dict[str, Any]) -> None:
    prev = K.read_json(K.PREV)
    assert keys["image_store"] == prev["image_store"]
    # The feature-store key lost the descriptive note; the old key is still found (legacy).
    assert keys["feature_store_legacy"] == prev["feature_store"]["key"]
    assert keys["feature_store"] != prev["feature_store"]["key"]


def test_runs_made_by_babab05_keep_their_identity(inputs: K.Inputs, keys: dict[str, Any]) -> None:
    prev = K.read_json(K.PREV)
    old_lp, old_streamed = RunSpec(**prev["lp_run"]), RunSpec(**prev["bitfit_run"])
    # LP on the reused babab05 store: the same identity.
    assert identity_diff(old_lp, K.lp_spec(inputs, keys["feature_store_legacy"])) == []
    assert identity_diff(old_streamed, K.streamed_spec(inputs)) == []
    # A setting that really differs is still refused by name.
    other = K.streamed_spec(inputs, "fft")
    assert any(
        d.startswith("strategy.kind: 'bitfit' there, 'fft' now")
        for d in identity_diff(old_streamed, other)
    )
    new = K.streamed_spec(inputs)
    changed = new.model_copy(
        update={"settings": new.settings | {"backbone": new.settings["backbone"] | {"family": "x"}}}
    )
    assert identity_diff(K.streamed_spec(inputs), changed) == [
        "backbone.family: 'torchvision-cnn' there, 'x' now"
    ]


def test_a_feature_store_made_by_babab05_is_reused(inputs: K.Inputs, tmp_path: Path) -> None:
    """A store under its babab05 key (and none under the new one) is used as it is."""
    prev = K.read_json(K.PREV)["feature_store"]
    cache = tmp_path / "cache"
    kw = dict(weights=K.WEIGHTS, device="cpu", cache_dir=cache, image_params=ImageStoreParams(32))
    made = extract_features(inputs.task.manifest, K.BACKBONE, **kw)  # type: ignore[arg-type]
    # What babab05 left: the same store under its key, with its key attributes.
    old = made.path.with_name(f"{prev['key']}.zarr")
    shutil.move(made.path, old)
    group = zarr.open_group(old, mode="r+")
    group.attrs.update({k: v for k, v in prev.items()})
    again = extract_features(inputs.task.manifest, K.BACKBONE, **kw)  # type: ignore[arg-type]
    assert (again.path, again.key, again.computed) == (old, prev["key"], 0)
    assert not made.path.exists()


def test_lp_runs_made_by_babab05_match_features_extracted_again(
    inputs: K.Inputs, keys: dict[str, Any]
) -> None:
    """The babab05 store deleted and extracted again under its new key: the runs recorded on
    its old key are accepted (the same inputs make both keys), and no other old key is."""
    old = RunSpec(**K.read_json(K.PREV)["lp_run"])
    legacy = keys["feature_store_legacy"]
    accepted = K.lp_spec(inputs, keys["feature_store"], {"aliases": {"features": [legacy]}})
    assert identity_diff(old, accepted) == []
    plain = K.lp_spec(inputs, keys["feature_store"])
    assert identity_diff(old, plain) == [
        f"features: {legacy!r} there, {keys['feature_store']!r} now"
    ]
    other = K.lp_spec(inputs, keys["feature_store"], {"aliases": {"features": ["0" * 16]}})
    assert identity_diff(old, other) == identity_diff(old, plain)


def test_extract_reports_the_legacy_key_of_a_new_store(inputs: K.Inputs, tmp_path: Path) -> None:
    kw = dict(
        weights=K.WEIGHTS, device="cpu", cache_dir=tmp_path, image_params=ImageStoreParams(32)
    )
    res = extract_features(inputs.task.manifest, K.BACKBONE, **kw)  # type: ignore[arg-type]
    assert res.key == K.read_json(K.GOLDEN)["feature_store"]
    assert res.legacy_key == K.read_json(K.PREV)["feature_store"]["key"]


def test_a_run_on_other_features_is_refused_naming_the_fix(
    inputs: K.Inputs, tmp_path: Path
) -> None:
    from tests.helpers.cli import cli

    args = ("train", inputs.task_file, "--backbone", K.BACKBONE, "--weights", K.WEIGHTS,
            "--strategy", "lp", "--scheme", "kfold", "--folds", "2", "--splits", K.SPLITS,
            "--runs", tmp_path / "runs", "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert cli(*args, "--image-size", "32").code == 0
    r = cli(*args, "--image-size", "40")  # other pixels: another feature store
    assert r.code != 0
    assert "what differs: features: " in r.err and "--force" in r.err and "note" in r.err, r.err
