#!/usr/bin/env python3
"""Fake-quantised activations on the reference denoise step (Tools/reference/diffbir_nets.py through
Tools/bench/export_full_onnx.py's `build`), weights left in f32: the end-to-end relative L2 error of
the output on the benchmark's held-out inputs for several int8 activation schemes. Nothing of ours
in the loop; it chose the scheme of `--activations int8` (blocks of 32 along k).

    ~/venv/bin/python Tools/bench/activation_quant_sim.py DIR

DIR holds sd21.ckpt, controlnet.pth and bench-denoise.io.safetensors (export_full_onnx.py). Every
Conv2d/Linear except the model's exclusions gets its input quantised by a forward pre-hook. About
10 GB of memory, ~80 s on 2 cores.
"""
import pathlib, sys
import torch
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from export_full_onnx import build  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

torch.set_grad_enabled(False)
EXCLUDED = ("time_embed", "zero_convs", "middle_block_out", "input_blocks.0.0", "unet.out.2")


def tensor_asymmetric(x):
    """One scale and zero point for the whole tensor (the convolutions' scheme before blocks)."""
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    s = (hi - lo) / 255
    z = round(-lo / s)
    return ((torch.round(x / s) + z).clamp(0, 255) - z) * s


def row_symmetric(x):
    """One scale per row (the linear layers' scheme before blocks)."""
    s = (x.abs().amax(-1, keepdim=True) / 127).clamp(min=1e-30)
    return torch.round(x / s).clamp(-127, 127) * s


def blocks(x, dim, b):
    """Symmetric, one scale per block of b values along dim (the whole dim when it is shorter)."""
    x = x.movedim(dim, -1)
    shape, c = x.shape, x.shape[-1]
    b = min(b, c)
    if c % b:
        return row_symmetric(x).movedim(-1, dim)
    y = x.reshape(*shape[:-1], c // b, b)
    s = (y.abs().amax(-1, keepdim=True) / 127).clamp(min=1e-30)
    return (torch.round(y / s).clamp(-127, 127) * s).reshape(shape).movedim(-1, dim)


def main():
    d = pathlib.Path(sys.argv[1])
    m, _, _ = build(d, "denoise", torch.Generator().manual_seed(7))
    io = load_file(str(d / "bench-denoise.io.safetensors"))
    held = [io[k] for k in ["x", "t", "hint", "context", "control_scale"]]
    layers = [(n, mod) for n, mod in m.named_modules()
              if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and not any(e in n for e in EXCLUDED)]
    exact = m(*held)
    schemes = {
        "convolutions per tensor (asymmetric), linears per row": (tensor_asymmetric, row_symmetric),
        "blocks of 32 (convolutions per pixel and 32 channels, linears per row and 32 features)":
            (lambda x: blocks(x, 1, 32), lambda x: blocks(x, -1, 32)),
        "blocks of 64": (lambda x: blocks(x, 1, 64), lambda x: blocks(x, -1, 64)),
        "convolutions in blocks of 32, linears per row": (lambda x: blocks(x, 1, 32), row_symmetric),
        "convolutions per pixel (all channels), linears per row": (lambda x: blocks(x, 1, 1 << 20), row_symmetric),
        "convolutions per tensor, linears in blocks of 32": (tensor_asymmetric, lambda x: blocks(x, -1, 32)),
    }
    for name, (conv, linear) in schemes.items():
        hooks = [mod.register_forward_pre_hook((lambda f: lambda mod, x: (f(x[0]),) + tuple(x[1:]))(
                     conv if isinstance(mod, torch.nn.Conv2d) else linear)) for _, mod in layers]
        error = ((m(*held) - exact).norm() / exact.norm()).item() * 100
        print(f"{name}: {error:.3f} %", flush=True)
        for h in hooks:
            h.remove()


if __name__ == "__main__":
    main()
