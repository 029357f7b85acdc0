#!/usr/bin/env python3
"""Full-size ONNX exports and inputs for the plan-vs-onnxruntime benchmark (nothing here is committed).

    .build/release/diffbir synth --layout sd21 --format ckpt -o DIR/sd21.ckpt
    .build/release/diffbir synth --layout controlnet --format ckpt -o DIR/controlnet.pth
    .build/release/diffbir synth --layout swinir -o DIR/swinir.safetensors
    ~/venv/bin/python Tools/bench/export_full_onnx.py DIR [denoise] [vae-decoder] [vae-encoder] [clip-text] [swinir]

For each network: the PyTorch module of Tools/reference/diffbir_nets.py with the synthetic weights
(loaded strictly), seeded inputs at DiffBIR's sizes (denoise: 64×64 latent, 77×1024 context;
VAE decoder: 64×64 latent → 512×512; VAE encoder: 512×512 → 64×64; CLIP text: 77 tokens; SwinIR: 512×512), PyTorch's output as the reference, and the
network exported with torch.onnx.export (TorchScript exporter, opset 17; denoise's 4.9 GB of weights
as one external-data file beside it). Writes DIR/bench-NAME.onnx (+ .onnx.data) and
DIR/bench-NAME.io.safetensors (inputs, and the reference outputs under "ref.NAME").
"""
import gc, os, pathlib, sys, time
import torch
import onnx
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "Tools" / "reference"))
import diffbir_nets as d  # noqa: E402

torch.set_grad_enabled(False)


def load(path):
    if path.suffix == ".safetensors":
        return load_file(str(path))
    sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    return sd.get("state_dict", sd)


def part(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def strict(module, sd, ignore=()):
    missing, unexpected = module.load_state_dict(sd, strict=False)
    unexpected = [k for k in unexpected if not any(k.startswith(i) or k.endswith(i) for i in ignore)]
    assert not missing and not unexpected, (missing[:5], unexpected[:5])
    return module.eval()


class Wrapper(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return (self.module(*args),)


def build(directory, name, g):
    """The PyTorch module of `name` with DIR's synthetic weights, its seeded inputs (DiffBIR's sizes)
    and its output name. Shared with Tools/bench/torch_bench.py (the PyTorch peer of `diffbir bench`)."""
    directory = pathlib.Path(directory)
    if name == "denoise":
        sd = load(directory / "sd21.ckpt")
        m = d.Denoise().eval()
        strict(m.unet, part(sd, "model.diffusion_model."))
        strict(m.controlnet, load(directory / "controlnet.pth"))
        inputs = {"x": torch.randn(1, 4, 64, 64, generator=g), "t": torch.tensor([500.0]),
                  "hint": torch.randn(1, 4, 64, 64, generator=g), "context": torch.randn(1, 77, 1024, generator=g),
                  "control_scale": torch.tensor([1.0])}
        return m, inputs, "out"
    if name == "vae-decoder":
        sd = load(directory / "sd21.ckpt")
        m = strict(d.VAEDecoder(), {k: v for k, v in part(sd, "first_stage_model.").items() if k.startswith(("decoder.", "post_quant_conv."))})
        return m, {"latent": torch.randn(1, 4, 64, 64, generator=g)}, "image"
    if name == "vae-encoder":
        sd = load(directory / "sd21.ckpt")
        m = strict(d.VAEEncoder(), {k: v for k, v in part(sd, "first_stage_model.").items() if k.startswith(("encoder.", "quant_conv."))})
        return m, {"image": torch.rand(1, 3, 512, 512, generator=g) * 2 - 1}, "latent"
    if name == "clip-text":
        sd = load(directory / "sd21.ckpt")
        m = strict(d.ClipText(), part(sd, "cond_stage_model."), ignore=("model.text_projection", "model.logit_scale"))
        tokens = torch.cat([torch.tensor([[49406]]), torch.randint(0, 49405, (1, 30), generator=g), torch.tensor([[49407]]),
                            torch.zeros(1, 45, dtype=torch.int64)], 1)
        return m, {"tokens": tokens}, "context"
    if name == "swinir":
        m = strict(d.SwinIR(), load(directory / "swinir.safetensors"), ignore=("attn_mask", "relative_position_index"))
        return m, {"image": torch.rand(1, 3, 512, 512, generator=g)}, "image"
    raise SystemExit(f"unknown network {name}")


def main(directory, names):
    directory = pathlib.Path(directory)
    g = torch.Generator().manual_seed(7)
    for name in names:
        start = time.time()
        m, inputs, out_name = build(directory, name, g)
        sd = None
        out = m(*inputs.values())
        print(f"{name}: PyTorch forward {time.time() - start:.1f} s (load included)", flush=True)
        save_file({**{k: v.contiguous() for k, v in inputs.items()}, "ref." + out_name: out.contiguous()},
                  str(directory / f"bench-{name}.io.safetensors"))
        path = directory / f"bench-{name}.onnx"
        tmp = directory / f"bench-{name}-export"
        tmp.mkdir(exist_ok=True)
        torch.onnx.export(Wrapper(m), tuple(inputs.values()), str(tmp / "model.onnx"), input_names=list(inputs),
                          output_names=[out_name], opset_version=17, dynamo=False)
        del m, sd
        gc.collect()
        model = onnx.load(str(tmp / "model.onnx"), load_external_data=True)
        data = path.name + ".data"
        if (directory / data).exists():
            os.remove(directory / data)
        big = sum(t.ByteSize() for t in model.graph.initializer) > 1_500_000_000
        onnx.save_model(model, str(path), save_as_external_data=big, all_tensors_to_one_file=True, location=data, size_threshold=1024)
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
        print(f"{name}: exported to {path} ({'external data' if big else 'one file'}) in {time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
