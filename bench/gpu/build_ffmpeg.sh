#!/usr/bin/env bash
# A small static ffmpeg and ffprobe for the GPU machine (which has neither, and whose glibc may differ).
#
#   bench/gpu/build_ffmpeg.sh OUT_DIR     -> OUT_DIR/ffmpeg, OUT_DIR/ffprobe (about 8.6 MB each)
#
# Source: Debian's ffmpeg source package (the version this machine's ffmpeg is), from the Debian
# mirror (needs a deb-src line; see bench/gpu/README.md). Only what reelfeat's decoding reads is
# enabled: the decoders, demuxers and filters of extract/media.py and of the real clips, the raw
# encoders its pipes need, and the muxers and bitstream filters that `-c copy` remuxing (bench/gpu.py's
# video set) needs. Statically linked, so it runs on any x86-64 Linux (it ran on the H200 machine's
# Ubuntu). Takes about 10 minutes on 2 cores.
set -euo pipefail
out=$(realpath -m "${1:?usage: build_ffmpeg.sh OUT_DIR}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get source --download-only ffmpeg >/dev/null 2>&1 || {
  echo "build_ffmpeg.sh: apt-get source ffmpeg failed: add a deb-src line for your Debian mirror" >&2
  exit 1
}
tar xf ffmpeg_*.orig.tar.xz
cd ffmpeg-*/
decoders=h264,hevc,mpeg4,mpeg2video,mpeg1video,h263,vp8,vp9,mjpeg,png,aac,aac_latm,mp3,mp3float,mp2,mp2float,opus,vorbis,flac,alac,ac3,eac3,pcm_s16le,pcm_s16be,pcm_s24le,pcm_s32le,pcm_f32le,pcm_u8,pcm_mulaw,pcm_alaw
demuxers=mov,matroska,avi,wav,mp3,aac,ogg,flac,mpegts,mpegps,h264,hevc,m4v,rawvideo,image2
encoders=rawvideo,pcm_f32le,pcm_s16le  # the raw frames and samples piped to reelfeat
muxers=rawvideo,f32le,s16le,pcm_f32le,pcm_s16le,mov,mp4,matroska,avi,wav,null,mpegts
parsers=h264,hevc,mpeg4video,mpegvideo,vp8,vp9,aac,aac_latm,mpegaudio,opus,vorbis,flac,ac3,mjpeg,png
bsfs=h264_mp4toannexb,hevc_mp4toannexb,aac_adtstoasc,vp9_superframe,mpeg4_unpack_bframes,extract_extradata,null
filters=scale,crop,pad,setsar,select,showinfo,concat,format,aformat,aresample,anull,null,fps,trim,atrim,setpts,asetpts,split,asplit,copy,pan,amix,volume
./configure --prefix="$work/prefix" --disable-everything --disable-autodetect --disable-network --disable-doc \
  --disable-ffplay --disable-shared --enable-static --extra-ldflags=-static --pkg-config-flags=--static \
  --enable-ffmpeg --enable-ffprobe --enable-swscale --enable-swresample --enable-avfilter \
  --enable-protocol=file,pipe --enable-decoder=$decoders --enable-encoder=$encoders --enable-demuxer=$demuxers --enable-muxer=$muxers \
  --enable-parser=$parsers --enable-bsf=$bsfs --enable-filter=$filters --enable-zlib >/dev/null
make -j"$(nproc)" ffmpeg ffprobe >/dev/null 2>&1
mkdir -p "$out"
strip -o "$out/ffmpeg" ffmpeg
strip -o "$out/ffprobe" ffprobe
"$out/ffmpeg" -hide_banner -version | head -1
