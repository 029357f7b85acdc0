#!/usr/bin/env python3
"""The network calls of a DiffBIR v2.1 restore (128×128 → 512×512, upscale 4) on onnxruntime, timed per
stage: the peer of `diffbir restore` for issue 7's whole-restore figure.

    ~/venv/bin/python Tools/bench/ort_restore_flow.py DIR [--steps 10] [--cfg] [--threads 2]

DIR holds Tools/bench/export_full_onnx.py's exports of the networks of the flow (bench-swinir.onnx,
bench-vae-encoder.onnx, bench-denoise.onnx, bench-vae-decoder.onnx) and their inputs. The flow is the
one `diffbir restore --plan v2.1-plan` runs at 512×512: stage 1 (SwinIR) once, the VAE encoder once,
the denoiser (ControlNet + UNet) twice per step with CFG (conditional and unconditional), the VAE
decoder once. The sampler's arithmetic, the colour fix and the resizes are not run here (they take
under 0.1 s in ours). All four sessions are created first, as a pipeline holding them would; the
process's peak RSS is printed with the times.
"""
import argparse, json, resource, time
import onnxruntime as ort
from safetensors.numpy import load_file


def session(path, threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--cfg", action="store_true", help="two denoiser calls per step (DiffBIR v2.1's default cfg 6)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    stages = [("stage1", "swinir", 1), ("encode", "vae-encoder", 1), ("sampling", "denoise", a.steps * (2 if a.cfg else 1)),
              ("decode", "vae-decoder", 1)]
    start = time.perf_counter()
    sessions = {}
    for _, net, _ in stages:
        s = session(f"{a.dir}/bench-{net}.onnx", a.threads)
        io = load_file(f"{a.dir}/bench-{net}.io.safetensors")
        feed = {i.name: io[i.name if i.name in io else i.name.rsplit(".", 1)[0]] for i in s.get_inputs()}
        sessions[net] = (s, feed)
    load = time.perf_counter() - start
    times = {}
    for stage, net, calls in stages:
        s, feed = sessions[net]
        t0 = time.perf_counter()
        for _ in range(calls):
            s.run(None, feed)
        times[stage] = time.perf_counter() - t0
    total = sum(times.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"onnxruntime": ort.__version__, "threads": a.threads, "steps": a.steps, "cfg": a.cfg,
                      "load_s": load, "stage_s": times, "total_s": total, "peak_rss_bytes": peak}))


if __name__ == "__main__":
    main()
