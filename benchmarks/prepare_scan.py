"""Benchmark `prepare` on a TCIA-style download: how fast headers are read, and what skipping
CT series (metadata.csv, or pruning series folders) saves.

    python benchmarks/prepare_scan.py [--patients 300] [--ct-slices 40] [--out benchmarks/results/prepare_scan.json]

Builds an NBIA layout (per patient: an AP and a lateral CR radiograph, and a CT series of
`--ct-slices` files) with metadata.csv and a Stony Brook-style clinical CSV, then times
`prepare_stonybrook` three ways: with metadata.csv (CT series never opened), without it (a CT
folder is skipped after its first file), and without either (every header read). Prints a table
and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from progbench.provenance import git_sha, library_versions, now_iso

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers.rawdata import nbia_series, nbia_study, write_csv, write_dicom

CLINICAL = "deidentified_overlap_tcia.csv.cleaned.csv_20210806.csv"
META = ["Subject ID", "Modality", "File Location"]


def build(root: Path, patients: int, ct_slices: int) -> Path:
    base = root / "manifest-1"
    meta, rows, k = [], [], 0
    for p in range(patients):
        pid = f"A{100000 + p}"
        series = [("CR", "AP", 1), ("CR", "LATERAL", 1), ("CT", None, ct_slices)]
        for n, (mod, view, files) in enumerate(series, start=1):
            k += 1
            rel = (
                Path("COVID-19-NY-SBU")
                / pid
                / nbia_study(pid, "19001224", "CHEST", k)
                / nbia_series(n, view or "AXIAL", k)
            )
            size = 64 if mod == "CR" else 8
            for j in range(1, files + 1):
                write_dicom(
                    base / rel / f"1-{j}.dcm", pid, "19001224", mod, view, rows=size, cols=size
                )
            meta.append([pid, mod, f"./{rel.as_posix()}"])
        rows.append([pid, "deceased" if p % 5 == 0 else "discharged"])
    write_csv(base / "metadata.csv", META, meta)
    write_csv(root / CLINICAL, ["to_patient_id", "last.status"], rows)
    return root


def timed(raw: Path, out: Path, prune: bool) -> dict[str, float]:
    from progbench.data.datasets import stonybrook
    from progbench.data.datasets.tcia import TciaOptions

    real = stonybrook.tcia_rules

    def rules(preset, options):
        return real(preset, options).model_copy(update={"prune_series_folders": prune})

    stonybrook.tcia_rules = rules
    try:
        t0 = time.perf_counter()
        result = stonybrook.prepare_stonybrook(raw, out, TciaOptions(), force=True)
        seconds = time.perf_counter() - t0
    finally:
        stonybrook.tcia_rules = real
    images = result.record["outputs"][0]["images"]
    return {"seconds": round(seconds, 2), "images": images}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--ct-slices", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/prepare_scan.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = build(Path(tmp) / "raw", args.patients, args.ct_slices)
        files = {"cr": 2 * args.patients, "ct": args.ct_slices * args.patients}
        runs = {"metadata.csv": timed(raw, Path(tmp) / "a", prune=True)}
        (raw / "manifest-1" / "metadata.csv").unlink()
        runs["pruned folders"] = timed(raw, Path(tmp) / "b", prune=True)
        runs["every header"] = timed(raw, Path(tmp) / "c", prune=False)
    for name, r in runs.items():
        print(f"{name:16} {r['seconds']:7.2f} s  ({r['images']} images kept)")
    record = {
        "when": now_iso(),
        "git": git_sha(),
        "versions": library_versions(),
        "files": files,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
