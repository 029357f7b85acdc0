#!/usr/bin/env bash
# The plan executor against onnxruntime on the same networks, same inputs, same thread count.
#
#   Tools/bench/plan-vs-onnxruntime.sh DIR [NETWORK...]      (default: denoise vae-decoder swinir)
#
# DIR holds the synthetic checkpoints and the exports of Tools/bench/export_full_onnx.py (see there).
# For each network: compile the plan (release build), then `diffbir bench` and Tools/bench/ort_bench.py
# in separate processes, one after the other, each with 1 warm-up and 5 timed runs on 2 threads.
# Prints one JSON line per tool and network (times, median, peak RSS, weight bytes, error vs PyTorch)
# and writes them to DIR/bench-results.jsonl. OPENBLAS_CORETYPE is left as the environment sets it.
set -euo pipefail
dir=${1:?usage: plan-vs-onnxruntime.sh DIR [NETWORK...]}
shift
networks=("${@:-denoise vae-decoder swinir}")
[ $# -eq 0 ] && networks=(denoise vae-decoder swinir)
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/.build/release/diffbir
py=${PYTHON:-$HOME/venv/bin/python}
threads=${THREADS:-2}
out=$dir/bench-results.jsonl
: > "$out"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, $threads threads, $(nproc) cores" >&2
for n in "${networks[@]}"; do
  case $n in
    denoise) weights=("$dir/sd21.ckpt" "$dir/controlnet.pth") ;;
    vae-decoder) weights=("$dir/sd21.ckpt") ;;
    swinir) weights=("$dir/swinir.safetensors") ;;
    *) echo "unknown network $n" >&2; exit 2 ;;
  esac
  [ -f "$dir/$n.plan" ] || "$bin" compile --quiet --model "$n" --weights "${weights[@]}" --size 512x512 --precision f32 -o "$dir/$n.plan" >&2
  ours=$("$bin" bench --plan "$dir/$n.plan" --inputs "$dir/bench-$n.io.safetensors" --runs 5 --warmup 1 --threads "$threads" --json)
  echo "{\"network\":\"$n\",\"tool\":\"diffbir\",\"result\":$ours}" | tee -a "$out"
  theirs=$("$py" "$root/Tools/bench/ort_bench.py" "$dir/bench-$n.onnx" "$dir/bench-$n.io.safetensors" --runs 5 --warmup 1 --threads "$threads" --json)
  echo "{\"network\":\"$n\",\"tool\":\"onnxruntime\",\"result\":$theirs}" | tee -a "$out"
done
