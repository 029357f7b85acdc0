#!/usr/bin/env python3
"""The ncnn side of the plan benchmark: the same measurements as `diffbir bench`, on ncnn's own CPU
runtime (the `ncnn` PyPI package).

    ~/venv/bin/python Tools/bench/ncnn_bench.py MODEL.param IO.safetensors [--threads 2] [--runs 5] [--warmup 1] [--json] [--fp16]

Loads MODEL.param and the MODEL.bin beside it with Vulkan off and, unless --fp16, fp16/bf16
storage and arithmetic off (f32 throughout, ncnn's packed layouts and Winograd convolutions as it
chooses them); feeds the tensors of IO.safetensors named like the model's Input blobs (batch axis
dropped: [1, C, H, W] -> C×H×W), extracts the blobs no layer reads, runs --warmup untimed and --runs
timed (a new extractor each run, as an application does per image), and prints each time, the
median, the process's peak RSS, the .bin's bytes and the error against the `ref.NAME` tensors of
IO.safetensors (max |a-b| / max |ref|).
"""
import argparse, json, os, resource, statistics, time
import numpy as np
import ncnn
from safetensors.numpy import load_file


def blobs(param):
    inputs, produced, read = [], [], set()
    with open(param) as f:
        lines = f.read().split("\n")[2:]
    for line in lines:
        t = line.split()
        if len(t) < 4:
            continue
        nb, nt = int(t[2]), int(t[3])
        bottoms, tops = t[4:4 + nb], t[4 + nb:4 + nb + nt]
        read.update(bottoms)
        produced += tops
        if t[0] == "Input":
            inputs += tops
    return inputs, [b for b in produced if b not in read]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("io")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.add_argument("--fp16", action="store_true", help="leave ncnn's fp16/bf16 storage and arithmetic on (its default)")
    a = p.parse_args()
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    if not a.fp16:
        for k in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
            setattr(net.opt, k, False)
    net.opt.num_threads = a.threads
    binary = a.model[:-6] + ".bin" if a.model.endswith(".param") else a.model + ".bin"
    assert net.load_param(a.model) == 0, a.model
    assert net.load_model(binary) == 0, binary
    inputs, outputs = blobs(a.model)
    io = load_file(a.io)
    feed = {k: ncnn.Mat(np.ascontiguousarray(io[k][0])) for k in inputs}
    times, outs = [], {}
    for i in range(a.warmup + a.runs):
        start = time.perf_counter()
        ex = net.create_extractor()
        for k, v in feed.items():
            ex.input(k, v)
        for k in outputs:
            ret, m = ex.extract(k)
            assert ret == 0, k
            outs[k] = m
        dt = time.perf_counter() - start
        if i >= a.warmup:
            times.append(dt)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    weights = os.path.getsize(binary)
    errors, l2 = {}, {}
    for k, m in outs.items():
        if "ref." + k in io:
            o, r = np.array(m)[None], io["ref." + k]
            errors[k] = float(np.abs(o - r).max() / max(np.abs(r).max(), 1e-30))
            l2[k] = float(np.linalg.norm((o - r).ravel()) / max(np.linalg.norm(r.ravel()), 1e-30))
    result = {"model": a.model, "threads": a.threads, "ncnn": ncnn.__version__, "fp16": a.fp16, "times_s": times,
              "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "peak_rss_bytes": peak,
              "weight_bytes": weights, "peak_rss_minus_weights_bytes": peak - weights, "relative_error": errors,
              "relative_l2_error": l2}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{a.model}: ncnn {ncnn.__version__}, {a.threads} threads; times " + " ".join(f"{t:.3f}" for t in times)
              + f" s; median {result['median_s']:.3f} s; peak RSS {peak / 1e9:.2f} GB; errors {errors}")


if __name__ == "__main__":
    main()
