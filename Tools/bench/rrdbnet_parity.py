#!/usr/bin/env python3
"""PyTorch's RRDBNet (Tools/reference/diffbir_nets.py, BSRNet's module names) loaded with the
weights `diffbir convert X.param --layout bsrnet` wrote, run on the inputs of a bench io file: its
output against ncnn's (`ref.output` of the io file) and against ours (a `diffbir run` output), as
max |a - b| / max |reference|.

    python Tools/bench/rrdbnet_parity.py BSRNET.safetensors IO.safetensors OURS.safetensors
"""
import os
import sys
import numpy as np
import torch
from safetensors.numpy import load_file
from safetensors.torch import load_file as load_torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from diffbir_nets import RRDBNet  # noqa: E402


def main(weights, io_path, ours_path):
    state = load_torch(weights)
    nb = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("RRDB_trunk."))
    net = RRDBNet(nf=state["conv_first.weight"].shape[0], nb=nb, gc=state["RRDB_trunk.0.RDB1.conv1.weight"].shape[0])
    net.load_state_dict(state, strict=True)
    net.eval()
    io = load_file(io_path)
    x = torch.from_numpy(next(v for k, v in io.items() if not k.startswith("ref.")))
    torch.set_num_threads(2)
    with torch.no_grad():
        y = net(x).numpy()
    ours = next(iter(load_file(ours_path).values()))
    ncnn = io["ref.output"]
    def rel(a, b):
        return float(np.abs(a - b).max() / np.abs(b).max())
    print(f"PyTorch {torch.__version__} RRDBNet (nb {nb}) from {weights}")
    print(f"  ncnn vs PyTorch: {rel(ncnn, y):.2e}")
    print(f"  ours vs PyTorch: {rel(ours, y):.2e}")
    print(f"  ours vs ncnn:    {rel(ours, ncnn):.2e}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
