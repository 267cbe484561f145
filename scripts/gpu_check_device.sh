#!/usr/bin/env bash
# The FlashInfer executor check on a CUDA machine without network access, in one command.
#
#   python -m flashinfer_ext.bundle build      # here, once: writes .gpu_bundle/ (about 23 MiB)
#   scripts/gpu_check_device.sh                # there, with .gpu_bundle/ copied beside the code
#   scripts/gpu_check_device.sh --dry-run      # here, on the CPU: install, imports, JIT specs, skip path
#
# It installs the bundle's wheels into a fresh target folder, prints nvidia-smi / torch / flashinfer
# versions, checks the bundle (flashinfer_ext.bundle verify), compiles the kernels in one ninja run
# (sm90 only), then runs `flashinfer_ext.gpu_check` at 8K-128K tokens under a time guard: the whole
# run ends within GPU_CHECK_TOTAL_S seconds (default 470), compilation included. Results go to
# $OUT (default ./gpu_check_out): gpu_check.json, gpu_check.md (markdown table), gpu_check.log.
# Exit status: gpu_check's (0 all within tolerance, 1 a failure), 3 install, 4 verify, 124 timeout.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

DRY_RUN=0
case "${1:-}" in
  --dry-run) DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: scripts/gpu_check_device.sh [--dry-run]" >&2; exit 2 ;;
esac
BUNDLE=${GPU_BUNDLE:-.gpu_bundle}
OUT=${OUT:-$PWD/gpu_check_out}
LENGTHS=${GPU_CHECK_LENGTHS:-8192,16384,32768,65536,131072}
TOTAL_S=${GPU_CHECK_TOTAL_S:-470}
PREBUILD_S=${GPU_CHECK_PREBUILD_S:-300}
mkdir -p "$OUT"

export PYTHONUNBUFFERED=1
export MAX_JOBS=${MAX_JOBS:-16} FLASHINFER_JIT_PREBUILD_MAX_JOBS=${MAX_JOBS:-16}
export FLASHINFER_CUDA_ARCH_LIST=${FLASHINFER_CUDA_ARCH_LIST:-9.0}  # H200 (sm90a) only
export FLASHINFER_WORKSPACE_BASE=${FLASHINFER_WORKSPACE_BASE:-/tmp/flashinfer-ws}  # JIT cache
# apache-tvm-ffi builds its torch DLPack addon on first import where torch lacks the exchange API.
export TVM_FFI_CACHE_DIR=${TVM_FFI_CACHE_DIR:-/tmp/tvm-ffi-cache}
# FlashInfer takes the toolkit from CUDA_HOME, else from `which nvcc`: a wrapper script on the PATH
# (/usr/local/bin/nvcc) would make it look for libraries under /usr/local.
if [ -z "${CUDA_HOME:-}" ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda
  elif command -v nvcc >/dev/null; then CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")"); export CUDA_HOME
  fi
fi

main() {
  local start=$SECONDS py site
  site=$(mktemp -d /tmp/gpu-check-site.XXXXXX)
  trap 'rm -rf "$site"' EXIT  # the JIT cache lives elsewhere (FLASHINFER_WORKSPACE_BASE)
  local wheels=()
  if [ "$DRY_RUN" = 1 ]; then
    # The device wheels are built for CPython 3.12; here the flashinfer wheel (pure Python) goes
    # with the same apache-tvm-ffi for this Python and the image's own pure-Python packages.
    py=${PYTHON:-.venv/bin/python}
    wheels=("$BUNDLE"/flashinfer_python-*.whl "$BUNDLE"-dryrun/*.whl)
  else
    py=${PYTHON:-python3}
    wheels=("$BUNDLE"/*.whl)
  fi
  # FlashInfer runs `ninja` by name: the one beside this Python (the ninja package) comes first.
  PATH="$(dirname "$(command -v "$py")"):$PATH"
  echo "== install ($(date -u +%H:%M:%S)): ${wheels[*]}"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "${wheels[@]}" || return 3
  export PYTHONPATH="$site:$PWD"

  # The FA3 kernels include CUTLASS's tensor_fill.h, which includes curand_kernel.h: where the
  # toolkit lacks it, take the one of the nvidia-curand package, searched after the toolkit's headers.
  if [ -n "${CUDA_HOME:-}" ] && [ ! -f "$CUDA_HOME/include/curand_kernel.h" ]; then
    local inc
    inc=$("$py" -c 'import sys, pathlib; print(next((str(h.parent) for p in sys.path for h in pathlib.Path(p or ".").glob("nvidia/*/include/curand_kernel.h")), ""))')
    if [ -n "$inc" ]; then export FLASHINFER_EXTRA_CUDAFLAGS="${FLASHINFER_EXTRA_CUDAFLAGS:-} -isystem $inc"; fi
    echo "curand_kernel.h: not in $CUDA_HOME/include; ${inc:-not found either in the nvidia packages}"
  fi

  echo "== versions"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  command -v nvcc >/dev/null && nvcc --version | tail -n 2
  echo "CUDA_HOME=${CUDA_HOME:-unset}"
  "$py" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '| gpu', torch.cuda.is_available())"

  echo "== verify"
  "$py" -m flashinfer_ext.bundle verify --out "$BUNDLE" --site "$site" || return 4

  local args=(--lengths "$LENGTHS" --json "$OUT/gpu_check.json" --table "$OUT/gpu_check.md")
  if [ "$DRY_RUN" = 1 ]; then
    echo "== gpu_check (no CUDA here: the skip path)"
    "$py" -m flashinfer_ext.gpu_check "${args[@]}" --budget-s 60
    return $?
  fi

  echo "== prebuild ($(date -u +%H:%M:%S))"
  # A failed or slow prebuild is not fatal: the first calls JIT-compile what is missing.
  timeout --kill-after=10 "$PREBUILD_S" "$py" -m flashinfer_ext.bundle prebuild || echo "prebuild: exit $?"

  local left=$((TOTAL_S - (SECONDS - start)))
  echo "== gpu_check ($(date -u +%H:%M:%S), ${left}s left)"
  if [ "$left" -lt 40 ]; then echo "gpu_check: no time left"; return 124; fi
  # --budget-s stops starting cases; timeout ends a case that overruns (the files keep every row).
  timeout --signal=INT --kill-after=15 "$left" "$py" -m flashinfer_ext.gpu_check "${args[@]}" --budget-s $((left - 45))
}

main 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
