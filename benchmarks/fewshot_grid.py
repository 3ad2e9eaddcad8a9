"""Benchmark the LP + few-shot grid from a warm feature cache against the no-cache baseline.

    python benchmarks/fewshot_grid.py [--backbone dinov2-b] [--threads 2] [--out benchmarks/results/fewshot_grid.json]

The cohort has the size of AIforCOVID: 1,585 images of 1,585 patients in 6 centres, features of
dimension D=768 (dinov2-b). The grid is 5 folds x k in {2,4,8,16,32} x 5 repeats (125 few-shot
fits) plus full-data LP on the 5 folds: 130 run directories, each written, scored and marked
DONE through the same code as `progbench train --strategy lp`.

1. Warm cache: time from opening the feature store to the last DONE file, for the default probe
   (lbfgs over the L2 grid, variant cls1; best of --repeats), once for the `variants` preset
   (lbfgs over the study's four feature variants) and once for the `reference` preset (the
   study's head-lr grid with batched Adam, over the four variants). The store has a ViT's token
   layout (the class tokens of the last 4 blocks and the patch mean, 5 x 768 columns: what a
   dinov2-b store holds) of class-conditional Gaussian features (signal on 32 dimensions of each
   token), so the probes have a real optimisation problem; the timing does not depend on where
   the features came from. On a progbench without feature variants (before the token layout)
   the store holds one 768-d feature and the presets that do not exist there are skipped.
2. No-cache baseline: every fit re-extracts the features of the images it touches (its training
   images plus the fold's validation and test images). Running that for real would take hours, so
   the benchmark measures the backbone's extraction throughput (uint8 store batch -> device
   normalisation -> random-init full-size model, same code as `extract`) on this machine and
   projects: baseline = warm time + images touched / images per second.
Prints a summary and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from progbench.provenance import git_sha, library_versions, now_iso

N_IMAGES = 1585  # AIforCOVID
CENTRES = 6


def make_task(root: Path, seed: int = 0):
    from progbench.data.manifest import load_task

    rng = np.random.default_rng(seed)
    ids = [f"img{i:05d}" for i in range(N_IMAGES)]
    frame = pd.DataFrame(
        {
            "image_id": ids,
            "path": [f"images/{i}.png" for i in ids],
            "patient_id": [f"pat{i:05d}" for i in range(N_IMAGES)],
            "center": [f"C{c}" for c in rng.integers(0, CENTRES, N_IMAGES)],
            "severity": np.where(rng.random(N_IMAGES) < 0.45, "severe", "mild"),
        }
    )
    (root / "images").mkdir()
    for p in frame[
        "path"
    ]:  # placeholders: the manifest fingerprint stats them, LP never reads them
        (root / p).touch()
    path = root / "manifest.csv"
    frame.to_csv(path, index=False)
    return load_task(manifest=path, outcome="severity", positive="severe", check_files=False)


def vit_layout(dim: int):
    """The token layout of a ViT store (None on a progbench without feature variants)."""
    try:
        from progbench.config import TokenLayout, VariantGrid
    except ImportError:
        return None
    return TokenLayout.of(VariantGrid(n_last_blocks=[1, 4], avgpool=[False, True]), dim)


def make_store(root: Path, task, dim: int, seed: int = 0) -> Path:
    from progbench.cache.featurestore import FeatureKey, create_store

    layout = vit_layout(dim)
    width = layout.width if layout else dim
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_IMAGES, width)).astype(np.float32)
    for start in range(0, width, dim):  # a weak, spread-out signal in every token
        x[:, start : start + 32] += 0.35 * (2 * task.labels[:, None] - 1)
    key = FeatureKey("synthetic", "synthetic-768", "none", {}, {}, "fp32")
    ids = task.manifest.frame["image_id"].tolist()
    group = create_store(root / "features", key, ids, layout or dim, rows_per_chunk=64, attrs={})
    group["features"][:] = x
    group["done"][:] = True
    group.attrs["complete"] = True
    return root / "features"


def extraction_rate(backbone: str, n: int, batch: int) -> float:
    """Images/s of the extract forward path for a random-init full-size `backbone`."""
    import torch

    from progbench.accel import prepare_model, resolve_accel
    from progbench.extract.features import encode
    from progbench.models.loaders import load_backbone

    loaded = load_backbone(backbone, "random")
    spec = loaded.spec
    accel = resolve_accel("auto", "auto", spec.is_cnn, spec.bf16_cast_weights)
    loaded.encoder = prepare_model(loaded.encoder.eval(), accel)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 224, 224), dtype=torch.uint8, generator=gen)
    encode(loaded, accel, images)  # warm-up
    t0 = time.perf_counter()
    for _ in range(max(1, n // batch)):
        encode(loaded, accel, images)
    return max(1, n // batch) * batch / (time.perf_counter() - t0)


def images_touched(splits) -> int:
    """Images each fit would have to re-extract without a cache, summed over all fits."""
    total = 0
    for fold in splits.folds:
        held_out = len(fold.val) + len(fold.test)
        total += len(fold.train) + held_out
        total += sum(len(d.train) + held_out for d in fold.fewshot)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backbone", default="dinov2-b", help="backbone for the baseline throughput")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rate-images", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="warm-cache timings (default probe)")
    ap.add_argument("--out", default="benchmarks/results/fewshot_grid.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from progbench.cache.featurestore import FeatureStore
    from progbench.data.fewshot import add_fewshot
    from progbench.data.splits import make_splits
    from progbench.errors import ConfigError
    from progbench.runs import iter_runs
    from progbench.train.features import FeatureContext, feature_settings, run_feature_probes
    from progbench.train.plan import SplitRequest, plan_runs
    from progbench.train.probe import ProbeConfig

    shots = [2, 4, 8, 16, 32]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        task = make_task(root)
        splits = add_fewshot(make_splits(task, "kfold", folds=5, seed=42), task, shots, repeats=5)
        store_path = make_store(root, task, dim=768)
        ctx = FeatureContext("synthetic-768", "random", "none", "synthetic")
        req = SplitRequest(shots=tuple(shots), repeats=5)
        timings: dict[str, list[float]] = {}
        for preset in ("default", "variants", "reference"):
            try:
                cfg = ProbeConfig.preset(preset)
            except ConfigError:
                print(f"{preset} probe: no such preset in this progbench; skipped")
                continue
            problems = plan_runs(
                task, splits, req, Path("splits.json"), ctx.identity(), feature_settings(ctx, cfg)
            )
            timings[preset] = []
            for r in range(args.repeats if preset == "default" else 1):
                runs = root / f"runs-{preset}-{r}"
                t0 = time.perf_counter()
                store = FeatureStore(store_path)
                summary = run_feature_probes(task, problems, store, ctx, runs, cfg)
                timings[preset].append(time.perf_counter() - t0)
                n_done = len(iter_runs(runs).done)
                print(f"{preset} probe, warm cache: {timings[preset][-1]:.2f} s for {n_done} runs")
                assert n_done == len(summary.written) == 5 * (1 + len(shots) * 5), n_done
        t0 = time.perf_counter()
        again = run_feature_probes(task, problems, FeatureStore(store_path), ctx, runs, cfg)
        resume_s = time.perf_counter() - t0
        assert not again.written
        touched = images_touched(splits)
    rate = extraction_rate(args.backbone, args.rate_images, batch=32)
    warm = min(timings["default"])
    baseline = warm + touched / rate
    result = {
        "benchmark": "fewshot_grid",
        "cohort": {"images": N_IMAGES, "patients": N_IMAGES, "centres": CENTRES, "dim": 768},
        "store_columns": 5 * 768 if vit_layout(768) else 768,
        "grid": {"folds": 5, "shots": shots, "repeats": 5, "fewshot_fits": 125, "full_fits": 5},
        "threads": args.threads,
        "warm_cache_s": round(warm, 3),
        "warm_cache_s_all_passes": [round(t, 3) for t in timings["default"]],
        "reference_preset_s": round(timings["reference"][0], 3),
        "variants_preset_s": round(timings["variants"][0], 3) if "variants" in timings else None,
        "rerun_all_done_s": round(resume_s, 3),
        "baseline": {
            "backbone": args.backbone,
            "weights": "random",
            "extract_img_s": round(rate, 2),
            "images_reextracted": touched,
            "projected_s": round(baseline, 1),
        },
        "speedup_vs_no_cache": round(baseline / warm, 1),
        "versions": library_versions(),
        "git_sha": git_sha(),
        "measured_at": now_iso(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}, indent=2))


if __name__ == "__main__":
    main()
