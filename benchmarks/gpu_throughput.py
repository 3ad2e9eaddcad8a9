"""Full-size throughput on the GPU: extraction against a bare forward loop, and the trainer's step
against a minimal hand-written loop, each with its peak GPU memory.

    python benchmarks/gpu_throughput.py [--dry-run] [--out benchmarks/results/gpu_throughput.json]

- extract: `extract_features` images/s (image store -> prefetch -> device normalisation -> model ->
  Zarr) against a bare `model(x)` loop on a device-resident batch of the same model, batch size
  and dtype, the device synchronised around each loop; `--rounds` alternations (drift hits both),
  ratio of the medians; peak GPU memory (torch.cuda.max_memory_allocated) of each loop. resnet50,
  dinov2-b and clip-l, random init, 224 px, bf16 on CUDA, 2,048 images (extract_throughput.py's
  cohort), batch 64 (`progbench extract`'s default).
- train: benchmarks/train_step.py's `run_case` (trainer against a minimal torch + peft loop,
  alternating rounds) for resnet50 FFT and dinov2-b LoRA r8 at 224 px, batch 32, and the peak GPU
  memory of the case (both loops' models are resident: per-strategy peaks are in the calibration
  of gpu_check.sh).

`--dry-run` runs the same code on tiny twins with a handful of images and steps (on the CPU when
there is no GPU): it keeps the script working between GPU runs; its figures mean nothing.
benchmarks/gpu_check.sh runs both parts through benchmarks/gpu_check.py.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from progbench.provenance import git_sha, library_versions, now_iso

BENCH = Path(__file__).resolve().parent
FULL_EXTRACT = ["resnet50", "dinov2-b", "clip-l"]
TOY_EXTRACT = ["tiny-resnet", "tiny-dinov2", "tiny-clip"]


def _bench(name: str) -> Any:
    """An existing benchmark script as a module (benchmarks/ is not a package)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak(collect: bool = False) -> None:
    """Start counting peak GPU memory afresh; `collect`: first free what the previous case left
    (gc.collect takes ~0.7 s with transformers loaded, so only once per case, and on CUDA)."""
    import torch

    if torch.cuda.is_available():
        if collect:
            gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


# --------------------------------------------------------------------------------- extract


def _extract_cohort(root: Path, dry: bool) -> Path:
    if not dry:
        return _bench("extract_throughput").make_cohort(root, 2048)
    from progbench.data.synth import synthesize

    synthesize(root / "pool", patients=10, centers=2, seed=0)
    return root / "pool" / "manifest.csv"


