"""Benchmark `extract` against a bare forward loop, and its peak memory at two cohort sizes.

    python benchmarks/extract_throughput.py [--backbone resnet18] [--threads 2] [--out benchmarks/results/extract_throughput.json]

1. Throughput: images/s of `extract_features` (image store -> prefetch -> device normalisation ->
   model -> Zarr) against a bare `model(x)` loop over pre-made normalised tensors of the same
   batch size, dtype and model, in one process.
2. Memory: peak RSS of a fresh process extracting cohorts of 1,000 and 8,000 images, to show it
   stays flat (features are written chunk by chunk, images are streamed).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from progbench.provenance import git_sha, library_versions, now_iso


def make_cohort(root: Path, n_images: int, seed: int = 0) -> Path:
    """n_images manifest rows over a pool of 200 synthetic PNGs (decoding cost is the same)."""
    from progbench.data.synth import synthesize

    pool = root / "pool"
    synthesize(pool, patients=140, centers=2, seed=seed)
    base = pd.read_csv(pool / "manifest.csv")
    rows = []
    for i in range(n_images):
        r = base.iloc[i % len(base)].to_dict()
        r["image_id"] = f"img{i:06d}"
        r["patient_id"] = f"pat{i:06d}"
        r["path"] = str((pool / r["path"]).resolve())
        rows.append(r)
    path = root / f"manifest-{n_images}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def throughput(backbone: str, n: int, batch: int, root: Path, rounds: int) -> dict[str, object]:
    import torch

    from progbench.accel import prepare_model, resolve_accel, to_input
    from progbench.cache.imagestore import ImageStore, build_image_store
    from progbench.cache.listing import remove_store
    from progbench.data.manifest import load_manifest
    from progbench.extract.features import extract_features
    from progbench.models.loaders import load_backbone

    manifest = load_manifest(make_cohort(root, n))
    cache = root / "cache"
    store = ImageStore(build_image_store(manifest, cache_dir=cache).path)  # decode is not timed
    loaded = load_backbone(backbone, "random")
    spec = loaded.spec
    accel = resolve_accel("auto", "auto", spec.is_cnn, spec.bf16_cast_weights)
    model = prepare_model(loaded.encoder.eval(), accel)
    x = to_input(
        torch.from_numpy(store.read(np.arange(batch))), spec.input_size, spec.mean, spec.std, accel
    )

    def bare_loop() -> float:
        with torch.inference_mode(), accel.autocast():
            model(x)  # warm-up
            t0 = time.perf_counter()
            for _ in range(n // batch):
                model(x)
            return (n // batch) * batch / (time.perf_counter() - t0)

    # Alternate bare loop and extract (into a fresh feature store) `rounds` times, so drift in
    # the machine's speed hits both; the ratio is of the medians.
    bares, extracts, walls = [], [], []
    for _ in range(rounds):
        bares.append(bare_loop())
        t0 = time.perf_counter()
        res = extract_features(
            manifest, backbone, "random", batch_size=batch, cache_dir=cache, loaded=loaded
        )
        walls.append(n / (time.perf_counter() - t0))
        extracts.append(res.images_per_s or 0.0)
        remove_store(res.path)
    bares.append(bare_loop())
    return {
        "bare_forward_img_s": [round(b, 2) for b in bares],
        "extract_img_s": [round(e, 2) for e in extracts],
        "extract_wall_img_s": [round(w, 2) for w in walls],
        "ratio": round(float(np.median(extracts) / np.median(bares)), 3),
        "ratio_wall": round(float(np.median(walls) / np.median(bares)), 3),
        "device": accel.describe()["device_name"],
        "dtype": accel.dtype,
    }


def peak_rss_child(backbone: str, manifest: str, cache: str, batch: int) -> None:
    """Extract in a fresh process whose image store the parent built: its peak RSS is extract's."""
    from progbench.data.manifest import load_manifest
    from progbench.extract.features import extract_features

    m = load_manifest(manifest)
    res = extract_features(m, backbone, "random", batch_size=batch, cache_dir=cache)
    assert res.computed == len(m.frame), res
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mb": round(peak / 1024, 1), "images": res.computed}))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--throughput-images", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3, help="alternations of bare loop and extract")
    ap.add_argument("--sizes", default="1000,8000")
    ap.add_argument("--out", default="benchmarks/results/extract_throughput.json")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        peak_rss_child(args.backbone, args.child[0], args.child[1], args.batch_size)
        return
    from progbench.cache.imagestore import build_image_store
    from progbench.data.manifest import load_manifest

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tp = throughput(
            args.backbone, args.throughput_images, args.batch_size, root / "tp", args.rounds
        )
        print(f"throughput {args.backbone}: {tp}", flush=True)
        memory = {}
        for n in [int(s) for s in args.sizes.split(",") if s]:
            manifest = make_cohort(root / f"m{n}", n)
            build_image_store(load_manifest(manifest), cache_dir=root / f"c{n}")  # not measured
            cmd = [
                sys.executable,
                __file__,
                "--backbone",
                args.backbone,
                "--threads",
                str(args.threads),
            ]
            cmd += [
                "--batch-size",
                str(args.batch_size),
                "--child",
                str(manifest),
                str(root / f"c{n}"),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
            memory[n] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{n} images: {memory[n]}", flush=True)
    sizes = sorted(memory)
    rss = (
        round(memory[sizes[-1]]["peak_rss_mb"] / memory[sizes[0]]["peak_rss_mb"], 3)
        if sizes
        else None
    )
    result = {
        "benchmark": "extract_throughput",
        "backbone": args.backbone,
        "weights": "random",
        "threads": args.threads,
        "batch_size": args.batch_size,
        "throughput": tp,
        "peak_rss_mb": {str(k): v["peak_rss_mb"] for k, v in memory.items()},
        "rss_ratio_largest_vs_smallest": rss,
        "versions": library_versions(),
        "git_sha": git_sha(),
        "measured_at": now_iso(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
