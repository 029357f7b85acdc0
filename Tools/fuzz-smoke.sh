#!/usr/bin/env bash
# CI's short fuzzing pass: every fuzz target for SECONDS (default 10) from its committed seeds, with
# AddressSanitizer and the same limits as Tools/fuzz.sh; fails on the first crash, timeout or
# out-of-memory. (The long runs are Tools/fuzz.sh TARGET SECONDS -runs=10000000.)
#   Tools/fuzz-smoke.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
mkdir -p out
for t in safetensors torch onnx png jpeg webp ncnn plan program; do
  Tools/fuzz.sh "$t" "$seconds" 2> "out/fuzz-smoke-$t.log" || { tail -40 "out/fuzz-smoke-$t.log"; echo "fuzz target $t failed" >&2; exit 1; }
  grep -E "^Done" "out/fuzz-smoke-$t.log" | sed "s/^/$t: /"
done
