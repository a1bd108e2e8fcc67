#!/usr/bin/env bash
# Checks what an embedder or plugin author gets from an installed xquant:
#  1. `cmake --install` into a fresh prefix;
#  2. the out-of-tree plugin sdk/examples/rtn_mse built with find_package(xquant)
#     against that prefix, listed by the installed CLI, and run by a pipeline;
#  3. the C example (links libxquant, includes only xquant.h) runs a pipeline;
#  4. a C++ embedder, tests/sdk_consumer, built with find_package(xquant)
#     against that prefix and linked to xquant::xquant alone, runs a pipeline
#     and reports a bad one; the installed libxquant exports only xq_*;
#  5. the Python package (ctypes) runs a pipeline and raises on a bad one.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
cmake --install build --prefix "$prefix" > /dev/null

cmake -S sdk/examples/rtn_mse -B "$work/rtn-mse" -DCMAKE_PREFIX_PATH="$prefix" > /dev/null
cmake --build "$work/rtn-mse" > /dev/null
# (grep reads files, not pipes: with pipefail an early-exiting grep -q
# would fail the producer with SIGPIPE.)
"$prefix/bin/xquant" --plugin-path "$work/rtn-mse/plugins" plugins > "$work/plugins.txt"
grep -q '^rtn-mse ' "$work/plugins.txt" || { echo "test-sdk: installed xquant does not list the out-of-tree plugin"; exit 1; }

model="$root/../shared/models/stories260K-hf"
cat > "$work/oot.yaml" <<YAML
model: {path: $model}
plugins: {paths: [$work/rtn-mse/plugins]}
quantize:
  - algorithm: rtn-mse
    weights: {bits: 4, group_size: 32}
    params: {grid: 10}
ignore: [lm_head]
output: {path: $work/out-rtn-mse}
YAML
"$prefix/bin/xquant" -q run --json "$work/oot.yaml" > "$work/oot.json" 2> "$work/oot.log"
"$prefix/bin/xquant" -q quantize --model "$model" --bits 4 --group-size 32 --out "$work/out-rtn" --json > "$work/rtn.json" 2> "$work/rtn.log"
python3 - "$work/oot.json" "$work/rtn.json" <<'PY'
import json, sys
mse = {l["module"]: l["rel_error"] for l in json.load(open(sys.argv[1]))["layers"]}
rtn = {l["module"]: l["rel_error"] for l in json.load(open(sys.argv[2]))["layers"]}
assert mse.keys() == rtn.keys() and mse, "both runs must quantize the same modules"
worse = [m for m in mse if mse[m] > rtn[m] + 1e-12]
assert not worse, f"rtn-mse error above rtn on {worse}"
print(f"test-sdk: out-of-tree rtn-mse ran on {len(mse)} modules; mean rel. error "
      f"{sum(mse.values())/len(mse):.5f} vs rtn {sum(rtn.values())/len(rtn):.5f}")
PY
"$prefix/bin/xquant" -q inspect "$work/out-rtn-mse" > "$work/inspect.txt"
grep -q 'weight_packed' "$work/inspect.txt" || { echo "test-sdk: rtn-mse output has no packed weights"; exit 1; }

"$prefix/bin/embed_pipeline" "$work/oot.yaml" > /dev/null
if "$prefix/bin/embed_pipeline" "$work/missing.yaml" 2> "$work/err.txt"; then
  echo "test-sdk: the C example accepted a missing pipeline"; exit 1
fi
grep -q "cannot read pipeline" "$work/err.txt" || { echo "test-sdk: C example error message:"; cat "$work/err.txt"; exit 1; }

cmake -S tests/sdk_consumer -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" > "$work/consumer-cmake.log" \
  || { echo "test-sdk: find_package(xquant) failed for a C++ embedder:"; cat "$work/consumer-cmake.log"; exit 1; }
cmake --build "$work/consumer" > "$work/consumer-build.log" \
  || { echo "test-sdk: the C++ embedder did not build against xquant::xquant:"; cat "$work/consumer-build.log"; exit 1; }
cat > "$work/consumer.yaml" <<YAML
model: {path: $model}
quantize:
  - algorithm: rtn
    weights: {bits: 4, group_size: 32}
ignore: [lm_head]
output: {path: $work/out-consumer}
YAML
"$work/consumer/sdk_consumer" "$work/consumer.yaml" > "$work/consumer.txt" 2> "$work/consumer.log" \
  || { echo "test-sdk: the C++ embedder failed:"; cat "$work/consumer.log"; exit 1; }
grep -q ', ok$' "$work/consumer.txt" || { echo "test-sdk: C++ embedder output:"; cat "$work/consumer.txt"; exit 1; }
"$prefix/bin/xquant" -q inspect "$work/out-consumer" > "$work/consumer-inspect.txt"
grep -q 'weight_packed' "$work/consumer-inspect.txt" || { echo "test-sdk: the C++ embedder wrote no packed weights"; exit 1; }
if "$work/consumer/sdk_consumer" "$work/missing.yaml" 2> "$work/consumer-err.txt"; then
  echo "test-sdk: the C++ embedder accepted a missing pipeline"; exit 1
fi
grep -q "cannot read pipeline" "$work/consumer-err.txt" || { echo "test-sdk: C++ embedder error message:"; cat "$work/consumer-err.txt"; exit 1; }
lib=$(find "$prefix" -name libxquant.so -print -quit)
nm -D --defined-only "$lib" > "$work/exports.txt"
if grep -v ' xq_' "$work/exports.txt" > "$work/stray.txt"; then
  echo "test-sdk: the installed libxquant exports more than the xq_* C API:"; head "$work/stray.txt"; exit 1
fi
echo "test-sdk: C++ embedder ran a pipeline through xquant::xquant; libxquant exports $(wc -l < "$work/exports.txt") xq_* symbols"

PYTHONPATH="$prefix/share/xquant/python" python3 "$root/tests/python/test_sdk_python.py" "$model" "$work"
echo "test-sdk: passed"
