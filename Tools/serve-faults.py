#!/usr/bin/env python3
"""Faults with the PostgreSQL queue: workers killed mid-job, the API server restarted.

  Tools/with-postgres.sh Tools/serve-faults.py --plan PLAN INPUT.png [--bin .build/release/diffbir]
                         [--jobs 100] [--workers 3] [--kill-every 20] [--seeds 4]

An API server (`diffbir serve --queue $DIFFBIR_TEST_POSTGRES --jobs 0`) and WORKERS workers
(`diffbir worker`, a short lease) on one queue; JOBS jobs submitted (seeds cycling through SEEDS).
Every KILL_EVERY finished jobs, a worker that is running a job is killed with SIGKILL and a new one
started; halfway, the API server is stopped (SIGTERM) and started again. Checks: every job
finished and succeeded (none lost), none ran to two results (each row holds one, written by the
claim that held it; jobs that ran again are counted), and every image is identical to a one-shot
`diffbir restore` of the same input and seed. Exits 1 when a check fails.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def request(port, method, path, body=None, headers=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, r.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("--plan", required=True)
    ap.add_argument("--bin", default=".build/release/diffbir")
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--kill-every", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--lease", type=float, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    queue = os.environ.get("DIFFBIR_TEST_POSTGRES")
    if not queue:
        sys.exit("serve-faults: run under Tools/with-postgres.sh (DIFFBIR_TEST_POSTGRES is not set)")
    work = tempfile.mkdtemp(prefix="serve-faults.")
    seeds = [300 + k for k in range(a.seeds)]

    reference = {}
    for s in seeds:
        out = os.path.join(work, f"ref-{s}.png")
        subprocess.run([a.bin, "restore", "--plan", a.plan, a.input, "--seed", str(s), "-o", out, "-q", "--threads", str(a.threads)], check=True)
        reference[s] = open(out, "rb").read()

    port = free_port()
    log = open(os.path.join(work, "log.txt"), "w")

    def start_api():
        p = subprocess.Popen([a.bin, "serve", "--plan", a.plan, "--queue", queue, "--jobs", "0", "--listen", f"127.0.0.1:{port}",
                              "--queue-depth", str(a.jobs + 10), "--keep", str(a.jobs + 10), "--log-level", "warning"], stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if request(port, "GET", "/readyz")[0] == 200:
                    return p
            except OSError:
                pass
            time.sleep(0.1)
        sys.exit("serve-faults: the API server did not become ready")

    def start_worker():
        return subprocess.Popen([a.bin, "worker", "--plan", a.plan, "--queue", queue, "--threads", str(a.threads),
                                 "--lease", str(a.lease), "--log-level", "warning"], stdout=log, stderr=log)

    api = start_api()
    workers = [start_worker() for _ in range(a.workers)]
    body = open(a.input, "rb").read()
    ids = []
    for n in range(a.jobs):
        status, data = request(port, "POST", f"/v1/restores?seed={seeds[n % len(seeds)]}", body, {"Content-Type": "image/png"})
        if status != 202:
            sys.exit(f"serve-faults: submit {n}: {status} {data[:200]!r}")
        ids.append((json.loads(data)["id"], seeds[n % len(seeds)]))

    killed, restarted_api = 0, False
    next_kill = a.kill_every
    start = time.monotonic()
    states = {}
    while True:
        try:
            states = {i: json.loads(request(port, "GET", f"/v1/restores/{i}")[1]) for i, _ in ids}
        except (OSError, ValueError):
            time.sleep(0.2)
            continue
        finished = sum(s["state"] in ("succeeded", "failed", "cancelled") for s in states.values())
        if finished >= next_kill and finished < a.jobs:
            running = [s for s in states.values() if s["state"] == "running" and s.get("worker")]
            pids = {w.pid: w for w in workers}
            victim = next((pids[int(s["worker"].rsplit(":", 1)[1])] for s in running if int(s["worker"].rsplit(":", 1)[1]) in pids), None)
            if victim:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                workers.remove(victim)
                workers.append(start_worker())
                killed += 1
                next_kill += a.kill_every
        if not restarted_api and finished >= a.jobs // 2:
            api.send_signal(signal.SIGTERM)
            api.wait(timeout=60)
            api = start_api()
            restarted_api = True
        if finished == a.jobs:
            break
        if time.monotonic() - start > 60 * 30:
            break
        time.sleep(0.2)
    wall = time.monotonic() - start

    identical, attempts_over_1, failed = 0, 0, []
    for i, seed in ids:
        s = states[i]
        if s["state"] != "succeeded":
            failed.append((i, s["state"], s.get("error")))
            continue
        status, image = request(port, "GET", f"/v1/restores/{i}/image")
        identical += status == 200 and image == reference[seed]
        attempts_over_1 += s["attempts"] > 1
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        w.wait(timeout=120)
    api.send_signal(signal.SIGTERM)
    api.wait(timeout=60)
    flags = open("/proc/cpuinfo").read()
    cpu = next((l.split(":", 1)[1].strip() for l in flags.splitlines() if l.startswith("model name")), "unknown")
    summary = {"processor": cpu + (" (AVX-512)" if " avx512f" in flags else " (AVX2, no AVX-512)"), "jobs": a.jobs, "workers": a.workers, "killed_mid_job": killed, "api_restarted": restarted_api,
               "succeeded": sum(s["state"] == "succeeded" for s in states.values()), "failed_or_lost": len(failed),
               "identical_to_restore": identical, "ran_again_after_a_kill": attempts_over_1, "wall_seconds": round(wall, 1)}
    checks = {
        "all jobs finished, none lost": len(failed) == 0 and len(states) == a.jobs,
        "every image identical to a one-shot restore": identical == a.jobs,
        "workers were killed mid-job and the API restarted": killed >= max(1, a.jobs // a.kill_every - 1) and restarted_api,
    }
    for k, v in summary.items():
        print(f"{k}: {v}")
    for f in failed[:5]:
        print("failed:", f)
    for k, v in checks.items():
        print(("PASS " if v else "FAIL ") + k)
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
