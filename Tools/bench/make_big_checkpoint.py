#!/usr/bin/env python3
"""A synthetic ~5.2 GB fp32 checkpoint for the reader's speed and memory figures (never committed):
a PyTorch Lightning-style {"state_dict": ...} whose tensors have the shape mix of Stable Diffusion
2.1 (3x3 convolutions, linears, norms; 1.3 G parameters), seeded random values.

    ~/venv/bin/python Tools/bench/make_big_checkpoint.py /tmp/big.ckpt
"""
import sys, torch

def main(path):
    g = torch.Generator().manual_seed(0)
    sd, total, i = {}, 0, 0
    shapes = [[1280, 1280, 3, 3], [640, 640, 3, 3], [320, 320, 3, 3], [1280, 1280], [5120, 640], [1024, 4096],
              [1280], [640], [320], [1024]]
    while total < 1_300_000_000:
        for s in shapes:
            t = torch.empty(s).normal_(generator=g)
            sd[f"model.diffusion_model.block{i}.{'x'.join(map(str, s))}"] = t
            total += t.numel()
        i += 1
    torch.save({"epoch": 0, "global_step": 0, "state_dict": sd}, path)
    print(f"{path}: {len(sd)} tensors, {total:,} parameters, {total * 4 / 1e9:.2f} GB")

if __name__ == "__main__":
    main(sys.argv[1])
