#!/usr/bin/env bash
# On the GPU machine: put the carried bundle in place, then run bench/gpu.py (see bench/gpu/README.md).
#
#   bash bench/gpu/run.sh [bench/gpu.py arguments]     (writes to $OUT, the device tool's output folder)
set -uo pipefail
cd "$(dirname "$0")/../.."
state=${REELFEAT_GPU_STATE:-/tmp/reelfeat-gpu}
mkdir -p "$state/weights"
export PATH="$PWD/.gpu/bin:$PATH" PYTHONUNBUFFERED=1
if [ -d .gpu/wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# Whisper tiny.en comes in two parts over two calls on the same machine; the state folder keeps the first
for part in .gpu/whisper/* .gpu-whisper/*; do [ -f "$part" ] && cp "$part" "$state/weights/"; done
whole="$state/weights/whisper-tiny.en.pt"
if [ ! -f "$whole" ] && [ -f "$whole.part1" ] && [ -f "$whole.part2" ]; then
  cat "$whole.part1" "$whole.part2" >"$whole.tmp"
  if [ "$(sha256sum "$whole.tmp" | cut -d' ' -f1)" = "$(cat "$whole.sha256")" ]; then mv "$whole.tmp" "$whole"
  else echo "run.sh: whisper parts do not make the file whose sha256 was recorded" >&2; rm -f "$whole.tmp"; fi
fi
python3 bench/gpu.py --out "${OUT:-$state/out}" --state "$state" "$@"
