#!/usr/bin/env bash
# On the GPU machine: put the carried bundle in place, then run bench/gpu.py (see bench/gpu/README.md).
#
#   bash bench/gpu/run.sh [bench/gpu.py arguments]     (writes to $OUT, the device tool's output folder)
#   bash bench/gpu/run.sh --keep-only                  (puts the carried folders in place and stops)
#
# What a call puts in place stays for the next call on the same (warm) machine: wheels in /tmp/site,
# the Whisper parts in the state folder.
set -uo pipefail
cd "$(dirname "$0")/../.."
state=${REELFEAT_GPU_STATE:-/tmp/reelfeat-gpu}
site=/tmp/site
mkdir -p "$state/weights" "$site/lib"
export PYTHONUNBUFFERED=1
if [ -d .gpu/wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .gpu/wheels/*.whl
  cp .gpu/lib/* "$site/lib/" 2>/dev/null
  # torchcodec loads FFmpeg's libraries by their sonames (libavcodec.so.62); PyAV's wheel holds them
  # under hashed names (libavcodec-5e6b81c2.so.62.28.102)
  for lib in "$site"/av.libs/lib{avutil,avcodec,avformat,avdevice,avfilter,swscale,swresample}-*; do
    name=$(basename "$lib")
    version=${name#*.so.}
    ln -sf "$lib" "$site/lib/${name%%-*}.so.${version%%.*}"
  done
fi
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} LD_LIBRARY_PATH=$site/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Whisper tiny.en comes in two parts over two calls on the same machine; the state folder keeps the first
for part in .gpu-whisper-1/* .gpu-whisper-2/*; do [ -f "$part" ] && cp "$part" "$state/weights/"; done
whole="$state/weights/whisper-tiny.en.pt"
if [ ! -f "$whole" ] && [ -f "$whole.part1" ] && [ -f "$whole.part2" ]; then
  cat "$whole.part1" "$whole.part2" >"$whole.tmp"
  if [ "$(sha256sum "$whole.tmp" | cut -d' ' -f1)" = "$(cat "$whole.sha256")" ]; then mv "$whole.tmp" "$whole"
  else echo "run.sh: whisper parts do not make the file whose sha256 was recorded" >&2; rm -f "$whole.tmp"; fi
fi
[ "${1:-}" = "--keep-only" ] && { ls "$site" "$state/weights"; exit 0; }
python3 bench/gpu.py --out "${OUT:-$state/out}" --state "$state" "$@"
