#!/usr/bin/env python3
"""The onnxruntime side of the plan benchmark: the same measurements as `diffbir bench`.

    ~/venv/bin/python Tools/bench/ort_bench.py MODEL.onnx IO.safetensors [--threads 2] [--runs 5] [--warmup 1] [--json] [--int8 [--int8-weights u8|s8]]

Creates a CPU session (intra-op threads = --threads, inter-op 1, all graph optimisations: onnxruntime's
defaults otherwise), feeds the tensors of IO.safetensors named like the model's inputs, runs --warmup
untimed and --runs timed, and prints each time, the median, the process's peak RSS (ru_maxrss), the
model's weight bytes (its initializers) and the peak minus the weights; outputs are compared with the
`ref.NAME` tensors of IO.safetensors (relative error: max |a-b| / max |ref|).

--int8 runs onnxruntime's dynamic int8 quantisation instead (`quantize_dynamic`: weights per tensor,
activations quantised at run time as u8): the quantised model is made once, next to MODEL, and
reused (external data when it is large). `--int8-weights` picks the weights' type: u8 (the default
here, MODEL.int8u8.onnx) or s8 (`quantize_dynamic`'s own default, MODEL.int8.onnx). On this machine
(onnxruntime 1.32, Zen 5) its ConvInteger with s8 weights is the slow path: the full denoise step took
7.2 s with s8 weights and 2.5 s with u8 (relative L2 error 6.2 % either way), so the u8 model is the
peer at its best.
"""
import argparse, json, resource, statistics, time
import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file


def weight_bytes(path):
    model = onnx.load(path, load_external_data=False)
    total = 0
    for t in model.graph.initializer:
        n = int(np.prod(t.dims)) if len(t.dims) else 1
        total += n * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return total


def quantized(path, weights="u8"):
    suffix = ".int8u8.onnx" if weights == "u8" else ".int8.onnx"
    out = path[:-5] + suffix if path.endswith(".onnx") else path + suffix
    import os
    if not os.path.exists(out):
        from onnxruntime.quantization import QuantType, quantize_dynamic
        tmp = out + ".partial.onnx"
        large = os.path.exists(path + ".data") or os.path.getsize(path) > (1 << 31)
        quantize_dynamic(path, tmp, weight_type=QuantType.QUInt8 if weights == "u8" else QuantType.QInt8, use_external_data_format=large)
        os.replace(tmp, out)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("io")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.add_argument("--int8", action="store_true")
    p.add_argument("--int8-weights", choices=["u8", "s8"], default="u8")
    a = p.parse_args()
    if a.int8:
        a.model = quantized(a.model, a.int8_weights)
    weights = weight_bytes(a.model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    io = load_file(a.io)
    # The TorchScript exporter renames an input that shares its name with an output ("image" → "image.1").
    feed = {i.name: io[i.name if i.name in io else i.name.rsplit(".", 1)[0]] for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    times = []
    outs = None
    for i in range(a.warmup + a.runs):
        start = time.perf_counter()
        outs = session.run(names, feed)
        dt = time.perf_counter() - start
        if i >= a.warmup:
            times.append(dt)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    errors, l2 = {}, {}
    for n, o in zip(names, outs):
        if "ref." + n in io:
            r = io["ref." + n]
            errors[n] = float(np.abs(o - r).max() / max(np.abs(r).max(), 1e-30))
            l2[n] = float(np.linalg.norm((o - r).ravel()) / max(np.linalg.norm(r.ravel()), 1e-30))
    result = {"model": a.model, "threads": a.threads, "onnxruntime": ort.__version__, "times_s": times,
              "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "peak_rss_bytes": peak,
              "weight_bytes": weights, "peak_rss_minus_weights_bytes": peak - weights, "relative_error": errors,
              "relative_l2_error": l2}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{a.model}: onnxruntime {ort.__version__}, {a.threads} threads; times "
              + " ".join(f"{t:.3f}" for t in times) + f" s; median {result['median_s']:.3f} s")
        print(f"peak RSS {peak / 1e9:.2f} GB; weights {weights / 1e9:.2f} GB; minus weights {(peak - weights) / 1e9:.3f} GB; errors {errors}")


if __name__ == "__main__":
    main()
