#!/usr/bin/env bash
# The GPU check of progbench: one prepared script for a lent GPU (benchmarks/README.md, "GPU").
#
#   bash benchmarks/gpu_check.sh                  on the GPU machine: every figure, < 8 minutes
#   bash benchmarks/gpu_check.sh --cpu-dry-run [--out DIR]
#                                                 the same steps at toy size on the CPU
#   bash benchmarks/gpu_check.sh --fetch-wheels   here, before a GPU run: (re)fills .whl/ with
#                                                 the packages the GPU image lacks
#   --steps env,extract,...                       only these steps (setup and summary always
#                                                 run): for a second, shorter run
#   GPU_CHECK_GIT_SHA=<commit>                    recorded where the tree has no .git
#
# Writes gpu_env, gpu_cuda_tests, gpu_extract, gpu_train, gpu_calibration, gpu_plan and
# gpu_summary .json plus gpu_check.log (8 files: what the device tool brings back) under --out,
# else $OUT, else benchmarks/results/ (the dry run: a temporary folder). Steps run in order, each
# time-boxed within a total deadline, so one failure or hang does not lose the others; the exit
# status is 1 when a step failed (a crash, a timeout, a failed CUDA test), 0 otherwise. Goals
# missed are figures, not failures: gpu_summary.json says which were met.
set -uo pipefail

mode=gpu
out_dir=${OUT:-}
only=""
while (($#)); do
  case $1 in
    --cpu-dry-run) mode=dry ;;
    --fetch-wheels) mode=wheels ;;
    --out) out_dir=${2:?--out needs a folder}; shift ;;
    --steps) only=,${2:?--steps needs a list},; shift ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [[ -n $out_dir && $mode != wheels ]]; then # resolved from the caller's folder
  mkdir -p "$out_dir" && out_dir=$(cd "$out_dir" && pwd) || exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 2
if [[ -z ${PY:-} ]]; then
  # The worktree's venv where there is one; the GPU image's python3 holds torch (KINDS.md).
  if [[ -x $repo/.venv/bin/python ]]; then PY=$repo/.venv/bin/python; else PY=python3; fi
fi

# Packages progbench imports that the GPU image lacks (KINDS.md, "Python packages already
# there"), with what they need in turn; typing-extensions for pydantic's minimum; timm and peft
# (pure Python) at the versions tested here, as the image's are not known.
WHEELS=(open-clip-torch timm peft ftfy wcwidth zarr numcodecs donfig google-crc32c pydantic
  pydantic-core annotated-types typing-inspection typing-extensions pydicom openpyxl
  et-xmlfile scikit-posthocs submitit)

fetch_wheels() {
  # The versions installed here, as wheels for the image's CPython 3.12 on x86-64 Linux.
  rm -rf .whl && mkdir .whl || return 1
  local name version
  for name in "${WHEELS[@]}"; do
    version=$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' \
      "$name") || { echo "$name is not installed for $PY" >&2; return 1; }
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64 -d .whl "$name==$version" || return 1
  done
  du -sh .whl
}

if [[ $mode == wheels ]]; then
  fetch_wheels
  exit $?
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
if [[ -z $out_dir ]]; then
  if [[ $mode == dry ]]; then out_dir=$work/out; else out_dir=$repo/benchmarks/results; fi
fi
mkdir -p "$out_dir" || exit 2
log=$out_dir/gpu_check.log
site=$work/site # carried wheels install here, ahead of the image's packages

export PYTHONPATH=$repo:$site${PYTHONPATH:+:$PYTHONPATH}
export PROGBENCH_CACHE=$work/cache HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if [[ $mode == dry ]]; then
  export CUDA_VISIBLE_DEVICES="" # the CPU, even on a GPU machine
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} # toy sizes: a second thread only spins
  dry=(--dry-run)
  total=${GPU_CHECK_TOTAL_S:-300} # no lease to fit: room for a loaded machine
else
  export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} # tests/conftest.py hides GPUs if unset
  dry=()
  total=${GPU_CHECK_TOTAL_S:-470}
