#!/usr/bin/env bash
# One offline GPU check: install prepared wheels, run the gpu-offline profile on CUDA with
# --update-baselines and autosave, write the report, and collect run + baselines + report in OUT.
#
#   .ci/gpu-check.sh OUT [WHEELS]            on a CUDA machine (air-gapped is fine)
#   .ci/gpu-check.sh OUT [WHEELS] --dry-run  the same steps on this CPU with the cpu profile: proves
#                                            the install, the plugin, saving, the report and the
#                                            collection; everything but CUDA
#
# WHEELS: a folder of wheels for what the machine lacks (ultralytics, nvidia-modelopt,
# torchprofile, ...); they go to a private --target folder, never over the machine's packages.
# Extra pytest arguments: FASTNAS_GPU_CHECK_ARGS. The variant cache: FASTNAS_BENCH_CACHE (default
# OUT/cache, not collected).
set -uo pipefail
cd "$(dirname "$0")/.."

out=${1:?usage: .ci/gpu-check.sh OUT [WHEELS] [--dry-run]}
wheels=${2:-}
dry_run=0
[ "${3:-}" = "--dry-run" ] || [ "$wheels" = "--dry-run" ] && dry_run=1
[ "$wheels" = "--dry-run" ] && wheels=""
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { echo "gpu-check: $*" | tee -a "$out/gpu-check.log"; }

if [ -n "$wheels" ]; then
  site="$out/.site"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl \
    || { log "installing the wheels in $wheels failed"; exit 1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
# This checkout's package first, whatever is installed.
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export YOLO_OFFLINE=true YOLO_AUTOINSTALL=false
export FASTNAS_BENCH_CACHE="${FASTNAS_BENCH_CACHE:-$out/cache}"

if [ "$dry_run" -eq 1 ]; then
  mode=(--fastnas-profile cpu)
else
  mode=(--gpu --fastnas-profile gpu-offline --backends pytorch,torch-compile,onnxruntime,tensorrt)
fi
log "python $(python3 -c 'import sys; print(sys.version.split()[0])'), torch $(python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available())')"
start=$(date +%s)
# shellcheck disable=SC2086
python3 -m pytest benchmarks -p no:cacheprovider -rA "${mode[@]}" --update-baselines --baselines-dir "$out/baselines" \
  --benchmark-autosave --benchmark-storage="file://$out/benchmarks" ${FASTNAS_GPU_CHECK_ARGS:-} 2>&1 | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
log "pytest exit $rc after $(( $(date +%s) - start )) s"

runs=$(ls -t "$out"/benchmarks/*/*/*.json 2>/dev/null | head -n 1)
if [ -n "$runs" ]; then
  python3 -m fastnas_bench.cli report $runs --out "$out/report" >> "$out/gpu-check.log" 2>&1 \
    || log "the report failed (see above)"
else
  log "no saved run to report on"
fi
log "collected: $(cd "$out" && find benchmarks baselines report -type f 2>/dev/null | tr '\n' ' ')"
exit "$rc"
