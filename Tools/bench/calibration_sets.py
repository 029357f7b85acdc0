#!/usr/bin/env python3
"""Calibration input sets for `diffbir compile --model denoise ... --calibrate-inputs DIR`
(nothing here is committed but this script).

    ~/venv/bin/python Tools/bench/calibration_sets.py DIR [--count 16] [--seed 123] [--size 64]

Writes DIR/setNN.safetensors, each one input set of the denoise entry at DiffBIR's sizes, drawn
like the diffusion's own inputs: x (the noisy latent) and hint (the condition latent) standard
normal [1, 4, S, S], context standard normal [1, 77, 1024], t an integer timestep uniform in
[0, 1000), control_scale 1. The benchmark's inputs (bench-denoise.io.safetensors, from
export_full_onnx.py) are drawn the same way from another seed (7), so they stay held out.
"""
import argparse, os
import torch
from safetensors.torch import save_file


def main():
    p = argparse.ArgumentParser()
    p.add_argument("directory")
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--size", type=int, default=64)
    a = p.parse_args()
    os.makedirs(a.directory, exist_ok=True)
    g = torch.Generator().manual_seed(a.seed)
    s = a.size
    for i in range(a.count):
        d = {"x": torch.randn(1, 4, s, s, generator=g), "t": (torch.rand(1, generator=g) * 1000).floor(),
             "hint": torch.randn(1, 4, s, s, generator=g), "context": torch.randn(1, 77, 1024, generator=g),
             "control_scale": torch.tensor([1.0])}
        save_file(d, os.path.join(a.directory, f"set{i:02d}.safetensors"))
    print(f"wrote {a.count} input sets to {a.directory}")


if __name__ == "__main__":
    main()
