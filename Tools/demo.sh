#!/usr/bin/env bash
# The main job on the bundled default, from a fresh clone: system packages, release build, then
# a bundled PyTorch Lightning checkpoint converted to f16 safetensors and inspected.
#   Tools/demo.sh            (outputs go to out/, which git ignores)
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/setup.sh
swift build -c release --product diffbir
bin=.build/release/diffbir
mkdir -p out
"$bin" inspect Tests/Fixtures/checkpoints/lightning.ckpt
"$bin" convert Tests/Fixtures/checkpoints/lightning.ckpt --dtype f16 -o out/lightning-f16.safetensors --overwrite
"$bin" inspect out/lightning-f16.safetensors