def extract_case(
    backbone: str, manifest_path: Path, batch: int, root: Path, rounds: int
) -> dict[str, Any]:
    import torch

    from progbench.accel import prepare_model, resolve_accel, to_input
    from progbench.cache.imagestore import ImageStore, ImageStoreParams, build_image_store
    from progbench.cache.listing import remove_store
    from progbench.data.manifest import load_manifest
    from progbench.extract.features import extract_features
    from progbench.models.loaders import load_backbone

    _reset_peak(collect=True)
    manifest = load_manifest(manifest_path)
    n = len(manifest.frame)
    loaded = load_backbone(backbone, "random")
    spec = loaded.spec
    params = ImageStoreParams(size=spec.input_size)  # no resize in either loop
    store = ImageStore(build_image_store(manifest, params, root).path)  # not timed
    accel = resolve_accel("auto", "auto", spec.is_cnn, spec.bf16_cast_weights)
    model = prepare_model(loaded.encoder.eval(), accel)
    x = to_input(
        torch.from_numpy(store.read(np.arange(batch))), spec.input_size, spec.mean, spec.std, accel
    )
    peaks: dict[str, float | None] = {}

    def bare() -> float:
        _reset_peak()
        with torch.inference_mode(), accel.autocast():
            model(x)  # warm-up
            _sync()
            t0 = time.perf_counter()
            for _ in range(n // batch):
                model(x)
            _sync()
            seconds = time.perf_counter() - t0
        peaks["bare"] = _peak_mb()
        return (n // batch) * batch / seconds

    def extract() -> tuple[float, float]:
        _reset_peak()
        t0 = time.perf_counter()
        res = extract_features(
            manifest,
            backbone,
            "random",
            batch_size=batch,
            image_params=params,
            cache_dir=root,
            loaded=loaded,
        )
        wall = n / (time.perf_counter() - t0)
        peaks["extract"] = _peak_mb()
        remove_store(res.path)  # a fresh store each round
        return res.images_per_s or 0.0, wall

    bares, loops, walls = [bare()], [], []
    for _ in range(rounds):  # alternate, so drift in the machine's speed hits both
        rate, wall = extract()
        loops.append(rate)
        walls.append(wall)
        bares.append(bare())
    return {
        "backbone": backbone,
        "images": n,
        "batch_size": batch,
        "input_size": spec.input_size,
        "device": accel.describe(),
        "bare_img_s": [round(b, 2) for b in bares],
        "extract_img_s": [round(e, 2) for e in loops],
        "extract_wall_img_s": [round(w, 2) for w in walls],
        "ratio": round(float(np.median(loops) / np.median(bares)), 3),
        "ratio_wall": round(float(np.median(walls) / np.median(bares)), 3),
        "peak_memory_mb": {k: None if v is None else round(v, 1) for k, v in peaks.items()},
    }


def part_extract(args: argparse.Namespace) -> dict[str, Any]:
    names = TOY_EXTRACT if args.dry_run else FULL_EXTRACT
    batch, rounds = (8, 1) if args.dry_run else (args.batch_size or 64, args.rounds or 3)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = _extract_cohort(Path(tmp) / "cohort", args.dry_run)
        for name in names:
            results.append(
                _guarded(
                    name,
                    lambda n=name: extract_case(n, manifest, batch, Path(tmp) / "cache", rounds),
                )
            )
            print(f"extract {name}: {results[-1]}", flush=True)
    return {"results": results}


def _guarded(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One case's result, or its error: one failing case does not lose the others."""
    try:
        return fn()
    except Exception as err:  # recorded, and the step's exit status says so
        return {"case": name, "error": f"{type(err).__name__}: {err}"}


# ----------------------------------------------------------------------------------- train


def part_train(args: argparse.Namespace) -> dict[str, Any]:
    from progbench.data.synth import synthesize

    ts = _bench("train_step")
    if args.dry_run:
        cases = [
            ts.Case("tiny-resnet FFT", "tiny-resnet", "fft", None),
            ts.Case("tiny-dinov2 LoRA r8", "tiny-dinov2", "lora-r8", None),
        ]
        opts = argparse.Namespace(device="auto", batch_size=4, steps=1, rounds=1)
    else:
        cases = [
            ts.Case("resnet50 FFT", "resnet50", "fft", 224),
            ts.Case("dinov2-b LoRA r8", "dinov2-b", "lora-r8", None),
        ]
        opts = argparse.Namespace(
            device="auto",
            batch_size=args.batch_size or 32,
            steps=args.steps or 10,
            rounds=args.rounds or 5,
        )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "cohort", patients=10 if args.dry_run else 60, centers=2, seed=0)

        def case_of(case: Any) -> dict[str, Any]:
            _reset_peak(collect=True)
            res = ts.run_case(case, opts, root)
            peak = _peak_mb()
            return res | {"peak_memory_mb": None if peak is None else round(peak, 1)}

        for case in cases:
            results.append(_guarded(case.name, lambda c=case: case_of(c)))
            print(f"train {case.name}: ratio {results[-1].get('ratio_median')}", flush=True)
    return {"results": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dry-run", action="store_true", help="tiny twins, a few images and steps")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 64 extract, 32 train")
    ap.add_argument("--steps", type=int, default=None, help="train steps per round (default 10)")
    ap.add_argument("--rounds", type=int, default=None, help="alternations (default 3 / 5)")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "gpu_throughput.json")
    args = ap.parse_args(argv)
    result = {
        "benchmark": "gpu_throughput",
        "mode": "cpu-dry-run" if args.dry_run else "gpu",
        "extract": part_extract(args),
        "train": part_train(args),
        "versions": library_versions(),
        "git_sha": git_sha(),
        "measured_at": now_iso(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    failed = [r for part in ("extract", "train") for r in result[part]["results"] if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
