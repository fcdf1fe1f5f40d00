"""Serving load benchmark: the local TF-Serving-compatible server on loopback, bounded clients and time.

1. Overhead: one client, calls alternating between the in-process SavedModel and the server on the
   same photos (alternating, so CPU load from other processes hits both alike); p50 ratio.
2. Load: N concurrent gRPC clients for T seconds; p50, p99, throughput, errors.
The server runs in its own process (`deepattraction serve`), as it would in production.
Last line: `serving: p50 <a> ms, p99 <b> ms, <q> req/s, errors <e>, overhead <r>x`."""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before TensorFlow loads)
from deepattraction.serving import warmup
from deepattraction.serving.client import ClientConfig, ServingClient
from deepattraction.serving.predict import LocalModel


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    model_base: str = ""  # a TF Serving model base path; empty: export the sample model into workdir
    workdir: str = "build/bench/serving"
    clients: int = 4
    seconds: float = 20.0
    batch: int = 1  # photos per request
    overhead_calls: int = 40
    photos: int = 16


def _start_server(base: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "deepattraction", "serve", "--model-base", base, "--grpc-port", "0",
           "--rest-port", "-1", "--poll-seconds", "5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    target = None
    for line in proc.stdout:
        m = re.search(r"gRPC (\S+),", line)
        target = target or (m and m.group(1))
        if line.startswith("serve: ready"):
            return proc, target
    raise RuntimeError(f"server exited with {proc.wait()} before it was ready")


def run(cfg: BenchConfig) -> dict:
    base = cfg.model_base
    if not base:
        from deepattraction.serving.sample_model import MODEL_NAME, export_model  # loads TFX: only without a model

        base = os.path.join(os.path.abspath(cfg.workdir), MODEL_NAME)
        if not os.path.exists(os.path.join(base, "1", "saved_model.pb")):
            print(f"bench: exporting the sample model to {base}", flush=True)
            export_model(os.path.abspath(cfg.workdir), 1)
    photos = warmup.demo_photos(cfg.photos, size=160, seed=11)
    batches = [[photos[(i + k) % len(photos)] for k in range(cfg.batch)] for i in range(len(photos))]
    proc, target = _start_server(base)
    try:
        local = LocalModel(base)
        client = ServingClient(ClientConfig(target, retries=0))
        for b in batches[:3]:  # first-call costs out of the way on both sides
            local.predict_bytes(b), client.predict(b)
        t_local, t_remote = [], []
        for i in range(cfg.overhead_calls):
            b = batches[i % len(batches)]
            t0 = time.perf_counter()
            local.predict_bytes(b)
            t1 = time.perf_counter()
            client.predict(b)
            t_local.append(t1 - t0)
            t_remote.append(time.perf_counter() - t1)
        overhead = float(np.median(t_remote) / np.median(t_local))
        print(f"bench: sequential p50 in-process {1e3 * np.median(t_local):.1f} ms, "
              f"through the server {1e3 * np.median(t_remote):.1f} ms", flush=True)

        lat: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.perf_counter() + cfg.seconds

        def worker(k: int):
            c = ServingClient(ClientConfig(target, retries=0))
            i = k
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    c.predict(batches[i % len(batches)])
                    with lock:
                        lat.append(time.perf_counter() - t0)
                except Exception as e:  # counted, never hidden
                    with lock:
                        errors.append(str(e))
                i += 1
            c.close()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(cfg.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    lat_ms = np.array(lat) * 1e3
    return {"p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99)),
            "req_s": len(lat) / wall, "errors": len(errors), "overhead": overhead, "first_errors": errors[:3],
            "clients": cfg.clients, "seconds": cfg.seconds, "batch": cfg.batch, "cpus": os.cpu_count()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = BenchConfig()
    p.add_argument("--model-base", default=d.model_base)
    p.add_argument("--workdir", default=d.workdir)
    p.add_argument("--clients", type=int, default=d.clients)
    p.add_argument("--seconds", type=float, default=d.seconds)
    p.add_argument("--batch", type=int, default=d.batch)
    a = p.parse_args(argv)
    if not 1 <= a.clients <= 64 or not 0 < a.seconds <= 300:
        p.error("clients must be 1..64 and seconds 0..300: the benchmark stays bounded")
    r = run(BenchConfig(model_base=a.model_base, workdir=a.workdir, clients=a.clients, seconds=a.seconds,
                        batch=a.batch))
    print(f"bench: {r['clients']} clients x {r['seconds']:.0f} s, batch {r['batch']}, {r['cpus']} CPUs"
          + (f"; first errors: {r['first_errors']}" if r["errors"] else ""))
    print(f"serving: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['req_s']:.1f} req/s, "
          f"errors {r['errors']}, overhead {r['overhead']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
