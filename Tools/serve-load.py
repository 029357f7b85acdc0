#!/usr/bin/env python3
"""Load test of `diffbir serve` on loopback, one plan (standard library only).

  Tools/serve-load.py --plan PLAN INPUT.png [INPUT...] [--bin .build/release/diffbir]
                      [--requests 200] [--clients 8] [--bad 0.1] [--queue-depth 4]

1. Back-to-back `diffbir restore` calls on the same plan and inputs (half before the server runs,
   half after): the reference bytes of every (input, seed) and the throughput a script calling the
   command would get.
2. `diffbir serve` started on a free port; REQUESTS requests (`POST /v1/restores?wait=true`) from
   CLIENTS threads, a fraction BAD of them bad: a truncated PNG (400), a PNG sent as text/plain
   (415), a body over --max-body (413). A 429 (queue full) is retried after its Retry-After.
3. Checks: every good answer has the same bytes as `diffbir restore`; every bad one its 4xx; no
   5xx; the server's peak RSS after all requests within 5 % of after the first 10; throughput
   within 5 % of the back-to-back restores (or better); at least one 429 and then success.
Prints the figures (JSON with --json) and exits 1 when a check fails.
"""
import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def processor():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                flags = open("/proc/cpuinfo").read()
                return name + (" (AVX-512)" if " avx512f" in flags else " (AVX2, no AVX-512)")
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--plan", required=True)
    ap.add_argument("--bin", default=".build/release/diffbir")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--bad", type=float, default=0.1)
    ap.add_argument("--queue-depth", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=2, help="distinct seeds among the good requests")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cli-runs", type=int, default=0, help="back-to-back restores timed (default: one per (input, seed), at least 10)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="serve-load.")
    seeds = [100 + k for k in range(a.seeds)]
    pairs = [(i, s) for i in range(len(a.inputs)) for s in seeds]

    # 1. References and back-to-back throughput: half the runs before the server, half after (the
    #    machine's speed drifts over minutes; both sides see the same drift).
    reference = {}
    runs = max(a.cli_runs, len(pairs), 10)
    cli_seconds = [0.0]

    def back_to_back(count, offset):
        start = time.monotonic()
        for k in range(offset, offset + count):
            i, s = pairs[k % len(pairs)]
            out = os.path.join(work, f"ref-{i}-{s}.png")
            subprocess.run([a.bin, "restore", "--plan", a.plan, a.inputs[i], "--seed", str(s), "-o", out, "-q", "--overwrite",
                            "--threads", str(a.threads)], check=True, stdout=subprocess.DEVNULL)
            data = open(out, "rb").read()
            if reference.setdefault((i, s), data) != data:
                sys.exit(f"serve-load: two restores of {a.inputs[i]} seed {s} differ")
        cli_seconds[0] += time.monotonic() - start

    back_to_back(max(runs // 2, len(pairs)), 0)

    # 2. The server.
    port = free_port()
    max_body = 2_000_000
    server = subprocess.Popen([a.bin, "serve", "--plan", a.plan, "--listen", f"127.0.0.1:{port}", "--queue-depth", str(a.queue_depth),
                               "--max-body", str(max_body), "--threads", str(a.threads), "--log-level", "warning"])
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("serve-load: the server did not become ready")
            time.sleep(0.1)

        rng = random.Random(7)
        inputs = [open(p, "rb").read() for p in a.inputs]
        kinds = ["truncated", "content-type", "oversized"]
        plan = []
        for n in range(a.requests):
            if rng.random() < a.bad:
                plan.append(("bad", kinds[len([p for p in plan if p[0] == "bad"]) % 3]))
            else:
                plan.append(("good", pairs[n % len(pairs)]))
        expected_status = {"truncated": 400, "content-type": 415, "oversized": 413}

        lock = threading.Lock()
        results = []
        done = [0]
        rss_after = {}
        retries = [0]
        served_after_429 = [0]
        next_index = [0]

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            while True:
                with lock:
                    if next_index[0] >= len(plan):
                        return
                    n = next_index[0]
                    next_index[0] += 1
                kind, what = plan[n]
                headers = {"Content-Type": "image/png"}
                seed = 0
                if kind == "good":
                    i, seed = what
                    body = inputs[i]
                elif what == "truncated":
                    body = inputs[0][: len(inputs[0]) // 3]
                elif what == "content-type":
                    body, headers = inputs[0], {"Content-Type": "text/plain"}
                else:
                    body = os.urandom(max_body + 1000)
                got429 = False
                while True:
                    t0 = time.monotonic()
                    try:
                        conn.request("POST", f"/v1/restores?wait=true&seed={seed}", body=body, headers=headers)
                        r = conn.getresponse()
                        data = r.read()
                    except (http.client.HTTPException, OSError):
                        # No answer at all: recorded as status 0 (a failed check), on a new connection.
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                        data, status = b"", 0
                        break
                    status = r.status
                    if status == 429:
                        got429 = True
                        with lock:
                            retries[0] += 1
                        time.sleep(min(float(r.getheader("Retry-After", "1")), 2.0) * rng.uniform(0.2, 0.6))
                        continue
                    break
                with lock:
                    ok = (status == 200 and data == reference[what]) if kind == "good" else status == expected_status[what]
                    results.append({"kind": kind, "what": str(what), "status": status, "ok": ok, "seconds": time.monotonic() - t0})
                    if kind == "good" and got429 and status == 200:
                        served_after_429[0] += 1
                    done[0] += 1
                    if done[0] == 10:
                        rss_after[10] = peak_rss(server.pid)

        start = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        rss_after[len(plan)] = peak_rss(server.pid)
        metrics = ""
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/metrics")
            metrics = c.getresponse().read().decode()
        except OSError:
            pass
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()

    back_to_back(runs - max(runs // 2, len(pairs)), max(runs // 2, len(pairs)))
    cli_rate = runs / cli_seconds[0]

    good = [r for r in results if r["kind"] == "good"]
    bad = [r for r in results if r["kind"] == "bad"]
    rate = len(good) / wall
    summary = {
        "processor": processor(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "plan": a.plan, "inputs": a.inputs, "requests": len(results), "clients": a.clients, "queue_depth": a.queue_depth,
        "good": len(good), "good_identical": sum(r["ok"] for r in good),
        "bad": len(bad), "bad_right_status": sum(r["ok"] for r in bad),
        "status_5xx": sum(r["status"] >= 500 for r in results),
        "retries_429": retries[0], "served_after_429": served_after_429[0],
        "peak_rss_after_10": rss_after.get(10, 0), "peak_rss_after_all": rss_after[len(plan)],
        "server_images_per_second": round(rate, 3), "cli_images_per_second": round(cli_rate, 3),
        "cli_runs": runs, "server_wall_seconds": round(wall, 2),
        "server_exit": server.returncode,
    }
    checks = {
        "every good answer identical to diffbir restore": summary["good_identical"] == len(good) and len(good) > 0,
        "every bad request its 4xx": summary["bad_right_status"] == len(bad),
        "no 5xx": summary["status_5xx"] == 0,
        "peak RSS after all within 5 % of after 10": summary["peak_rss_after_all"] <= 1.05 * summary["peak_rss_after_10"],
        "throughput within 5 % of back-to-back restores (or better)": rate >= 0.95 * cli_rate,
        "queue full answered 429, then served on retry": retries[0] > 0 and served_after_429[0] > 0,
        "drained and exited 0 on SIGTERM": server.returncode == 0,
    }
    summary["checks"] = checks
    if a.json:
        print(json.dumps(summary, indent=1))
    else:
        for k, v in summary.items():
            if k != "checks":
                print(f"{k}: {v}")
        for k, v in checks.items():
            print(("PASS " if v else "FAIL ") + k)
    if metrics:
        with open(os.path.join(work, "metrics.txt"), "w") as f:
            f.write(metrics)
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
