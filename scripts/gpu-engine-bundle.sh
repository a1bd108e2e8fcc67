#!/usr/bin/env bash
# gpu-engine-bundle.sh DEST [CHECKPOINT_DIR...]: pack what scripts/gpu-engine-check.sh needs on a
# GPU machine that lacks our Debian libraries and ../shared: the stripped
# build (libxquant, plugins, the CLI, the GPU test binaries), the shared
# libraries they load that are not part of a bare CUDA image, the
# stories260K models and the TinyStories text. The build keeps its absolute
# paths, so the check unpacks it at this worktree's path.
set -euo pipefail
dest=${1:?usage: gpu-engine-bundle.sh DEST_DIR [CHECKPOINT_DIR...]}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
if grep -q '^XQUANT_CUDA_COMPILE_CHECK:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "$build compiled the cuda provider as a check only (scripts/test.sh without a GPU): run scripts/setup.sh first" >&2
  exit 1
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/build/lib" "$stage/build/bin" "$stage/deps" "$stage/shared/models" "$stage/shared/data/tinystories"
cp -a "$build/lib/." "$stage/build/lib/"
# Static libraries are link inputs only (the GPU machine builds nothing): 40 MB of the 64 MB a call may carry.
find "$stage/build/lib" -name '*.a' -delete
bins=(xquant test_cuda_provider test_device_engine test_device_fp8 test_engine test_paged_engine test_decode_graphs
      xquant_engine_logits)
for b in "${bins[@]}"; do
  f=$(find "$build" -name "$b" -type f -perm -u+x | head -1)
  [ -n "$f" ] || { echo "missing binary $b" >&2; exit 1; }
  # Each binary links the engine statically: one older than libxquant_core.a runs stale engine code
  # (the CLI's CMake target is xquant_cli; the target `xquant` is the shared library).
  if [ "$f" -ot "$build/lib/libxquant_core.a" ]; then
    target=$b && [ "$b" = xquant ] && target=xquant_cli
    echo "stale binary $f (older than libxquant_core.a): rebuild its target ($target) first" >&2; exit 1
  fi
  rel=${f#"$build/"}
  mkdir -p "$stage/build/$(dirname "$rel")"
  cp "$f" "$stage/build/$rel"
done
# Optional: FlashInfer's decode attention against ours (bench/cuda/flashinfer_decode.cu), where built.
[ -x "$build/bin/flashinfer_decode" ] && cp "$build/bin/flashinfer_decode" "$stage/build/bin/"
# Plugins too: the registry reads the entry symbol from the dynamic symbol
# table (runtime/plugins/elf_symbols.cpp), which strip keeps.
find "$stage/build" -type f \( -perm -u+x -o -name '*.so*' \) -exec strip --strip-unneeded {} + 2>/dev/null || true
# Libraries outside glibc/libstdc++ that the binaries and plugins load.
find "$stage/build" -type f \( -name '*.so*' -o -perm -u+x \) -print0 | xargs -0 ldd 2>/dev/null |
  awk '/=> \//{print $3}' | sort -u |
  grep -Ev '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libstdc\+\+|libgcc_s)\.so' |
  grep -v "$stage" | grep -v "/libxquant" | while read -r lib; do cp -L "$lib" "$stage/deps/"; done
cp -r /work/shared/models/stories260K /work/shared/models/stories260K-hf "$stage/shared/models/"
cp /work/shared/data/tinystories/tinystories_val.subset.txt "$stage/shared/data/tinystories/"
# Llama 3's vocabulary (llama.cpp's vocab-only GGUF, 7.8 MB) for the random
# Llama-3.1-8B-shaped models of bench/engine/gpu_load_time.sh, when cached here.
llama_vocab=${XDG_CACHE_HOME:-$HOME/.cache}/xquant/llama-vocabs/ggml-vocab-llama-bpe.gguf
if [ -s "$llama_vocab" ]; then mkdir -p "$stage/shared/models/llama-vocabs" && cp "$llama_vocab" "$stage/shared/models/llama-vocabs/"; fi
# Extra checkpoints made here (e.g. `xquant quantize ... --bits 4 --group-size 32`), by folder.
for extra in "${@:2}"; do cp -r "$extra" "$stage/shared/models/"; done
# GPUENG_BASELINE_DIR: a baseline cuda plugin (libxquant-cuda.so) and its test_cuda_provider,
# built from an earlier commit, for same-call A/B timings (gpu-engine-check.sh's GPUENG_AB=1).
if [ -n "${GPUENG_BASELINE_DIR:-}" ]; then
  for f in libxquant-cuda.so test_cuda_provider; do
    [ -f "$GPUENG_BASELINE_DIR/$f" ] || { echo "GPUENG_BASELINE_DIR=$GPUENG_BASELINE_DIR has no $f" >&2; exit 1; }
  done
  mkdir -p "$stage/baseline" && cp "$GPUENG_BASELINE_DIR"/* "$stage/baseline/"
  strip --strip-unneeded "$stage/baseline"/* 2>/dev/null || true
fi
echo "$root" > "$stage/build-root"
mkdir -p "$dest"
# With a baseline, xz -9: its 64 MiB window sees that the two cuda plugins are mostly the same
# bytes (a session-fourteen bundle: 61.6 MB at -6, 40.4 MB at -9; the run tool carries 64 MiB).
level=6 && [ -n "${GPUENG_BASELINE_DIR:-}" ] && level=9
tar -C "$stage" -cf - . | xz -T2 -$level > "$dest/bundle.tar.xz"
ls -la "$dest/bundle.tar.xz"
echo "build path: $root"
