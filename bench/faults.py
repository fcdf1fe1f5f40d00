"""Fault benchmark of the push and serve path, on loopback, bounded in count and time.

The local server runs in its own process (`deepattraction serve`) over the tiny sample model, as
it would in production, and polls its base often. Against it:

1. kills: pushes (serving.push.push_model, each in its own process) killed with SIGKILL at random
   points of a push, while the server polls the base. A partial version would show up as a load
   the server reports failed, or as a numeric folder that is not a whole model.
2. broken push: a version whose saved_model.pb is cut in half is pushed while 4 clients call;
   requests that fail, and answers from any but the old version, are counted.
3. two pushes: two push processes released at once, asking for one version number.
4. storm: 64 concurrent gRPC clients send over-declared TensorProtos, too many photos, too many
   pixels and over-sized messages; each must be refused with its code, while the server's RSS is
   sampled (peak over idle); then a good request must be answered.
5. drain: SIGTERM while clients call (one with a REST body half sent); a request in flight at the
   signal that does not get its answer is dropped.

Last line:
`faults: <k> kills, <p> partial versions loaded; broken push <f>/<n> failed; storm peak RSS <x>x idle;
drain <d> dropped`"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as pred_grpc

import deepattraction  # noqa: F401  (its __init__ picks Keras 2 before TensorFlow loads)
from deepattraction.serving import model_dir, push, warmup
from deepattraction.serving.servable import MAX_PHOTOS_PER_REQUEST, MAX_PIXELS_PER_REQUEST
from deepattraction.serving.server import MAX_REQUEST_BYTES

MODEL = "deepattraction"
RSS_LIMIT = 1.5  # storm peak RSS over idle, as the issue asks
IN_FLIGHT_MARGIN_S = 0.05  # a request sent this long before SIGTERM has surely reached the server


@dataclasses.dataclass(frozen=True)
class FaultsConfig:
    workdir: str = "build/bench/faults"
    kills: int = 20
    broken_clients: int = 4
    storm_clients: int = 64
    storm_rounds: int = 4  # requests per storm client
    drain_clients: int = 4
    seed: int = 0
    timeout_s: float = 240.0  # any one wait; the bench fails instead of hanging


@dataclasses.dataclass
class FaultsResult:
    kills: int = 0
    kills_mid_push: int = 0
    partial_loaded: int = 0  # versions the server failed to load although no broken version was pushed
    incomplete_versions: int = 0  # numeric folders that are not a whole model
    broken_failed: int = 0
    broken_requests: int = 0
    broken_wrong_version: int = 0
    concurrent_versions: tuple[int, ...] = ()
    concurrent_ok: bool = False
    storm_requests: int = 0
    storm_wrong_code: int = 0
    idle_rss: int = 0
    peak_rss: int = 0
    storm_good_after: bool = False
    drain_in_flight: int = 0
    drain_dropped: int = 0
    drain_exit_ok: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def rss_ratio(self) -> float:
        return self.peak_rss / self.idle_rss if self.idle_rss else float("nan")

    def ok(self) -> bool:
        """Whether every figure the issue asks to be zero is zero, and every bound holds."""
        return (self.kills >= 20 and self.partial_loaded + self.incomplete_versions == 0
                and self.broken_failed == 0 and self.broken_wrong_version == 0 and self.broken_requests > 0
                and self.concurrent_ok and self.storm_wrong_code == 0 and self.storm_requests > 0
                and self.rss_ratio <= RSS_LIMIT and self.storm_good_after
                and self.drain_dropped == 0 and self.drain_in_flight > 0 and self.drain_exit_ok)


def summary_line(r: FaultsResult) -> str:
    return (f"faults: {r.kills} kills, {r.partial_loaded + r.incomplete_versions} partial versions loaded; "
            f"broken push {r.broken_failed}/{r.broken_requests} failed; storm peak RSS {r.rss_ratio:.2f}x idle; "
            f"drain {r.drain_dropped} dropped")


class Server:
    """`deepattraction serve` in its own process, on free loopback ports."""

    def __init__(self, base: str, timeout_s: float):
        cmd = [sys.executable, "-m", "deepattraction.cli", "serve", "--model-base", base, "--grpc-port", "0",
               "--rest-port", "0", "--poll-seconds", "0.05", "--load-retry-interval-seconds", "0.2",
               "--drain-seconds", "60"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        deadline = time.monotonic() + timeout_s
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.search(r"gRPC (\S+), REST http://(\S+);", line)
            if m:
                self.grpc_target, self.rest_addr = m.group(1), m.group(2)
            if line.startswith("serve: ready") or time.monotonic() > deadline:
                break
        if self.proc.poll() is not None or not self.lines or not self.lines[-1].startswith("serve: ready"):
            raise RuntimeError(f"server not ready: {''.join(self.lines)}")
        threading.Thread(target=self._read, daemon=True).start()
        self.channel = grpc.insecure_channel(self.grpc_target)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024

    def status(self) -> dict[int, tuple[str, str]]:
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = MODEL
        try:
            resp = model_service_pb2_grpc.ModelServiceStub(self.channel).GetModelStatus(req, timeout=30)
        except grpc.RpcError:
            return {}
        return {s.version: (get_model_status_pb2.ModelVersionStatus.State.Name(s.state), s.status.error_message)
                for s in resp.model_version_status}

    def stop(self):
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _until(what, timeout_s: float, why: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.05)
    raise TimeoutError(f"not within {timeout_s} s: {why}")


_PUSH_CHILD = textwrap.dedent("""
    import sys
    from deepattraction.serving.push import push_model
    model, base, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    sys.stdin.readline()
    print("pushing", flush=True)
    print("done", push_model(model, base, "deepattraction", first=first)[0], flush=True)
