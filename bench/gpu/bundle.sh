#!/usr/bin/env bash
# Make what the GPU machine lacks, for `bench/gpu/run.sh` there (see bench/gpu/README.md).
#
#   bench/gpu/bundle.sh [VIDEO_FEATURES_CHECKOUT]
#
# Writes .gpu/ (carried by the first call) and .gpu-whisper/ (carried by the second), both git-ignored:
#   .gpu/bin/ffmpeg, ffprobe     static, built by build_ffmpeg.sh (the machine has no ffmpeg)
#   .gpu/wheels/*.whl            pure-Python packages its image lacks, for its Python 3.12
#   .gpu/media/                  the real clips of ../shared/media (../shared does not travel)
#   .gpu/video_features/         the peer's code, without its checkpoints and samples (optional)
#   .gpu/whisper/                Whisper tiny.en's first part and the whole file's sha256
#   .gpu-whisper/                its second part: the file (77 MB) is over one call's 64 MiB
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
shared="$root/../shared"
cd "$root"
limit=$((64 * 1024 * 1024))
rm -rf .gpu .gpu-whisper
mkdir -p .gpu/bin .gpu/wheels .gpu/media .gpu/whisper .gpu-whisper
if [ -x "${FFMPEG_BUILD:-}/ffmpeg" ]; then cp "$FFMPEG_BUILD"/ffmpeg "$FFMPEG_BUILD"/ffprobe .gpu/bin/; else
  bench/gpu/build_ffmpeg.sh .gpu/bin; fi
# the image has torch, torchvision, transformers, h5py, numpy, numba, tiktoken, PyYAML, tqdm (device KINDS.md)
python3 -m pip wheel -q --no-deps -w .gpu/wheels openai-whisper==20250625 ffmpeg-python==0.2.0 future==1.0.0 \
  more-itertools==11.2.1 omegaconf==2.4.0 2>&1 | grep -v '^WARNING: Location' || true
cp "$shared"/media/*.mp4 "$shared"/media/*.mkv "$shared"/media/*.avi .gpu/media/
if [ -n "${1:-}" ]; then
  mkdir -p .gpu/video_features
  (cd "$1" && git ls-tree -r -z --name-only HEAD | grep -zv -e '\.pt$' -e '\.pth$' -e '^sample/' -e '^docs/' -e '^tests/' -e '\.png$' \
    -e '\.gif$' -e '\.jpg$' | xargs -0 cp --parents -t "$root/.gpu/video_features")
fi
weights="$shared/weights/whisper-tiny.en.pt"
sha256sum "$weights" | cut -d' ' -f1 >.gpu/whisper/whisper-tiny.en.pt.sha256
# the first part fills what is left of the first call's 64 MiB, less 2 MiB of slack
used=$(( $(du -sb .gpu | cut -f1) + $(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1) ))
first=$(( limit - used - 2 * 1024 * 1024 ))
head -c "$first" "$weights" >.gpu/whisper/whisper-tiny.en.pt.part1
tail -c +"$((first + 1))" "$weights" >.gpu-whisper/whisper-tiny.en.pt.part2
du -sh .gpu .gpu-whisper
