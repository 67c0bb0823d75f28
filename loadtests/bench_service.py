"""Benchmark the running service end to end: photo and clip latency, submit latency at a fixed rate, throughput.

Uses the stack of `make up` when one is running (var/stack, or --stack-dir), otherwise starts its own on
loopback (Redis, S3, Triton on CPU, gateway, one worker per queue group) and stops it at the end. Its Triton
serves one model from a model repository of its own: the shipped reference model (models/reference, 112 px
INT8) by default, `--size 224` a freshly initialised 224 px export with the shipped model's windows (the
paper's size; speed does not depend on the weights), or `--model FILE`.

Prints, for a photo (sample1.jpg, 1920 px; with and without heatmaps) and a 10 s 1280x720 30 fps H.264 clip:
  - end-to-end latency p50/p95: client-observed (upload start -> finished job seen) and server-side
    (job created -> finished, from the job's own timestamps);
  - gateway submit latency p50/p99 at a fixed, open-loop request rate (default 100/s for 10 s), measured
    from each request's scheduled send time, so a stalled gateway cannot hide its queueing delay;
  - sustained jobs per second: a burst of photo jobs, from the first creation to the last finish.
Every job gets unique bytes (a random tail the decoders ignore), so none is answered from the result cache.
Run with `make bench-service`. A benchmark, never a test: it prints numbers and compares them to targets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake_devstack import stack as devstack  # noqa: E402
from deepfake_devstack.process import child_pids  # noqa: E402
from deepfake_jobs.store import JobStore  # noqa: E402
from deepfake_jobs.tenants import Tenant, TenantRegistry, hash_api_key, new_api_key  # noqa: E402

from tests.utils.media import ensure_media  # noqa: E402
from tests.utils.media_factory import benchmark_clip  # noqa: E402

TERMINAL = ("succeeded", "failed", "canceled")
TARGETS = {"photo_p50_ms": 300.0, "clip_p50_ms": 3000.0, "submit_p99_ms": 50.0}
MAX_RATE_SECONDS = 60.0
OWN_STACK_SERVICES = {"redis", "s3", "triton", "gateway", "worker-pipeline", "worker-webhooks"}


# --- statistics -------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(values: list[float], *qs: float) -> str:
    if not values:
        return "no samples"
    return "  ".join(f"p{q:g} {percentile(values, q):8.1f} ms" for q in qs) + f"  (n={len(values)})"


# --- media with unique bytes ------------------------------------------------------------------------------------


def unique_photo(photo: bytes) -> bytes:
    """JPEG decoders stop at the end-of-image marker: a random tail changes the hash, not the image."""
    return photo + uuid.uuid4().bytes


def unique_clip(clip: bytes) -> bytes:
    """An MP4 `free` box (skipped by every demuxer) with random content appended."""
    payload = uuid.uuid4().bytes
    return clip + struct.pack(">I", 8 + len(payload)) + b"free" + payload


# --- the stack ----------------------------------------------------------------------------------------------------


@dataclass
class Service:
    gateway_url: str
    redis_url: str
    own_stack: Path | None  # the temporary stack folder when this run started the stack


def running_stack(stack_dir: Path) -> dict[str, str] | None:
    paths = devstack.StackPaths(stack_dir)
    state = devstack.read_state(paths)
    gateway = state.get("services", {}).get("gateway")
    if gateway is None or devstack.service_status(gateway) != "running" or not paths.env.is_file():
        return None
    return devstack.parse_env_file(paths.env)


SHIPPED_MODEL = ROOT / "models" / "reference" / "model.onnx"


def served_model(args: argparse.Namespace) -> Path:
    """The ONNX file the own stack's Triton serves: --model, else --size's untrained export, else the shipped one."""
    if args.model is not None:
        return args.model
    if args.size is not None or not SHIPPED_MODEL.is_file():
        from loadtests.bench_core import untrained_model  # the same export, windows and cache as bench-core

        return untrained_model(args.size or 224, args.precision)
    return SHIPPED_MODEL


@contextmanager
def service(args: argparse.Namespace) -> Iterator[Service]:
    env = running_stack(args.stack_dir)
    if env is not None:
        print(f"using the running stack of {args.stack_dir} (gateway {env['DEEPFAKE_GATEWAY_URL']})")
        yield Service(env["DEEPFAKE_GATEWAY_URL"], env["DEEPFAKE_REDIS_URL"], None)
        return
    from deepfake_core.model.export import read_metadata
    from deepfake_core.serving.model_repository import install_model

    folder = Path(tempfile.mkdtemp(prefix="deepfake-bench-stack-"))
    model = served_model(args)
    install_model(model, folder / "model_repository", version=1)
    metadata = read_metadata(model)
    devstack.EXTRA_ENV.update(
        {
            "DEEPFAKE_ALLOW_UNTRAINED_MODEL": "true",
            "DEEPFAKE_FETCH_ALLOWLIST": "127.0.0.1",  # the benchmark's own media server
            "DEEPFAKE_MAX_QUEUE_DEPTH": "100000",  # the submit phase must measure the gateway, not backpressure
            "DEEPFAKE_WEBHOOK_SIGNING_KEY": "bench-" + uuid.uuid4().hex,
        }
    )
    print(f"starting a local stack in {folder}; Triton serves {model} ({metadata.input_size} px, "
          f"{metadata.extra.get('precision', 'fp32')}, trained={metadata.trained})")  # fmt: skip
    stack = devstack.Stack(devstack.StackPaths(folder), only=OWN_STACK_SERVICES,
                           model_repository=folder / "model_repository")  # fmt: skip
    try:
        env = stack.up()
        yield Service(env["DEEPFAKE_GATEWAY_URL"], env["DEEPFAKE_REDIS_URL"], folder)
    finally:
        devstack.stop_recorded(devstack.StackPaths(folder), out=sys.stderr)
        if not args.keep_logs:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"stack logs kept in {folder / 'logs'}")


@contextmanager
def bench_tenant(redis_url: str) -> Iterator[str]:
    """A Redis tenant with limits high enough to measure the service rather than the admission control."""
    import redis

    key = new_api_key()
    registry = TenantRegistry(redis=redis.Redis.from_url(redis_url, decode_responses=True))
    tenant = Tenant(id=f"bench-{uuid.uuid4().hex[:8]}", api_key_sha256=hash_api_key(key),
                    rate_limit_per_minute=10_000_000, max_concurrent_jobs=1_000_000)  # fmt: skip
    registry.put(tenant)
    try:
        yield key
    finally:
        registry.delete(tenant.id)


@contextmanager
def media_server(body: bytes) -> Iterator[str]:
    """A loopback HTTP server that serves `body` at any path (media for URL submissions)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- phases ---------------------------------------------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def wait_finished(client: httpx.Client, job_id: str, timeout_s: float = 600.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    job = client.get(f"/v1/jobs/{job_id}").json()
    while job["status"] not in TERMINAL:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s:.0f} s")
        job = client.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()
    return job


