#!/usr/bin/env bash
# Shows that two builds of diffbir compute the same bits: each compiles the fixture plans itself
# (plan files may differ between versions), runs them, restores a photo with one of them, and the
# outputs are compared byte for byte.
#   Tools/compare-builds.sh BEFORE_BINARY AFTER_BINARY
# e.g. after a refactor: git stash; swift build -c release; cp .build/release/diffbir /tmp/before;
# git stash pop; swift build -c release; Tools/compare-builds.sh /tmp/before .build/release/diffbir
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { sed -n '2,7p' "$0" >&2; exit 2; }
f=Tests/Fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run_all() {  # BINARY DIR
  local bin=$1 out=$2
  mkdir -p "$out"
  # (f32 named: `compile` defaults to --precision auto, which depends on the processor.)
  for precision in "--precision f32" "--precision bf16" "--weights-dtype int8 --activations int8" "--weights-dtype int8-block32" "--weights-dtype int8 --gptq --calibrate 2"; do
    local tag=${precision// /}; [ "$precision" = "--precision f32" ] && tag=f32
    "$bin" compile --model bsrnet --weights $f/networks/bsrnet.weights.safetensors --config $f/networks/bsrnet.config.json \
      --size 16x16 $precision -o "$out/bsrnet$tag.plan" -q > /dev/null
    "$bin" run --plan "$out/bsrnet$tag.plan" --inputs $f/networks/bsrnet.io.safetensors -o "$out/bsrnet$tag.out.safetensors" > /dev/null
  done
  "$bin" restore --plan "$out/bsrnetf32.plan" $f/pipeline/lq64.png -o "$out/restored.png" -q > /dev/null
  # The whole DiffBIR v2.1 flow on the small checkpoints, two samplers.
  "$bin" compile --model diffbir-v2.1 --config $f/pipeline/config.json \
    --weights $f/networks/unet.weights.safetensors $f/networks/controlnet.weights.safetensors \
              $f/pipeline/swinir.weights.safetensors $f/pipeline/vae8.weights.safetensors \
    --prompt-embeddings $f/pipeline/text.safetensors --precision f32 -q -o "$out/diffbir.plan" > /dev/null
  "$bin" restore --plan "$out/diffbir.plan" $f/pipeline/lq64.png --upscale 4 --steps 4 -o "$out/diffbir-edm.png" -q > /dev/null
  "$bin" restore --plan "$out/diffbir.plan" $f/pipeline/lq64.png --upscale 2 --steps 4 --sampler spaced --guidance-scale 0.5 \
    -o "$out/diffbir-spaced.png" -q > /dev/null
  # Prompts baked at compile time (the text encoder of a synthetic SD 2.1 checkpoint run once).
  local sd='{"unet": {"model_channels": 32, "num_res_blocks": 1, "attention_resolutions": [1], "channel_mult": [1, 1], "num_head_channels": 16, "context_dim": 16}, "vae": {"ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 0}'
  echo "$sd, \"clip-text\": {\"width\": 16, \"heads\": 2, \"layers\": 3}}" > "$out/sd.json"
  echo "$sd, \"swinir\": {\"embed_dim\": 16, \"depths\": [2, 2], \"num_heads\": [2, 2], \"img_size\": 16}, \"clip\": {\"width\": 16, \"heads\": 2, \"layers\": 3}}" > "$out/cfg.json"
  "$bin" synth --layout sd21-zsnr --config "$out/sd.json" -o "$out/sd.safetensors" -q > /dev/null
  "$bin" compile --model diffbir-v2.1 --config "$out/cfg.json" --weights "$out/sd.safetensors" \
    $f/networks/controlnet.weights.safetensors $f/pipeline/swinir.weights.safetensors --precision f32 -q -o "$out/baked.plan" > /dev/null
  "$bin" restore --plan "$out/baked.plan" $f/pipeline/lq64.png --upscale 2 --steps 3 -o "$out/baked.png" -q > /dev/null
  for p in $f/ncnn/*.param; do
    local name; name=$(basename "$p" .param)
    [ -f $f/ncnn/$name.io.safetensors ] || continue
    "$bin" compile --ncnn "$p" --precision f32 -o "$out/$name.plan" -q > /dev/null
    "$bin" run --plan "$out/$name.plan" --inputs $f/ncnn/$name.io.safetensors -o "$out/$name.out.safetensors" > /dev/null
  done
  "$bin" compile --onnx $f/networks/swinir.onnx --precision f32 -o "$out/swinir.plan" -q > /dev/null
  "$bin" run --plan "$out/swinir.plan" --inputs $f/networks/swinir.io.safetensors -o "$out/swinir.out.safetensors" > /dev/null
}
run_all "$1" "$work/before"
run_all "$2" "$work/after"
same=0 differ=0
for a in "$work"/before/*.safetensors "$work"/before/*.png; do
  b="$work/after/$(basename "$a")"
  if cmp -s "$a" "$b"; then same=$((same + 1)); else echo "differs: $(basename "$a")"; differ=$((differ + 1)); fi
done
echo "$same outputs identical, $differ differ"
[ "$differ" -eq 0 ]
