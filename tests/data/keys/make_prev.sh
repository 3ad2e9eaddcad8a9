#!/bin/bash
# A run tree and feature store made by the code at $1 (a checkout of commit babab05, e.g.
# `git worktree add /tmp/prev babab05`), under $2; run from this folder:
#   ./make_prev.sh /tmp/prev /tmp/keys-prev
# Nothing here needs rerunning: it records what that version made.
set -e
CODE=$1; OUT=$2
VENV=${VENV:-/work/main/.venv}  # the environment to run it with
rm -rf $OUT; mkdir -p $OUT
HERE=$PWD; cd $CODE
PYTHONPATH=$CODE $VENV/bin/python -c "
from pathlib import Path
from tests.helpers.cohorts import write_cohort
write_cohort(Path('$OUT/cohort'), patients=24, centers=2, size=32)
"
PB="env PYTHONPATH=$CODE OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES= HF_HUB_OFFLINE=1 $VENV/bin/progbench"
T=$OUT/cohort/tasks/severity.yaml
$PB train $T --backbone tiny-resnet --weights random --image-size 32 --strategy lp --scheme kfold --folds 2 --runs $OUT/runs --cache-dir $OUT/cache
$PB train $T --backbone tiny-resnet --weights random --image-size 32 --strategy bitfit --scheme kfold --folds 2 --epochs 1 --lr-head 0.001 --runs $OUT/runs --cache-dir $OUT/cache
# The few KB the tests keep (tests/test_keys.py): both runs' spec.json, the stores' keys and the
# key attributes of the feature store, and the splits file the runs were made from.
cd "$HERE"
PYTHONPATH=$CODE $VENV/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
cell = out / "runs/tiny-severity/kfold/tiny-resnet"
spec = lambda s: json.loads((cell / s / "full/fold-0/spec.json").read_text())["spec"]
(feat,) = (out / "cache/features").glob("*.zarr")
(img,) = (out / "cache/images").glob("*.zarr")
fa = json.loads((feat / "zarr.json").read_text())["attributes"]
ia = json.loads((img / "zarr.json").read_text())["attributes"]
keep = ("key", "image_store", "backbone", "weights_fingerprint", "transform", "feature", "dtype", "format_version")
data = {
    "made_by": "tests/data/keys/make_prev.sh at commit babab05",
    "image_store": {"key": ia["key"], "content_fingerprint": ia["content_fingerprint"]},
    "feature_store": {k: fa[k] for k in keep},
    "lp_run": spec("lp"),
    "bitfit_run": spec("bitfit"),
}
Path("prev-babab05.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
(split,) = (out / "runs/tiny-severity").glob("splits-*.json")
Path(split.name).write_text(split.read_text())
PY