def submit_upload(
    client: httpx.Client, data: bytes, name: str, content_type: str, fields: dict[str, str] | None = None
) -> dict[str, Any]:
    response = client.post("/v1/jobs", files={"file": (name, data, content_type)}, data=fields or {})
    if response.status_code != 202:
        raise RuntimeError(f"submission refused: {response.status_code} {response.text[:300]}")
    return response.json()


@dataclass
class LatencyRun:
    client_ms: list[float]
    server_ms: list[float]
    stages: dict[str, list[float]]
    failures: Counter[str]


def end_to_end(
    client: httpx.Client,
    make: Callable[[], bytes],
    name: str,
    kind: str,
    runs: int,
    fields: dict[str, str] | None = None,
) -> LatencyRun:
    """Sequential jobs: each one alone in the system, from the upload's start to its finished state."""
    run = LatencyRun([], [], {}, Counter())
    for _ in range(runs):
        data = make()
        started = time.perf_counter()
        job = wait_finished(client, submit_upload(client, data, name, kind, fields)["id"])
        elapsed = (time.perf_counter() - started) * 1000
        if job["status"] != "succeeded":
            run.failures[job["error"]["code"] if job.get("error") else job["status"]] += 1
            continue
        run.client_ms.append(elapsed)
        run.server_ms.append((parse_time(job["finished_at"]) - parse_time(job["created_at"])).total_seconds() * 1000)
        for stage, ms in job["stage_timings_ms"].items():
            run.stages.setdefault(stage, []).append(ms)
    return run


def print_latency(title: str, run: LatencyRun) -> None:
    print(f"\n{title}")
    print(f"  end to end, client-observed:   {summary(run.client_ms, 50, 95)}")
    print(f"  end to end, server (created -> finished): {summary(run.server_ms, 50, 95)}")
    for stage, values in run.stages.items():
        print(f"    stage {stage:<11} median {statistics.median(values):8.1f} ms")
    if run.failures:
        print(f"  FAILED jobs: {dict(run.failures)}")


@dataclass
class RateRun:
    latencies_ms: list[float]
    statuses: Counter[str]
    job_ids: list[str]
    duration_s: float


