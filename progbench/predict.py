"""`progbench predict`: apply a finished run to new images.

The model is rebuilt from the run's spec.json: the backbone with the recorded weights (checked
against the recorded fingerprint), then either the saved adapter/biases/full weights and head
(PEFT, BitFit, FFT) or, for a feature-path run (LP, scikit-learn), the saved head on top of
the frozen backbone's features of the run's variant (spec extra `variant`; older runs: cls1).
Images are preprocessed as in training: a manifest goes through the same image store (so its
predictions reproduce the run's own), single files and folders are decoded with
`progbench.data.images.load_image` at the run's image size.

The table it returns is a predictions table that `progbench evaluate` scores when the input is
a manifest holding the run's outcome: image_id, patient_id, split, y_true, p_pos, then `part`,
the part each image played in the run (train, val, test, unused, new, unknown). `split` is
`val` for the run's own validation images and `test` for every other image. An image given as
a file or in a folder is named like a manifest's image_id: its path under the folder without
its image extension (`P0001-1.png` -> `P0001-1`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from progbench.accel import Accel, prepare_model, resolve_accel
from progbench.cache.imagestore import ImageStore, ImageStoreParams, build_image_store
from progbench.cache.loader import PrefetchLoader, batches_of
from progbench.data.images import is_dicom, load_image
from progbench.data.manifest import Manifest, load_manifest, normalise_value
from progbench.data.splits import read_splits
from progbench.errors import CacheError, ConfigError, ProgbenchError, RunError, WeightsError
from progbench.models.loaders import LoadedBackbone, load_backbone
from progbench.models.strategies import get_strategy
from progbench.runs import PREDICTIONS_FILE, RunSpec, is_done, read_spec
from progbench.train.solvers import predictor_for

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"}
MANIFEST_SUFFIXES = {".csv", ".parquet", ".pq"}


@dataclass(frozen=True)
class PredictOptions:
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 64
    weights: str | None = None  # override the recorded weights (e.g. the checkpoint moved)
    image_size: int | None = None  # override the recorded image-store side
    cache_dir: Path | None = None


@dataclass(frozen=True)
class ImageSet:
    """What to predict on: ids, and either store rows or files to decode."""

    ids: list[str]
    store: ImageStore | None = None
    rows: np.ndarray | None = None
    files: list[Path] | None = None
    manifest: Manifest | None = None

    def batches(self, batch_size: int, size: int, pin: bool) -> Iterator[torch.Tensor]:
        if self.store is not None and self.rows is not None:
            loader = PrefetchLoader(self.store, batches_of(self.rows, batch_size), pin_memory=pin)
            for _, batch in loader:
                yield batch
            return
        files = self.files or []
        for i in range(0, len(files), batch_size):
            arrays = [load_image(f, size=size) for f in files[i : i + batch_size]]
            yield torch.from_numpy(np.stack(arrays))


def predict_run(
    run_dir: str | Path, source: str | Path, opts: PredictOptions | None = None
) -> pd.DataFrame:
    """Columns image_id, patient_id (manifest), split, y_true (manifest with the run's outcome),
    p_pos and part: see the module docstring."""
    opts = opts or PredictOptions()
    run_dir, source = Path(run_dir), Path(source)
    if not is_done(run_dir):
        raise RunError(
            f"{run_dir} is not a finished run (no DONE marker)",
            "Give a run directory such as runs/<task>/<scheme>/<backbone>/<strategy>/full/fold-0.",
        )
    spec = read_spec(run_dir)
    loaded = load_backbone(spec.backbone, opts.weights or spec.weights)
    if spec.weights_fingerprint and loaded.weights_fingerprint != spec.weights_fingerprint:
        raise WeightsError(
            f"the run was trained on {spec.backbone} weights {spec.weights_fingerprint} "
            f"({spec.weights}); {opts.weights or spec.weights} has {loaded.weights_fingerprint}",
            "Pass --weights with the checkpoint the run was trained on.",
        )
    size, crop = _image_params(spec, opts)
    images = _image_set(source, size, crop, opts.cache_dir)
    spec_b = loaded.spec
    if get_strategy(spec.strategy).path == "features":
        accel = resolve_accel(opts.device, opts.dtype, spec_b.is_cnn, spec_b.bf16_cast_weights)
        p_pos = _predict_features(run_dir, spec, loaded, accel, images, opts.batch_size, size)
    else:
        accel = resolve_accel(opts.device, opts.dtype, spec_b.is_cnn)
        p_pos = _predict_trained(run_dir, loaded, spec, accel, images, opts.batch_size, size)
    parts = run_parts(run_dir, spec, images.ids)
    out = pd.DataFrame({"image_id": images.ids})
    if images.manifest is not None:
        frame = images.manifest.frame.reset_index(drop=True)
        out["patient_id"] = frame["patient_id"].astype(str)
    out["split"] = ["val" if p == "val" else "test" for p in parts]
    if images.manifest is not None:
        y = _labels(images.manifest, spec)
        if y is not None:
            out["y_true"] = y
    out["p_pos"] = p_pos
    out["part"] = parts
    return out


def run_parts(run_dir: Path, spec: RunSpec, ids: list[str]) -> list[str]:
    """The part each image played in the run: train, val, test, unused (in the run's cohort
    but not in its fold or draw), new (not in its cohort), or unknown (its splits file is gone)."""
    preds = pd.read_parquet(run_dir / PREDICTIONS_FILE, columns=["image_id", "split"])
    part = dict(zip(preds["image_id"], preds["split"], strict=True))
    train = _train_ids(spec)
    known = set(part) | (set(train.cohort) if train is not None else set())
    ids = [_known_id(i, known) for i in ids]
    if train is None:
        return [part.get(i, "unknown") for i in ids]
    cohort = set(train.cohort)
    return [
        part.get(i) or ("train" if i in train.ids else "unused" if i in cohort else "new")
        for i in ids
    ]


def _known_id(image_id: str, known: set[str]) -> str:
    """`image_id`, or its file name when only that is an id the run knows: a folder's images are
    named by their path under it (`C1/P0001/P0001-1`), a manifest may name them by file name."""
    if image_id in known:
        return image_id
    name = image_id.rsplit("/", 1)[-1]
    return name if name in known else image_id


@dataclass(frozen=True)
class _TrainIds:
    ids: set[str]
    cohort: list[str]


def _train_ids(spec: RunSpec) -> _TrainIds | None:
    path = spec.extra.get("splits_file")
    if not path or not Path(path).is_file():
        return None
    try:
        fold = read_splits(path).folds[spec.fold]
    except (ProgbenchError, IndexError):
        return None
    train = fold.train if spec.shots is None else fold.draw(spec.shots, spec.repeat or 0).train
    return _TrainIds(set(train), [*fold.train, *fold.val, *fold.test])


def _image_params(spec: RunSpec, opts: PredictOptions) -> tuple[int, bool]:
    """The image-store side and crop the run was trained with."""
    extra = spec.extra
    if opts.image_size is not None:
        return opts.image_size, bool(extra.get("image_crop", True))
    if "image_size" in extra:
        return int(extra["image_size"]), bool(extra.get("image_crop", True))
    key = spec.settings.get("features") or extra.get("feature_store")
    if key is not None:  # an LP run: its feature store records the transform
        from progbench.cache.featurestore import FeatureStore
        from progbench.cache.listing import find_store

        try:
            transform: dict[str, Any] = FeatureStore(find_store(key, opts.cache_dir)).attrs[
                "transform"
            ]
            return int(transform["store_size"]), bool(transform.get("crop", True))
        except CacheError as err:
            raise ConfigError(
                f"cannot tell the image size of run {spec.task}/{spec.backbone}/{spec.strategy}: "
                f"{err.message}",
                "Pass --image-size (the --image-size it was trained with; default 224) or "
                "--cache-dir where its feature store lives.",
            ) from err
    raise ConfigError("the run's spec.json records no image size", "Pass --image-size.")


def _image_set(source: Path, size: int, crop: bool, cache_dir: Path | None) -> ImageSet:
    if not source.exists():
        raise ConfigError(f"{source} does not exist", "Give a manifest, an image or a folder.")
    if source.is_file() and source.suffix.lower() in MANIFEST_SUFFIXES:
        manifest = load_manifest(source)
        built = build_image_store(manifest, ImageStoreParams(size=size, crop=crop), cache_dir)
        store = ImageStore(built.path)
        ids = manifest.frame["image_id"].astype(str).tolist()
        return ImageSet(ids, store=store, rows=store.indices(ids), manifest=manifest)
    if source.is_file():
        return ImageSet([image_id_of(Path(source.name))], files=[source])
    files = sorted(
        f
        for f in source.rglob("*")
        if f.is_file() and (f.suffix.lower() in IMAGE_SUFFIXES or (f.suffix == "" and is_dicom(f)))
    )
    if not files:
        raise ConfigError(
            f"{source} holds no images",
            f"Images are files ending in {', '.join(sorted(IMAGE_SUFFIXES))}, or DICOM files.",
        )
    ids = [image_id_of(f.relative_to(source)) for f in files]
    seen: dict[str, Path] = {}
    for image_id, f in zip(ids, files, strict=True):
        if image_id in seen:
            raise ConfigError(
                f"{seen[image_id]} and {f} would both be image {image_id!r}",
                "An image's id is its path under the folder without the extension: rename one, "
                "or give a manifest with an image_id column.",
            )
        seen[image_id] = f
    return ImageSet(ids, files=files)


def image_id_of(relative: Path) -> str:
    """A file's image id, as a manifest names it: its path without an image extension."""
    if relative.suffix.lower() in IMAGE_SUFFIXES:
        relative = relative.with_suffix("")
    return relative.as_posix()


def _predict_features(
    run_dir: Path,
    spec: RunSpec,
    loaded: LoadedBackbone,
    accel: Accel,
    images: ImageSet,
    batch_size: int,
    size: int,
) -> np.ndarray:
    from progbench.config import DEFAULT_VARIANT, TokenLayout, Variant
    from progbench.extract.features import encode_tokens

    head = predictor_for(get_strategy(spec.strategy), run_dir, spec.extra)
    variant = Variant.parse(str(spec.extra.get("variant", DEFAULT_VARIANT.name)))
    layout = TokenLayout.of_variant(variant, loaded.spec.feature_dim)
    model = prepare_model(loaded.encoder.eval(), accel)
    ready = LoadedBackbone(model, loaded.spec, loaded.weights, loaded.weights_fingerprint)
    batches = images.batches(batch_size, size, accel.pin_memory)
    return head(np.concatenate([encode_tokens(ready, accel, b, layout) for b in batches]))


def _predict_trained(
    run_dir: Path,
    loaded: LoadedBackbone,
    spec: RunSpec,
    accel: Accel,
    images: ImageSet,
    batch_size: int,
    size: int,
) -> np.ndarray:
    from progbench.models.strategies.files import load_trained
    from progbench.train.steps import Steps, positive_probability, with_input_size

    model = prepare_model(load_trained(run_dir, loaded, spec.strategy), accel).eval()
    input_spec = with_input_size(loaded.spec, spec.extra.get("input_size"))
    steps = Steps(model, input_spec, accel, torch.ones(2))
    logits = [steps.logits(b).cpu() for b in images.batches(batch_size, size, accel.pin_memory)]
    return positive_probability(torch.cat(logits))


def _labels(manifest: Manifest, spec: RunSpec) -> pd.Series | None:
    """0/1 from the run's outcome and positive value; missing where the manifest has no value."""
    task = spec.settings.get("task") or spec.extra  # older runs kept the task in `extra`
    outcome, positive = task.get("outcome"), task.get("positive")
    if outcome is None or positive is None or outcome not in manifest.frame.columns:
        return None
    values = manifest.frame[outcome].map(normalise_value)
    y = (values == normalise_value(positive)).astype("Int8")
    return y.mask(values == "").reset_index(drop=True)


def prediction_notes(preds: pd.DataFrame, out: Path) -> list[tuple[str, str]]:
    """(level, text) lines about a predictions table written to `out`: the parts of the run its
    images played, and whether and how `progbench evaluate` can score it (level `info` or
    `warning`)."""
    counts = preds["part"].value_counts()
    parts = ", ".join(f"{counts[p]} {p}" for p in counts.index)
    notes = [("info", f"part of the run: {parts}")]
    if "y_true" not in preds or "patient_id" not in preds:
        notes.append(
            (
                "info",
                "no labels (y_true needs a manifest with the run's outcome column): not scorable",
            )
        )
        return notes
    if "train" in counts:
        notes.append(
            (
                "warning",
                f"{counts['train']} image(s) were in the run's training part (part = train); "
                "`progbench evaluate` leaves them out of the score",
            )
        )
    unlabelled = int(preds["y_true"].isna().sum())
    if unlabelled:
        notes.append(
            (
                "warning",
                f"{unlabelled} image(s) have no value for the outcome (empty y_true); drop them "
                "before `evaluate`",
            )
        )
    else:
        notes.append(("info", f"score it with: progbench evaluate {out}"))
    return notes
