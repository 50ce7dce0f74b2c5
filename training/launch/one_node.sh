#!/usr/bin/env bash
# Train on one machine with all its GPUs: one process per GPU (DDP), or DeepSpeed ZeRO-2 with
#   --deepspeed training/configs/deepspeed_zero2.json
# Usage (from the repository root):
#   training/launch/one_node.sh training/configs/<recipe>.yaml [--output runs/x] [more vdepth_training.train args]
# GPUS (default: every GPU nvidia-smi lists, else 8) sets the number of processes. The run resumes
# from its latest checkpoint when started again with the same --output (--resume), unless --overwrite
# is given: then it starts again. PYTHON (default: the
# repository's .venv/bin/python, which `make install` makes, else python3) runs torchrun (as
# vdepth_training.torchrun: a failed launch ends with the failing rank's line), so the script works
# without an activated environment.
set -euo pipefail
CONFIG=${1:?usage: one_node.sh CONFIG [vdepth_training.train args...]}
shift
if [[ -z "${GPUS:-}" ]]; then
  GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [[ "$GPUS" -gt 0 ]] || GPUS=8
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
# Seconds torchrun lets the ranks finish their step and checkpoint after a SIGTERM or Ctrl-C before it
# kills them (torchrun's own default, 30 s, is shorter than a large model's save); exported, so the
# ranks know it and warn when a save outlasts it.
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${SHUTDOWN_TIMEOUT:-${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-300}}
RESUME=(--resume)
for arg in "$@"; do [[ "$arg" != --overwrite ]] || RESUME=(); done
exec "$PYTHON" -m vdepth_training.torchrun --standalone --nproc_per_node "$GPUS" \
  -m vdepth_training.train --config "$CONFIG" "${RESUME[@]}" "$@"