async def fixed_rate(base_url: str, api_key: str, rate: float, seconds: float, body: Callable[[int], dict]) -> RateRun:
    """Open-loop load: request i is due at start + i/rate whatever happened before; latency counts from then."""
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30.0) as client:
        await client.get("/v1/jobs", params={"limit": 1})  # connection warm-up
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.5

        async def one(index: int) -> tuple[float, str, str | None]:
            due = start + index / rate
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                response = await client.post("/v1/jobs", **body(index))
            except httpx.HTTPError as error:
                return (loop.time() - due) * 1000, type(error).__name__, None
            job_id = response.json().get("id") if response.status_code == 202 else None
            return (loop.time() - due) * 1000, str(response.status_code), job_id

        results = await asyncio.gather(*(one(index) for index in range(total)))
        duration = loop.time() - start
    return RateRun(
        latencies_ms=[latency for latency, status, _ in results if status == "202"],
        statuses=Counter(status for _, status, _ in results),
        job_ids=[job_id for _, _, job_id in results if job_id],
        duration_s=duration,
    )


def cancel_all(client: httpx.Client, job_ids: list[str]) -> None:
    for job_id in job_ids:
        client.delete(f"/v1/jobs/{job_id}")


def wait_queues_empty(redis_url: str, timeout_s: float = 300.0) -> None:
    import redis
    from deepfake_jobs.settings import PlatformSettings

    store = JobStore(redis.Redis.from_url(redis_url, decode_responses=True))
    queues = PlatformSettings().queues
    deadline = time.monotonic() + timeout_s
    while sum(store.queue_depths(queues).values()) > 0 and time.monotonic() < deadline:
        time.sleep(0.5)


def submit_body(client: httpx.Client, media: Path, media_url: str) -> tuple[Callable[[int], dict], str]:
    """Request bodies for the submit phase: media URLs when the gateway may fetch loopback, else small uploads."""
    probe = client.post("/v1/jobs", json={"media_url": f"{media_url}/probe.jpg"})
    if probe.status_code == 202:
        cancel_all(client, [probe.json()["id"]])
        return (lambda index: {"json": {"media_url": f"{media_url}/{index}.jpg"}}), "JSON media_url submissions"
    small = (media / "astronaut.png").read_bytes()
    how = f"multipart uploads of a {len(small) // 1024} KiB image (the gateway refuses loopback URLs)"
    return (lambda index: {"files": {"file": ("a.png", unique_photo(small), "image/png")}}), how