""")


PRESPAWN = 3  # push processes started ahead: each spends seconds importing TensorFlow before its push


def _push_child(model: str, base: str, first: int) -> subprocess.Popen:
    """A push in its own process, waiting on stdin once started: its imports take longer than the push."""
    return subprocess.Popen([sys.executable, "-c", _PUSH_CHILD, model, base, str(first)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _ready(p: subprocess.Popen) -> subprocess.Popen:
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError("push child did not start")
    return p


def _complete(version_dir: str, model: str) -> bool:
    """Every file of the pushed model, of the same size, and the warmup file."""
    for dirpath, _, files in os.walk(model):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), model)
            dst = os.path.join(version_dir, rel)
            if not os.path.exists(dst) or (rel != os.path.relpath(warmup.warmup_path(""), "")
                                           and os.path.getsize(dst) != os.path.getsize(os.path.join(dirpath, f))):
                return False
    return os.path.exists(warmup.warmup_path(version_dir))


def _kills(cfg: FaultsConfig, srv: Server, model: str, base: str, r: FaultsResult) -> None:
    rng = random.Random(cfg.seed)
    load_errors: set[int] = set()
    watching = threading.Event()

    def watch():  # every load the server reports failed, seen while the pushes are killed
        while not watching.is_set():
            load_errors.update(v for v, (_, err) in srv.status().items() if "load failed" in err)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    first = max(model_dir.versions(base)) + 1
    ahead = [_push_child(model, base, first) for _ in range(PRESPAWN)]  # imports overlap the pushes

    def next_child():
        child = ahead.pop(0)
        ahead.append(_push_child(model, base, first))
        return child

    # one whole push, timed under the same load, so kills can land anywhere in one
    p = _ready(next_child())
    t0 = time.monotonic()
    p.stdin.write("go\n")
    p.stdin.flush()
    p.stdout.readline()
    p.stdout.readline()
    span = time.monotonic() - t0
    p.wait()
    for _ in range(cfg.kills):
        child = next_child()
        _ready(child)
        child.stdin.write("go\n")
        child.stdin.flush()
        child.stdout.readline()  # "pushing"
        time.sleep(rng.uniform(0, 1.5 * span))  # a third of them after the push would have published
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        r.kills += 1
        r.kills_mid_push += "done" not in child.stdout.read()
    for child in ahead:
        child.kill()
        child.wait()
    newest = max(model_dir.versions(base))
    _until(lambda: srv.status().get(newest, ("",))[0] == "AVAILABLE", cfg.timeout_s, f"version {newest} served")
    watching.set()
    watcher.join()
    r.partial_loaded = len(load_errors)
    numeric = [n for n in os.listdir(base) if n.isascii() and n.isdigit()]
    r.incomplete_versions = sum(not _complete(os.path.join(base, n), model) for n in numeric)
    staging = [n for n in os.listdir(base) if n.startswith(push.STAGING_PREFIX)]
    r.notes.append(f"kills: {r.kills} SIGKILLs at uniform points of a {span * 1000:.0f} ms push, "
                   f"{r.kills_mid_push} before it published; {len(numeric)} versions on disk, "
                   f"{r.incomplete_versions} incomplete; {len(load_errors)} failed loads; "
                   f"{len(staging)} staging folders left (never served; the next push removes them)")


def _grpc_predict(channel, photos: list[bytes], timeout_s: float = 60):
    return pred_grpc.PredictionServiceStub(channel).Predict(warmup.predict_request(MODEL, photos), timeout=timeout_s)


def _broken_push(cfg: FaultsConfig, srv: Server, model: str, base: str, photos, r: FaultsResult) -> None:
    serving = max(model_dir.versions(base))
    broken = os.path.join(tempfile.mkdtemp(prefix="broken_"), "model")
    shutil.copytree(model, broken)
    pb = os.path.join(broken, "saved_model.pb")
    with open(pb, "rb") as f:
        data = f.read()
    with open(pb, "wb") as f:
        f.write(data[: len(data) // 2])  # a push of a damaged export: it cannot load
    stop, lock = threading.Event(), threading.Lock()
    answers: list[int] = []
    failures: list[str] = []

    def call():
        with grpc.insecure_channel(srv.grpc_target) as ch:
            while not stop.is_set():
                try:
                    v = _grpc_predict(ch, photos[:1]).model_spec.version.value
                    with lock:
                        answers.append(v)
                except grpc.RpcError as e:
                    with lock:
                        failures.append(f"{e.code().name}: {e.details()}")

    clients = [threading.Thread(target=call) for _ in range(cfg.broken_clients)]
    for t in clients:
        t.start()
    try:
        _until(lambda: len(answers) >= 20, cfg.timeout_s, "clients answered")
        version, _ = push.push_model(broken, base, MODEL, first=serving + 1)
        _until(lambda: "retried 5 of 5" in srv.status().get(version, ("", ""))[1], cfg.timeout_s,
               f"broken version {version} given up after its retries")
        seen = len(answers)
        _until(lambda: len(answers) >= seen + 20 or failures, cfg.timeout_s, "clients answered after the failed loads")
    finally:
        stop.set()
        for t in clients:
            t.join()
    shutil.rmtree(os.path.dirname(broken), ignore_errors=True)
    r.broken_requests = len(answers) + len(failures)
    r.broken_failed = len(failures)
    r.broken_wrong_version = sum(v != serving for v in answers)
    r.notes.append(f"broken push: version {version} failed 6 loads; {len(answers)} answers, all by version "
                   f"{serving}: {r.broken_wrong_version == 0}; failures {failures[:2]}")
    shutil.rmtree(os.path.join(base, str(version)))  # an operator deletes it; the next push goes above it


def _two_pushes(cfg: FaultsConfig, model: str, base: str, r: FaultsResult) -> None:
    first = max(int(n) for n in os.listdir(base) if n.isascii() and n.isdigit()) + 1
    children = [_ready(_push_child(model, base, first)) for _ in range(2)]
    for c in children:
        c.stdin.write("go\n")
        c.stdin.flush()
    versions = []
    for c in children:
        out, _ = c.communicate(timeout=cfg.timeout_s)
        m = re.search(r"done (\d+)", out)
        versions.append(int(m.group(1)) if m else -1)
    r.concurrent_versions = tuple(sorted(versions))
    r.concurrent_ok = (len(set(versions)) == 2 and -1 not in versions
                       and all(_complete(os.path.join(base, str(v)), model) for v in versions))
    r.notes.append(f"two pushes at once, both asking for version {first}: got {r.concurrent_versions}, "
                   f"both complete and distinct: {r.concurrent_ok}")


def _storm_requests(photos: list[bytes]) -> list[tuple[str, predict_pb2.PredictRequest, grpc.StatusCode]]:
    over = warmup.predict_request(MODEL, photos[:1])
    over.inputs["image_bytes"].tensor_shape.dim[0].size = 100_000_000  # one photo declared as 10^8
    many = warmup.predict_request(MODEL, photos[:1] * (MAX_PHOTOS_PER_REQUEST + 1))
    png = warmup.demo_photos(2, size=8)[1]
    bomb = png[:16] + (6000).to_bytes(4, "big") * 2 + png[24:]  # 36 Mpx declared, under the per-photo limit
    pixels = warmup.predict_request(MODEL, [bomb] * (MAX_PIXELS_PER_REQUEST // 36_000_000 + 1))
    big = warmup.predict_request(MODEL, [photos[0] + b"\0" * MAX_REQUEST_BYTES])
    return [("over-declared", over, grpc.StatusCode.INVALID_ARGUMENT),
            ("too many photos", many, grpc.StatusCode.INVALID_ARGUMENT),
            ("too many pixels", pixels, grpc.StatusCode.INVALID_ARGUMENT),
            ("over-sized message", big, grpc.StatusCode.RESOURCE_EXHAUSTED)]


def _storm(cfg: FaultsConfig, srv: Server, photos, r: FaultsResult) -> None:
    kinds = _storm_requests(photos)
    _grpc_predict(srv.channel, photos[:1])
    time.sleep(1.0)
    r.idle_rss = srv.rss()
    peak, done = [r.idle_rss], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], srv.rss())
            time.sleep(0.01)

    wrong: list[str] = []
    lock = threading.Lock()
    opts = [("grpc.max_send_message_length", 2 * MAX_REQUEST_BYTES)]

    def client(i: int):
        with grpc.insecure_channel(srv.grpc_target, options=opts) as ch:
            stub = pred_grpc.PredictionServiceStub(ch)
            for k in range(cfg.storm_rounds):
                name, req, want = kinds[(i + k) % len(kinds)]
                try:
                    stub.Predict(req, timeout=cfg.timeout_s)
                    got = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    got = e.code()
                with lock:
                    r.storm_requests += 1
                    if got != want:
                        wrong.append(f"{name}: {got.name}")

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    clients = [threading.Thread(target=client, args=(i,)) for i in range(cfg.storm_clients)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    done.set()
    sampler.join()
    r.peak_rss, r.storm_wrong_code = peak[0], len(wrong)
    try:
        r.storm_good_after = len(_grpc_predict(srv.channel, photos[:2]).outputs) > 0
    except grpc.RpcError:
        r.storm_good_after = False
    r.notes.append(f"storm: {r.storm_requests} requests from {cfg.storm_clients} clients "
                   f"({', '.join(k[0] for k in kinds)}), {len(wrong)} not refused with their code {wrong[:3]}; "
                   f"RSS idle {r.idle_rss / 2**20:.0f} MiB, peak {r.peak_rss / 2**20:.0f} MiB; "
                   f"good request answered after: {r.storm_good_after}")


def _drain(cfg: FaultsConfig, srv: Server, photos, r: FaultsResult) -> None:
    calls: list[tuple[float, float, bool, str]] = []  # start, end, ok, error
    lock, stop = threading.Lock(), threading.Event()
    batch = warmup.demo_photos(MAX_PHOTOS_PER_REQUEST // 2, size=256, seed=3)  # slow enough to be in flight

    def grpc_client():
        with grpc.insecure_channel(srv.grpc_target) as ch:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    _grpc_predict(ch, batch)
                    ok, err = True, ""
                except grpc.RpcError as e:
                    ok, err = False, e.code().name
                with lock:
                    calls.append((t0, time.monotonic(), ok, err))
                if not ok:
                    time.sleep(0.05)

    host, port = srv.rest_addr.rsplit(":", 1)
    body = json.dumps({"instances": [{"b64": base64.b64encode(p).decode()} for p in batch[:8]]}).encode()
    slow = socket.create_connection((host, int(port)), timeout=cfg.timeout_s)
    slow.sendall(b"POST /v1/models/deepattraction:predict HTTP/1.1\r\nHost: x\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body[:100])  # headers and a part of the body
    clients = [threading.Thread(target=grpc_client) for _ in range(cfg.drain_clients)]
    for t in clients:
        t.start()
    _until(lambda: len(calls) >= 2 * cfg.drain_clients, cfg.timeout_s, "drain clients answered")
    time.sleep(0.3)
    t_sig = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    _until(lambda: any("draining" in line for line in srv.lines), cfg.timeout_s, "server draining")
    slow.sendall(body[100:])  # the rest of the body arrives after the signal
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = slow.recv(65536)
        if not chunk:
            break
        head += chunk
    slow_ok = head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    slow.close()
    stop.set()
    for t in clients:
        t.join()
    exit_code = srv.proc.wait(timeout=cfg.timeout_s)
    in_flight = [c for c in calls if c[0] <= t_sig - IN_FLIGHT_MARGIN_S and c[1] > t_sig]
    refused_after = [c for c in calls if c[0] > t_sig - IN_FLIGHT_MARGIN_S and not c[2]]
    r.drain_in_flight = len(in_flight) + 1
    r.drain_dropped = sum(not c[2] for c in in_flight) + (not slow_ok)
    r.drain_exit_ok = exit_code == 0
    r.notes.append(f"drain: {r.drain_in_flight} requests in flight at SIGTERM (gRPC sent >= "
                   f"{IN_FLIGHT_MARGIN_S * 1000:.0f} ms before it, and a REST body half sent), {r.drain_dropped} "
                   f"dropped; {len(refused_after)} later requests refused (clients go elsewhere); exit code "
                   f"{exit_code}")


def run(cfg: FaultsConfig) -> FaultsResult:
    from deepattraction.serving.sample_model import export_tiny_model  # loads TFX's tensorflow_transform

    work = os.path.abspath(cfg.workdir)
    shutil.rmtree(work, ignore_errors=True)
    model = export_tiny_model(os.path.join(work, "export"), 1)
    base = os.path.join(work, "serving", MODEL)
    push.push_model(model, base, MODEL, first=1)
    photos = warmup.demo_photos(4, size=96, seed=5)
    r = FaultsResult()
    srv = Server(base, cfg.timeout_s)

    def phase(fn, *args):
        t0 = time.monotonic()
        fn(*args)
        print(f"{r.notes[-1]} [{time.monotonic() - t0:.0f} s]", flush=True)

    try:
        phase(_kills, cfg, srv, model, base, r)
        phase(_broken_push, cfg, srv, model, base, photos, r)
        phase(_two_pushes, cfg, model, base, r)
        newest = max(model_dir.versions(base))
        _until(lambda: srv.status().get(newest, ("",))[0] == "AVAILABLE", cfg.timeout_s, f"version {newest} served")
        phase(_storm, cfg, srv, photos, r)
        phase(_drain, cfg, srv, photos, r)
    finally:
        srv.stop()
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=FaultsConfig.workdir)
    ap.add_argument("--kills", type=int, default=FaultsConfig.kills)
    ap.add_argument("--storm-clients", type=int, default=FaultsConfig.storm_clients)
    ap.add_argument("--seed", type=int, default=FaultsConfig.seed)
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    r = run(FaultsConfig(workdir=a.workdir, kills=a.kills, storm_clients=a.storm_clients, seed=a.seed))
    print(f"bench-faults: {time.monotonic() - t0:.0f} s, all bounds held: {r.ok()}", flush=True)
    print(summary_line(r), flush=True)
    return 0 if r.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
