#!/usr/bin/env bash
# The GPU checklist (shared/GPU.md) as one run on a machine with a CUDA GPU and no network: the
# checks in order of what they settle, each under its own time limit, all within BUDGET seconds,
# so that a limited lease returns what finished. What it measures lands in $OUT (8 files at most):
#   gpu_checks.log    every command's output           timings.tsv         check, seconds, exit code
#   trainer_step.json benchmarks/test_training_step.py real_dimensions.json benchmarks/test_gpu_real_dimensions.py
#   claims.json, claims.md, fig0_training.png          the miniature default built and attributed on the GPU (the warm run's
#                                                      report where it finished, else the cold run's)
#   benchmarks.json   every benchmark, last, if time is left
#
#   bash benchmarks/gpu_wheels.sh                      # first, on a machine with PyPI: the packages the GPU image lacks, into .whl/
#   bash benchmarks/gpu_checks.sh                      # on the GPU machine, .whl carried (BUDGET=480 seconds)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-checks}
BUDGET=${BUDGET:-480}
WORKERS=${WORKERS:-6}  # xdist workers sharing the GPU for the miniature (its models are far too small to fill one)
mkdir -p "$OUT"
LOG=$OUT/gpu_checks.log TIMES=$OUT/timings.tsv
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2
if compgen -G ".whl/*.whl" >/dev/null; then
  if ! python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lpi-site .whl/*.whl >>"$LOG" 2>&1; then
    echo "installing the carried wheels failed (see $LOG)" | tee -a "$LOG"
    exit 1
  fi
  export PYTHONPATH=/tmp/lpi-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
WORK=$(mktemp -d)

check() {  # check NAME LIMIT COMMAND...: run it under min(LIMIT, what is left of BUDGET less the kill grace); log it; time it
  local name=$1 limit=$2 left=$((BUDGET - SECONDS - 10))
  shift 2
  if ((left < 30)); then
    printf '%s\t-\tnot run: %ss of the budget left\n' "$name" "$left" >>"$TIMES"
    return
  fi
  ((limit > left)) && limit=$left
  echo "=== $name (at most ${limit}s): $*" | tee -a "$LOG"
  local start=$SECONDS
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  printf '%s\t%s\t%s\n' "$name" "$((SECONDS - start))" "${PIPESTATUS[0]}" >>"$TIMES"
}

report() {  # report NAME: the run's report files, under names of their own in $OUT
  for f in claims.json claims.md fig0_training.png; do
    [ -f "$WORK/$1/$f" ] && cp "$WORK/$1/$f" "$OUT/$f"
  done
}

printf 'check\tseconds\texit code\n' >"$TIMES"
check environment 60 bash -c 'nvidia-smi; python3 -c "
import torch, transformers, datasets, lpi_core, claims.reporting.html, claims.running.executors
print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, torch.cuda.get_device_name(), \"transformers\", transformers.__version__, \"datasets\", datasets.__version__, \"lpi-claims\", lpi_core.__version__)"'
check gpu-tests 150 python3 -m pytest tests -m gpu --gpu -q -p no:cacheprovider
check trainer-step 120 python3 -m pytest benchmarks/test_training_step.py --gpu -s -q -p no:cacheprovider --benchmark-json "$OUT/trainer_step.json"
check miniature-cold 300 python3 -m pytest claims --gpu -n "$WORKERS" -q -p no:cacheprovider --cache-dir "$WORK/cache" --report-dir "$WORK/cold"
report cold
check miniature-warm 120 python3 -m pytest claims --gpu -n "$WORKERS" -q -p no:cacheprovider --cache-dir "$WORK/cache" --report-dir "$WORK/warm"
report warm
check real-dimensions 150 python3 -m pytest benchmarks/test_gpu_real_dimensions.py --gpu -s -q -p no:cacheprovider --benchmark-json "$OUT/real_dimensions.json"
check full-size 300 python3 -m pytest tests -m full_size --full-size --gpu -q -p no:cacheprovider
check benchmarks 300 python3 -m pytest benchmarks --gpu -s -q -p no:cacheprovider --benchmark-json "$OUT/benchmarks.json"
cat "$TIMES"
