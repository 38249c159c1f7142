#!/usr/bin/env bash
# Make what the GPU machine lacks, for `bench/gpu/run.sh` there (see bench/gpu/README.md).
#
#   bench/gpu/bundle.sh [VIDEO_FEATURES_CHECKOUT]
#
# Writes, all git-ignored, one folder per call (each call carries at most 64 MiB with the checkout):
#   .gpu/wheels/*.whl            packages its image lacks, for its Python: PyAV (reelfeat decodes with the
#                                FFmpeg libraries in its wheel, and torchcodec loads them too), torchcodec for the
#                                image's torch (NVDEC; DEVICE_TORCHCODEC), openai-whisper and what it needs
#   .gpu/lib/                    NPP's two libraries that torchcodec's CUDA build links (from the nvidia-npp wheel)
#   .gpu/media/                  the real clips of ../shared/media (../shared does not travel)
#   .gpu/video_features/         the peer's code, without its checkpoints and samples (optional)
#   .gpu-whisper-1/, -2/         Whisper tiny.en (77 MB) in two parts, and the whole file's sha256
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
shared="$root/../shared"
cd "$root"
limit=$((64 * 1024 * 1024))
# the image's torch is 2.11 and its Python 3.12 (device KINDS.md); torchcodec's releases each match one
# torch release. The dry run here: DEVICE_PYTHON=3.11 DEVICE_TORCHCODEC=0.17.0 (this checkout's pins)
torchcodec=${DEVICE_TORCHCODEC:-0.11.0}
rm -rf .gpu .gpu-whisper-1 .gpu-whisper-2
mkdir -p .gpu/wheels .gpu/lib .gpu/media .gpu-whisper-1 .gpu-whisper-2
platform=(--only-binary=:all: --python-version "${DEVICE_PYTHON:-3.12}" --implementation cp --platform manylinux_2_28_x86_64
  --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
quiet() { grep -v '^WARNING: Location' || true; }
python3 -m pip download -q --no-deps "${platform[@]}" -d .gpu/wheels av=="$(python3 -c 'import av; print(av.__version__)')" \
  torchcodec=="$torchcodec" 2>&1 | quiet
python3 -m pip wheel -q --no-deps -w .gpu/wheels openai-whisper==20250625 ffmpeg-python==0.2.0 future==1.0.0 \
  more-itertools==11.2.1 omegaconf==2.4.0 2>&1 | quiet
npp=$(mktemp -d)
python3 -m pip download -q --no-deps "${platform[@]}" -d "$npp" "nvidia-npp>=13,<14" 2>&1 | quiet
unzip -q -j -o "$npp"/nvidia_npp-*.whl '*/lib/libnppc.so.13' '*/lib/libnppicc.so.13' -d .gpu/lib
rm -rf "$npp"
cp "$shared"/media/*.mp4 "$shared"/media/*.mkv "$shared"/media/*.avi .gpu/media/
if [ -n "${1:-}" ]; then
  mkdir -p .gpu/video_features
  (cd "$1" && git ls-tree -r -z --name-only HEAD | grep -zv -e '\.pt$' -e '\.pth$' -e '^sample/' -e '^docs/' -e '^tests/' -e '\.png$' \
    -e '\.gif$' -e '\.jpg$' | xargs -0 cp --parents -t "$root/.gpu/video_features")
fi
checkout=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
first_call=$((checkout + $(du -sb .gpu | cut -f1)))
if [ "$first_call" -ge "$limit" ]; then
  echo "bundle.sh: .gpu and the checkout are $first_call bytes, over one call's 64 MiB" >&2
  [ -n "${DEVICE_PYTHON:-}" ] || exit 1  # the dry run's bundle does not travel
fi
# Whisper: the first part fills the second call's 64 MiB less the checkout and 2 MiB of slack, the rest the third's
weights="$shared/weights/whisper-tiny.en.pt"
sha256sum "$weights" | cut -d' ' -f1 >.gpu-whisper-2/whisper-tiny.en.pt.sha256
first=$((limit - checkout - 2 * 1024 * 1024))
head -c "$first" "$weights" >.gpu-whisper-1/whisper-tiny.en.pt.part1
tail -c +"$((first + 1))" "$weights" >.gpu-whisper-2/whisper-tiny.en.pt.part2
du -sh .gpu .gpu-whisper-1 .gpu-whisper-2
