#!/usr/bin/env python3
"""The PyTorch side of `diffbir bench --peer torch`: the same measurements as `diffbir bench`.

    ~/venv/bin/python Tools/bench/torch_bench.py DIR NETWORK IO.safetensors [--threads 2] [--runs 5] [--warmup 1] [--bf16] [--json]

Builds NETWORK (denoise, vae-decoder, vae-encoder, clip-text, swinir) as Tools/bench/export_full_onnx.py
does, from DIR's synthetic checkpoints, feeds the tensors of IO.safetensors, and times the forward pass
(torch.inference_mode, torch.set_num_threads(--threads); --bf16: torch.autocast("cpu", bfloat16), the
CPU counterpart of DiffBIR's fp16 autocast). Prints times, median, min, max, peak RSS (ru_maxrss), the
parameter bytes and the error against the `ref.NAME` tensors (max |a-b| / max |ref|, and relative L2).
"""
import argparse, json, pathlib, resource, statistics, sys, time
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import export_full_onnx as e  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("network")
    p.add_argument("io")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    model, inputs, out_name = e.build(a.dir, a.network, torch.Generator().manual_seed(7))
    io = load_file(a.io)
    feed = [io[k] for k in inputs]
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    times, out = [], None
    for i in range(a.warmup + a.runs):
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            out = model(*feed)
        dt = time.perf_counter() - start
        if i >= a.warmup:
            times.append(dt)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    errors, l2 = {}, {}
    ref = io.get("ref." + out_name)
    if ref is not None:
        o = out.float()
        errors[out_name] = float((o - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
        l2[out_name] = float((o - ref).norm() / ref.norm().clamp_min(1e-30))
    result = {"network": a.network, "threads": a.threads, "torch": torch.__version__, "precision": "bf16" if a.bf16 else "f32",
              "times_s": times, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
              "peak_rss_bytes": peak, "weight_bytes": weights, "peak_rss_minus_weights_bytes": peak - weights,
              "relative_error": errors, "relative_l2_error": l2}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{a.network}: torch {torch.__version__} {result['precision']}, {a.threads} threads; times "
              + " ".join(f"{t:.3f}" for t in times) + f" s; median {result['median_s']:.3f} s; errors {errors}")


if __name__ == "__main__":
    main()
