#!/usr/bin/env bash
# Issue 7's table: every network of the restore, f32 and bf16 plans, against onnxruntime f32 on the
# same inputs and thread count, in one session.
#
#   Tools/bench/speed-table.sh DIR [NETWORK...]      (default: denoise vae-encoder vae-decoder swinir clip-text)
#
# DIR holds the synthetic checkpoints (sd21.ckpt, controlnet.pth, swinir.safetensors: `diffbir synth`)
# and Tools/bench/export_full_onnx.py's exports and inputs. For each network: compile the f32 and the
# bf16 plan (release build), then `diffbir bench --peer onnxruntime` on the f32 plan and `diffbir bench`
# on the bf16 one (1 warm-up, 5 timed runs, 2 threads; separate processes). Prints one Markdown row per
# network and writes the JSON to DIR/speed-table.jsonl. OPENBLAS_CORETYPE is left as the environment sets it.
set -euo pipefail
dir=${1:?usage: speed-table.sh DIR [NETWORK...]}
shift
networks=("$@")
[ ${#networks[@]} -eq 0 ] && networks=(denoise vae-encoder vae-decoder swinir clip-text)
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/.build/release/diffbir
threads=${THREADS:-2}
out=$dir/speed-table.jsonl
: > "$out"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, $threads threads, $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" >&2
echo "| network | onnxruntime f32 | ours f32 | ratio | ours bf16 | ratio | bf16 error (max, L2) vs PyTorch f32 |"
echo "|---|---|---|---|---|---|---|"
for n in "${networks[@]}"; do
  case $n in
    denoise) weights=("$dir/sd21.ckpt" "$dir/controlnet.pth") ;;
    vae-encoder|vae-decoder|clip-text) weights=("$dir/sd21.ckpt") ;;
    swinir) weights=("$dir/swinir.safetensors") ;;
    *) echo "unknown network $n" >&2; exit 2 ;;
  esac
  "$bin" compile --quiet --overwrite --model "$n" --weights "${weights[@]}" --size 512x512 --precision f32 -o "$dir/$n.plan" > /dev/null
  "$bin" compile --quiet --overwrite --model "$n" --weights "${weights[@]}" --size 512x512 --precision bf16 -o "$dir/$n-bf16.plan" > /dev/null
  f32=$("$bin" bench --plan "$dir/$n.plan" --inputs "$dir/bench-$n.io.safetensors" --runs 5 --warmup 1 --threads "$threads" --peer onnxruntime --peer-dir "$dir" --json)
  bf16=$("$bin" bench --plan "$dir/$n-bf16.plan" --inputs "$dir/bench-$n.io.safetensors" --runs 5 --warmup 1 --threads "$threads" --json)
  echo "{\"network\":\"$n\",\"f32\":$f32,\"bf16\":$bf16}" >> "$out"
  python3 - "$n" "$f32" "$bf16" <<'PY'
import json, sys
n, f, b = sys.argv[1], json.loads(sys.argv[2])["entries"][0], json.loads(sys.argv[3])["entries"][0]
ort = f["peers"]["onnxruntime"]["median_s"]
err = lambda e, k: next(iter(e[k].values()), float("nan"))
print(f"| {n} | {ort:.3f} s | {f['median_s']:.3f} s | {f['median_s'] / ort:.2f}× | {b['median_s']:.3f} s | {b['median_s'] / ort:.2f}× "
      f"| {err(b, 'relative_error'):.1e}, {err(b, 'relative_l2_error'):.1e} |")
PY
done