fi
reserve=20 # kept for the summary, which always runs
deadline=$((SECONDS + total))
steps_file=$work/steps.tsv
: >"$steps_file"
failed=0

# Each step is a function of its time box in seconds.
missing_modules() { # those of the modules named (default: what progbench imports) not found
  local names=("$@")
  ((${#names[@]})) || names=(progbench typer pydantic zarr numcodecs open_clip peft timm
    transformers pydicom openpyxl scikit_posthocs submitit pytest)
  "$PY" -c 'import importlib.util as u, sys
print(" ".join(n for n in sys.argv[1:] if u.find_spec(n) is None))' "${names[@]}"
}
setup_env() {
  local missing
  missing=$(missing_modules) || return 1
  if [[ -n $missing ]] && compgen -G ".whl/*.whl" >/dev/null; then
    echo "missing: $missing; installing $(ls .whl/*.whl | wc -l) carried wheels into $site"
    timeout -k 5 "$1" "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$site" .whl/*.whl || return 1
    missing=$(missing_modules) || return 1
  fi
  if [[ -n $missing ]]; then
    echo "$PY cannot import: $missing (run --fetch-wheels where pip works, carry .whl)"
    return 1
  fi
  echo "every module progbench imports is there for $PY"
}
run_part() { # run_part BOX PART [ARGS]: one part of benchmarks/gpu_check.py, time-boxed
  timeout -k 10 "$1" "$PY" benchmarks/gpu_check.py "$2" --dir "$out_dir" "${dry[@]}" "${@:3}"
}
env_info() { run_part "$1" env; }
cuda_tests() {
  # pytest writes its JUnit XML at the end: a per-test limit (pytest-timeout, on the GPU image)
  # keeps one hung test from losing the others' outcomes.
  local per_test=()
  [[ -z $(missing_modules pytest_timeout) ]] && per_test=(--timeout=100 --timeout-method=signal)
  timeout -k 10 "$(($1 > 60 ? $1 - 30 : $1 / 2))" "$PY" -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider \
    --junitxml="$work/cuda.xml" "${per_test[@]}"
  run_part 30 cuda-tests --junit "$work/cuda.xml" --rc $?
}
extract() { run_part "$1" extract; }
train() { run_part "$1" train; }
# No new backbone once the budget is spent: the last one started (clip-l) must still fit.
calibrate() { run_part "$1" calibrate --budget "$(($1 > 80 ? $1 - 40 : $1 / 2))"; }
plan() { run_part "$1" plan --budget "$(($1 - 5))"; }
summary() { run_part "$1" summary --steps "$steps_file"; }

step() { # step NAME BOX FUNCTION: run it within min(BOX, the time left), record rc and seconds
  local name=$1 box=$2 fn=$3 left=$((deadline - SECONDS - reserve)) t0=$SECONDS rc
  if [[ -n $only && $only != *,$name,* && $name != setup && $name != summary ]]; then return; fi
  [[ $name == summary ]] && left=$((deadline - SECONDS + reserve))
  ((box > left)) && box=$left
  if ((box < 15)); then
    echo "== $name: skipped, no time left"
    echo "$name 124 0" >>"$steps_file"
    failed=1
    return
  fi
  echo "== $name: at most ${box} s"
  "$fn" "$box"
  rc=$?
  echo "$name $rc $((SECONDS - t0))" >>"$steps_file"
  echo "== $name: rc $rc in $((SECONDS - t0)) s"
  ((rc == 0)) || failed=1
}

main() {
  echo "gpu_check.sh $mode: python $PY, figures in $out_dir, work in $work, deadline ${total} s"
  step setup 90 setup_env
  step env 30 env_info
  step cuda-tests 190 cuda_tests
  step extract 100 extract
  step train 70 train
  step calibrate 150 calibrate
  step plan 60 plan
  step summary 20 summary
  return $failed
}

main 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
rm -rf "$work/site" "$work/cache"
exit "$status"
