#!/usr/bin/env bash
# Every GPU check in one bounded call (see scripts/gpu_check.py): environment, training
# throughput (bf16 + channels_last vs fp32, eager vs compiled, host syncs), runs per GPU
# through the sweep, fp32 vs bf16 on one fold, one hrnet_w64 fold. Within BUDGET_S seconds
# (default 480) + 30; results in $OUT/summary.json (default gpu_results/).
#
#   BUDGET_S=480 bash scripts/gpu_check.sh          # a CUDA machine
#   SMOKE=1 bash scripts/gpu_check.sh               # every phase at toy size on the CPU
#
# Python: $PY, else this repo's .venv, else python3 (an offline GPU machine's own, with the
# wheelhouse installed: docs/gpu.md, "An offline GPU machine").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec "$PY" scripts/gpu_check.py "$@"
