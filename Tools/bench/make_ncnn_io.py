#!/usr/bin/env python3
"""Inputs and reference outputs for `diffbir bench` on an ncnn image model: the photo as the model's
input (RGB in [0, 1], [1, 3, H, W]) and ncnn's own f32 output for it as `ref.NAME`.

    python Tools/bench/make_ncnn_io.py MODEL.param PHOTO.png OUT.io.safetensors
"""
import sys
import numpy as np
import ncnn
from PIL import Image
from safetensors.numpy import save_file

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from ncnn_bench import blobs  # noqa: E402


def main(param, photo, out):
    x = np.ascontiguousarray(np.asarray(Image.open(photo).convert("RGB")).astype(np.float32).transpose(2, 0, 1) / 255)
    net = ncnn.Net()
    for k in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, k, False)
    assert net.load_param(param) == 0 and net.load_model(param[:-6] + ".bin") == 0
    inputs, outputs = blobs(param)
    assert len(inputs) == 1, inputs
    ex = net.create_extractor()
    ex.input(inputs[0], ncnn.Mat(np.ascontiguousarray(x)))
    tensors = {inputs[0]: x[None]}
    for k in outputs:
        ret, m = ex.extract(k)
        assert ret == 0, k
        tensors["ref." + k] = np.array(m)[None].astype(np.float32)
    save_file(tensors, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
