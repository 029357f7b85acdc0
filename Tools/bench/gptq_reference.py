#!/usr/bin/env python3
"""A PyTorch cross-check of `diffbir compile --model denoise --weights-dtype int8 --gptq`: the same
procedure on the reference modules (Tools/reference/diffbir_nets.py), nothing of ours in the loop.

    ~/venv/bin/python Tools/bench/gptq_reference.py DIR [--sets 8] [--min-samples 0.25] [--damping 0.1]

DIR holds sd21.ckpt, controlnet.pth and bench-denoise.io.safetensors (Tools/bench/export_full_onnx.py).
Every Conv2d/Linear of the denoise step except the model's exclusions (time embeddings, zero
convolutions, middle_block_out, the first and last convolutions) is quantised to int8 per output
channel (scale max|w|/127): plainly, or with GPTQ (no act-order) where the calibration sets give the layer at least
min-samples × k input vectors. The statistics H = Σ x xᵀ come from the f32 model on `--sets`
seeded sets drawn as Tools/bench/calibration_sets.py draws them (seed 123); the error is measured on
the benchmark's inputs (seed 7), held out. Prints the relative L2 error of the output for both.
Needs about 20 GB of memory at the defaults.
"""
import argparse, pathlib, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "Tools" / "bench"))
from export_full_onnx import build  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

torch.set_grad_enabled(False)
EXCLUDED = ("time_embed", "zero_convs", "middle_block_out", "input_blocks.0.0", "unet.out.2")


def rounded(w, scale):
    return torch.round(w / scale[:, None]).clamp(-127, 127) * scale[:, None]


def gptq(w, h, scale, damping, block=128):
    w = w.clone()
    k = w.shape[1]
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    h += damping * torch.mean(torch.diag(h)) * torch.eye(k)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h.double())), upper=True).float()
    q = torch.zeros_like(w)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1, e1, u1 = w[:, i1:i2].clone(), torch.zeros(w.shape[0], i2 - i1), u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, i]
            qc = torch.round(col / scale).clamp(-127, 127) * scale
            q[:, i1 + i] = qc
            e = (col - qc) / u1[i, i]
            w1[:, i:] -= e[:, None] * u1[i, i:][None]
            e1[:, i] = e
        w[:, i2:] -= e1 @ u[i1:i2, i2:]
    return q


def vectors(mod, x):
    if isinstance(mod, torch.nn.Conv2d):
        return F.unfold(x, mod.kernel_size, padding=mod.padding, stride=mod.stride)[0]
    return x.reshape(-1, x.shape[-1]).T


def main():
    p = argparse.ArgumentParser()
    p.add_argument("directory")
    p.add_argument("--sets", type=int, default=8)
    p.add_argument("--min-samples", type=float, default=0.25)
    p.add_argument("--damping", type=float, default=0.1)
    a = p.parse_args()
    m, _, _ = build(a.directory, "denoise", torch.Generator().manual_seed(7))
    io = load_file(str(pathlib.Path(a.directory) / "bench-denoise.io.safetensors"))
    held_out = [io[k] for k in ["x", "t", "hint", "context", "control_scale"]]
    layers = [(n, mod) for n, mod in m.named_modules()
              if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and not any(e in n for e in EXCLUDED)]
    exact = m(*held_out)
    seen = {}
    hooks = [mod.register_forward_pre_hook((lambda n: lambda mod, x: seen.__setitem__(n, vectors(mod, x[0]).shape[1]))(n)) for n, mod in layers]
    m(*held_out)
    for h in hooks:
        h.remove()
    chosen = [(n, mod) for n, mod in layers if seen[n] * a.sets >= a.min_samples * mod.weight[0].numel()]
    stats = {n: torch.zeros(mod.weight[0].numel(), mod.weight[0].numel()) for n, mod in chosen}

    def accumulate(n):
        def f(mod, x):
            v = vectors(mod, x[0])
            stats[n].addmm_(v, v.T)
        return f
    hooks = [mod.register_forward_pre_hook(accumulate(n)) for n, mod in chosen]
    g = torch.Generator().manual_seed(123)
    start = time.time()
    for _ in range(a.sets):
        m(torch.randn(1, 4, 64, 64, generator=g), (torch.rand(1, generator=g) * 1000).floor(), torch.randn(1, 4, 64, 64, generator=g),
          torch.randn(1, 77, 1024, generator=g), torch.tensor([1.0]))
    for h in hooks:
        h.remove()
    print(f"{len(chosen)} of {len(layers)} layers compensated; statistics in {time.time() - start:.0f} s", flush=True)
    originals = {n: mod.weight.clone() for n, mod in layers}
    for n, mod in layers:
        w = originals[n].reshape(originals[n].shape[0], -1)
        mod.weight.copy_(rounded(w, w.abs().amax(1) / 127).reshape(mod.weight.shape))
    plain = ((m(*held_out) - exact).norm() / exact.norm()).item()
    for n, mod in chosen:
        w = originals[n].reshape(originals[n].shape[0], -1)
        mod.weight.copy_(gptq(w, stats.pop(n), w.abs().amax(1) / 127, a.damping).reshape(mod.weight.shape))
    compensated = ((m(*held_out) - exact).norm() / exact.norm()).item()
    print(f"held-out relative L2 error: plain rounding {plain * 100:.3f} %, GPTQ {compensated * 100:.3f} %")


if __name__ == "__main__":
    main()
