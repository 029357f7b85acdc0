#!/usr/bin/env bash
# The main job on bundled data, from a fresh clone: system packages, release build, a DiffBIR v2.1
# plan compiled from the bundled small checkpoints (DiffBIR's layout at reduced widths, made by
# Tools/fixtures/make_pipeline_fixtures.py), and a bundled degraded photo restored with it.
#   Tools/demo.sh            (outputs go to out/, which git ignores)
# The real thing is the same two commands with the published checkpoints (README, "Restoring photos").
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/setup.sh
swift build -c release --product diffbir
bin=.build/release/diffbir
f=Tests/Fixtures
mkdir -p out
"$bin" compile --model diffbir-v2.1 --config $f/pipeline/config.json \
  --weights $f/networks/unet.weights.safetensors $f/networks/controlnet.weights.safetensors \
            $f/pipeline/swinir.weights.safetensors $f/pipeline/vae8.weights.safetensors \
  --prompt-embeddings $f/pipeline/text.safetensors --quiet -o out/diffbir-small.plan --overwrite
"$bin" restore --plan out/diffbir-small.plan $f/pipeline/lq64.png --upscale 4 --steps 10 -o out/restored.png --overwrite
"$bin" inspect out/diffbir-small.plan | head -3
