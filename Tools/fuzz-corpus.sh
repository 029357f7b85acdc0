#!/usr/bin/env bash
# Makes the fuzz targets' seed corpora (Tests/Fuzz/corpus/TARGET/) from the test fixtures: small
# valid (and some refused) files of each format, so that fuzzing starts from inputs that reach deep
# into each reader. The result is committed; rerun after adding fixtures.
#   Tools/fuzz-corpus.sh [PYTHON]     (needs the debug build, swift build; PYTHON with Pillow,
#                                      default ~/venv/bin/python, for the JPEG and WebP seeds)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/debug/diffbir
c=Tests/Fuzz/corpus
rm -rf "$c"
py=${1:-$HOME/venv/bin/python}
mkdir -p "$c"/{safetensors,torch,onnx,png,jpeg,webp,ncnn,plan,program}
f=Tests/Fixtures
cp $f/checkpoints/{python_written,swift_written,swift_written_f16}.safetensors "$c/safetensors/"
cp $f/checkpoints/{dtypes,small,views,rebuild_v3,uint16,evil_eval,legacy,short_record}.pt $f/checkpoints/{lightning,fp16_dataparallel}.ckpt "$c/torch/"
for t in test_conv_with_strides_padding test_resize_upsample_scales_nearest test_range_float_type_positive_delta_expanded \
         test_constantofshape_int_zeros test_if test_loop11 test_reshape_reordered_all_dims test_matmul_3d test_gather_0; do
  [ -f $f/onnx-node/$t/model.onnx ] && cp $f/onnx-node/$t/model.onnx "$c/onnx/$t.onnx"
done
cp $f/png/*.png "$c/png/"
# JPEG and WebP: 24×16 crops of the bundled photo in the variants the decoders branch on.
"$py" - "$f/photos/astronaut-lq.png" "$c" <<'PY'
import sys
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
im = Image.open(src).convert("RGB").crop((40, 40, 64, 56))
im.save(f"{out}/jpeg/baseline.jpg", quality=90)
im.save(f"{out}/jpeg/progressive.jpg", quality=75, progressive=True)
im.convert("L").save(f"{out}/jpeg/gray.jpg", quality=90)
im.save(f"{out}/jpeg/subsampled-444.jpg", quality=95, subsampling=0)
im.save(f"{out}/webp/lossy.webp", quality=80)
im.save(f"{out}/webp/lossless.webp", lossless=True)
rgba = im.convert("RGBA"); rgba.putalpha(128)
rgba.save(f"{out}/webp/alpha.webp", quality=80)
PY
# ncnn: the .param text, a NUL byte, the .bin.
for m in activation conv deconv elementwise int8 resize; do
  { cat $f/ncnn/$m.param; printf '\0'; cat $f/ncnn/$m.bin; } > "$c/ncnn/$m"
done
# A plan: the ncnn convolution fixture compiled.
"$bin" compile --ncnn $f/ncnn/conv.param -o "$c/plan/conv.plan" --quiet --overwrite > /dev/null
# The program target: that plan's program JSON, and the resize and deconvolution fixtures'.
for m in conv resize deconv; do
  "$bin" compile --ncnn $f/ncnn/$m.param -o /tmp/fuzz-seed-$$.plan --quiet --overwrite > /dev/null
  python3 - /tmp/fuzz-seed-$$.plan "$c/program/$m.json" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
table, count = struct.unpack_from("<QI", b, 24)
for i in range(count):
    kind, _, offset, size = struct.unpack_from("<IIQQ", b, table + 32 * i)
    if kind == 2:
        open(sys.argv[2], "wb").write(b[offset:offset + size])
PY
  rm -f /tmp/fuzz-seed-$$.plan
done
du -sh "$c"/*
