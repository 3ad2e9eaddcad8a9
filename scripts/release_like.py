"""Write two messy "public releases" of one synthetic cohort, to try progbench as a new user would.

    python scripts/release_like.py OUT [--patients 240] [--seed 0] [--shortcut none|filename|geometry]

The images are the synthetic cohort's (docs/SYNTHETIC_COHORT.md), re-shaped the way real
COVID-19 chest X-ray downloads are:

- `OUT/release-a/`: `clinical_data.csv` in cp1252 (accented hospital names), one row per image,
  an `ImageFile` column whose values sometimes carry the extension, blank outcomes, a row given
  twice, a patient whose images disagree on the label, rows whose image is not in the download;
  `CXR/` holds RGB PNG files.
- `OUT/release-b/`: `metadata.csv` in utf-8 with a BOM, one row per patient, no file-name column;
  `images/` holds `<patient>_<n>.jpg` and `.png` files, several per patient, and files that no
  row names.

`--shortcut filename` puts a scanner UID in release A's file names that tracks the label (no
pixel change); `--shortcut geometry` saves the positive images of release A at another size.
`OUT/truth.csv` holds every image's true labels, for checking what `prepare` kept.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from progbench.data.synth import synthesize

HOSPITALS = {
    "C1": "Policlinico Umberto I – Roma",
    "C2": "Ospedale di Città",
    "C3": "Clínica São José",
}
SCANNER_UIDS = ("1.2.840.113619.2.55", "1.3.12.2.1107.5.3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--patients", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shortcut", choices=("none", "filename", "geometry"), default="none")
    parser.add_argument("--signal", type=float, default=1.0)
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; give a new folder")
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        synth = Path(tmp) / "synth"
        synthesize(synth, patients=args.patients, centers=4, seed=args.seed, signal=args.signal)
        with open(synth / "manifest.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        staging = args.out.with_name(args.out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        truth = _release_a(
            staging / "release-a",
            synth,
            [r for r in rows if r["center"] != "C4"],
            rng,
            args.shortcut,
        )
        truth += _release_b(
            staging / "release-b", synth, [r for r in rows if r["center"] == "C4"], rng
        )
        with open(staging / "truth.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(truth[0]))
            writer.writeheader()
            writer.writerows(truth)
        staging.rename(args.out)
    print(f"wrote {args.out}: {len(truth)} images in two releases (shortcut: {args.shortcut})")


def _release_a(
    out: Path, synth: Path, rows: list[dict], rng: np.random.Generator, shortcut: str
) -> list[dict]:
    (out / "CXR").mkdir(parents=True)
    table, truth, missing = [], [], set()
    for row in rows:
        positive = row["severity"] == "1"
        stem = row["image_id"]
        if shortcut == "filename":  # the scanner tracks the label 90% of the time
            uid = SCANNER_UIDS[int(positive) if rng.random() < 0.9 else 1 - int(positive)]
            stem = f"{uid}.{stem}"
        image = Image.open(synth / row["path"]).convert("RGB")
        if shortcut == "geometry" and positive:
            image = image.resize((image.width * 5 // 4, image.height))
        in_download = rng.random() > 0.3  # 30% of the rows name an image the download lacks
        if in_download:
            image.save(out / "CXR" / f"{stem}.png")
            truth.append(
                {
                    "source": "release-a",
                    "file": f"CXR/{stem}.png",
                    "patient": row["patient_id"],
                    "severity": row["severity"],
                    "death": row["death"],
                }
            )
        else:
            missing.add(row["patient_id"])
        blank = rng.random() < 0.05
        table.append(
            {
                "Codice paziente": row["patient_id"],
                "ImageFile": stem + (".png" if rng.random() < 0.2 else ""),
                "Ospedale": HOSPITALS[row["center"]],
                "Prognosi": "" if blank else ("SEVERE" if positive else "MILD"),
                "Decesso": "Sì" if row["death"] == "1" else "No",
                "Data": row["study_date"],
            }
        )
    table.append(dict(table[0]))  # a row given twice, cell for cell
    ids = [r["Codice paziente"] for r in table]
    multi = [
        r
        for r in table[1:-1]
        if ids.count(r["Codice paziente"]) > 1
        and r["Prognosi"]
        and r["Codice paziente"] not in missing
    ]
    if multi:  # one patient whose images (all in the download) disagree on the label
        multi[-1]["Prognosi"] = "MILD" if multi[-1]["Prognosi"] == "SEVERE" else "SEVERE"
    with open(out / "clinical_data.csv", "w", newline="", encoding="cp1252") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]), delimiter=";")
        writer.writeheader()
        writer.writerows(table)
    return truth


def _release_b(out: Path, synth: Path, rows: list[dict], rng: np.random.Generator) -> list[dict]:
    (out / "images").mkdir(parents=True)
    patients: dict[str, dict] = {}
    truth = []
    for row in rows:
        patient = patients.setdefault(row["patient_id"], {"n": 0, "row": row})
        patient["n"] += 1
        ext = ".jpg" if rng.random() < 0.6 else ".png"
        name = f"{row['patient_id']}_{patient['n']}{ext}"
        Image.open(synth / row["path"]).convert("RGB").save(out / "images" / name, quality=92)
        truth.append(
            {
                "source": "release-b",
                "file": f"images/{name}",
                "patient": row["patient_id"],
                "severity": row["severity"],
                "death": row["death"],
            }
        )
    Image.new("RGB", (64, 64)).save(out / "images" / "README_thumbnail.png")  # no row names it
    with open(out / "metadata.csv", "w", newline="", encoding="utf-8-sig") as f:
        writer = csv.writer(f)
        writer.writerow(["patient", "icu_admission", "outcome"])
        for pid, patient in patients.items():
            sev = patient["row"]["severity"]
            icu = "" if rng.random() < 0.05 else ("True" if sev == "1" else "False")
            writer.writerow(
                [pid, icu, "deceased" if patient["row"]["death"] == "1" else "discharged"]
            )
    return truth


if __name__ == "__main__":
    main()