def submit_phase(svc: Service, client: httpx.Client, api_key: str, rate: float, seconds: float,
                 body: Callable[[int], dict], drain: bool = True) -> RateRun:  # fmt: skip
    run = asyncio.run(fixed_rate(svc.gateway_url, api_key, rate, seconds, body))
    achieved = sum(run.statuses.values()) / run.duration_s if run.duration_s else 0.0
    print(f"    accepted (202): {summary(run.latencies_ms, 50, 95, 99)}")
    print(f"    answers: {dict(run.statuses)}; offered {achieved:.1f} requests/s")
    if drain:
        print("    cancelling the submitted jobs and waiting for the queues to drain")
        cancel_all(client, run.job_ids)
        wait_queues_empty(svc.redis_url)
    return run


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (Celery's prefork children), from /proc."""
    tree, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        tree.append(current)
        frontier.extend(child_pids(current))
    return tree


@contextmanager
def paused_workers(stack_dir: Path) -> Iterator[None]:
    """Stop the stack's Celery workers (SIGSTOP) for a phase, so it measures the gateway without them."""
    state = devstack.read_state(devstack.StackPaths(stack_dir))
    pids = [pid for name, entry in state.get("services", {}).items() if name.startswith("worker")
            for pid in process_tree(int(entry["pid"]))]  # fmt: skip
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def throughput(client: httpx.Client, photo: bytes, jobs: int) -> tuple[float, int, Counter[str]]:
    """A burst of photo jobs: completed jobs per second from the first creation to the last finish."""
    submitted = [submit_upload(client, unique_photo(photo), "photo.jpg", "image/jpeg") for _ in range(jobs)]
    finished = [wait_finished(client, job["id"]) for job in submitted]
    outcomes = Counter(job["status"] for job in finished)
    first = min(parse_time(job["created_at"]) for job in finished)
    last = max(parse_time(job["finished_at"]) for job in finished)
    span = (last - first).total_seconds()
    return outcomes["succeeded"] / span if span > 0 else 0.0, outcomes["succeeded"], outcomes


# --- main -------------------------------------------------------------------------------------------------------------


def verdict(value: float, target: float) -> str:
    return "meets" if value <= target else "MISSES"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack-dir", type=Path, default=Path(os.environ.get("DEEPFAKE_STACK_DIR",
                                                                             devstack.DEFAULT_STACK_DIR)))  # fmt: skip
    parser.add_argument("--model", type=Path, help="ONNX model for a stack this run starts (default: the shipped one)")
    parser.add_argument("--size", type=int, choices=(112, 224), help="serve an untrained export of this size instead")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32", help="of the --size export")
    parser.add_argument("--photo-runs", type=int, default=10)
    parser.add_argument("--clip-runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=100.0, help="submissions per second in the submit phase")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help=f"length of it (at most {MAX_RATE_SECONDS:g})")
    parser.add_argument("--throughput-jobs", type=int, default=24)
    parser.add_argument("--keep-logs", action="store_true", help="keep the own stack's logs")
    args = parser.parse_args()
    rate_seconds = min(args.rate_seconds, MAX_RATE_SECONDS)

    media = ensure_media()
    photo = (media / "sample1.jpg").read_bytes()
    clip = benchmark_clip().read_bytes()
    print(f"cpu cores: {os.cpu_count()}; photo sample1.jpg {len(photo) // 1024} KiB; clip 10 s 720p "
          f"{len(clip) // 1024} KiB")  # fmt: skip

    with service(args) as svc, bench_tenant(svc.redis_url) as api_key, media_server(photo) as media_url:
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=svc.gateway_url, headers=headers, timeout=120.0) as client:
            print("warming up (first jobs load the models in each worker)")
            for make, name, kind in ((lambda: unique_photo(photo), "photo.jpg", "image/jpeg"),
                                     (lambda: unique_clip(clip), "clip.mp4", "video/mp4")):  # fmt: skip
                job = wait_finished(client, submit_upload(client, make(), name, kind)["id"])
                if job["status"] != "succeeded":
                    print(f"error: the warm-up job failed: {job.get('error')}", file=sys.stderr)
                    return 1

            photo_run = end_to_end(client, lambda: unique_photo(photo), "photo.jpg", "image/jpeg", args.photo_runs)
            print_latency("photo (sample1.jpg, 1920x1280), one job at a time", photo_run)
            bare_run = end_to_end(client, lambda: unique_photo(photo), "photo.jpg", "image/jpeg", args.photo_runs,
                                  {"explain": "false"})  # fmt: skip
            print_latency("photo without heatmaps (explain=false), one job at a time", bare_run)
            clip_run = end_to_end(client, lambda: unique_clip(clip), "clip.mp4", "video/mp4", args.clip_runs)
            print_latency("clip (10 s, 1280x720, 30 fps, H.264), one job at a time", clip_run)

            body, how = submit_body(client, media, media_url)
            print(f"\nsubmit latency: {args.rate:g} requests/s for {rate_seconds:g} s, {how}")
            print("  workers running on the same cores (everything on one 2-core machine):")
            rate_run = submit_phase(svc, client, api_key, args.rate, rate_seconds, body)
            print("  workers paused (SIGSTOP) for the phase: the gateway alone, as on its own pods:")
            with paused_workers(svc.own_stack or args.stack_dir):
                alone_run = submit_phase(svc, client, api_key, args.rate, rate_seconds, body, drain=False)
            cancel_all(client, alone_run.job_ids)
            wait_queues_empty(svc.redis_url)

            rate, done, outcomes = throughput(client, photo, args.throughput_jobs)
            print(f"\nsustained throughput: {rate:.2f} photo jobs/s ({done} of {args.throughput_jobs} succeeded; "
                  f"{dict(outcomes)})")  # fmt: skip

    print("\ntargets (2 cores)")
    rows = [
        ("photo end to end p50 (server)", photo_run.server_ms, 50, TARGETS["photo_p50_ms"]),
        ("photo, explain=false, p50", bare_run.server_ms, 50, TARGETS["photo_p50_ms"]),
        ("clip end to end p50 (server)", clip_run.server_ms, 50, TARGETS["clip_p50_ms"]),
        (f"submit p99 at {args.rate:g}/s, workers busy", rate_run.latencies_ms, 99, TARGETS["submit_p99_ms"]),
        (f"submit p99 at {args.rate:g}/s, gateway alone", alone_run.latencies_ms, 99, TARGETS["submit_p99_ms"]),
    ]
    for label, values, q, target in rows:
        if values:
            value = percentile(values, q)
            print(f"  {label:<32} {value:8.1f} ms  target <= {target:g} ms: {verdict(value, target)}")
        else:
            print(f"  {label:<32} no samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
