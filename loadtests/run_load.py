"""The load test (`make loadtest`): the local stack, a sustainable-rate calibration, then Locust at 2x that rate.

Starts its own stack on loopback (Redis, S3, Triton when a model is installed in model_repository/cpu, the
gateway, the pipeline and webhook workers, beat) in a temporary folder with an untrained 224 px model (speed
does not depend on the weights), then:

  1. calibrates: a burst of the same photo/clip mix, all submitted at once; the sustainable rate is the jobs
     finished per second while the pipeline was saturated (skip with --sustainable-rate);
  2. creates a load tenant whose concurrent-job quota holds `--queue-seconds` of work at that rate, so that
     the excess of a 2x load is refused with 429 `concurrency_limit` instead of queueing without bound;
  3. runs loadtests/locustfile.py headless at `--overload` x the sustainable rate for `--duration` seconds
     (300; 30 with --quick): webhook users (callback to the receiver of loadtests/webhook_receiver.py, which
     verifies every signature), polling users and long-poll users, photos and short videos;
  4. drains: waits until every accepted job is finished and every webhook arrived (bounded);
  5. reports throughput, p50/p95/p99 per endpoint, answers by status and code, end-to-end job latency (submit
     to webhook), lost jobs (accepted, never finished), lost webhooks and duplicate deliveries, against the
     targets; writes it all to var/reports/loadtest[-quick].json.

Exit status 1 when a job or a webhook was lost, a delivery duplicated or badly signed, or a request answered
5xx or timed out; timing targets are printed (met / MISSES), never a failure: this is a benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "loadtests"))

from bench_service import percentile, unique_clip, unique_photo, untrained_model  # noqa: E402
from deepfake_devstack import stack as devstack  # noqa: E402
from webhook_receiver import WebhookReceiver  # noqa: E402

from tests.utils.media import ensure_media  # noqa: E402
from tests.utils.media_factory import cached_clip  # noqa: E402

LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
REPORTS_DIR = ROOT / "var" / "reports"
TERMINAL = ("succeeded", "failed", "canceled")
STACK_SERVICES = {"redis", "s3", "triton", "gateway", "worker-pipeline", "worker-webhooks", "beat"}
PHOTOS = ("sample1.jpg", "sample2.jpg", "sample3.jpg", "sample4.jpg", "sample5.jpg", "sample6.jpg",
          "insightface_t1.jpg", "clm_audrey.jpg")  # fmt: skip
SUBMIT_P99_TARGET_MS = 100.0
SUBMIT = "POST /v1/jobs"


# --- the stack and its tenant -------------------------------------------------------------------------------------


@dataclass
class Service:
    gateway_url: str
    redis_url: str
    dev_key: str
    folder: Path


@contextmanager
def own_stack(keep_logs: bool) -> Iterator[Service]:
    """A fresh local stack in a temporary folder, stopped (and removed, unless `keep_logs`) at the end."""
    folder = Path(tempfile.mkdtemp(prefix="deepfake-loadtest-stack-"))
    devstack.EXTRA_ENV.update(
        {
            "DEEPFAKE_MODEL_PATH": str(untrained_model()),
            "DEEPFAKE_ALLOW_UNTRAINED_MODEL": "true",
            "DEEPFAKE_FETCH_ALLOWLIST": "127.0.0.1",  # the webhook receiver of this run
            "DEEPFAKE_WEBHOOK_SIGNING_KEY": "loadtest-" + uuid.uuid4().hex,
        }
    )
    print(f"starting a local stack in {folder}", flush=True)
    try:
        env = devstack.Stack(devstack.StackPaths(folder), only=STACK_SERVICES).up()
        yield Service(env["DEEPFAKE_GATEWAY_URL"], env["DEEPFAKE_REDIS_URL"], env["DEEPFAKE_API_KEY"], folder)
    finally:
        devstack.stop_recorded(devstack.StackPaths(folder), out=sys.stderr)
        if keep_logs:
            print(f"stack logs kept in {folder / 'logs'}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def create_load_tenant(redis_url: str, max_concurrent_jobs: int) -> tuple[str, str]:
    """A Redis tenant whose quota is the load's admission limit (its rate limit stays out of the way)."""
    import redis
    from deepfake_jobs.tenants import Tenant, TenantRegistry, hash_api_key, new_api_key

    key = new_api_key()
    tenant = Tenant(id=f"load-{uuid.uuid4().hex[:8]}", api_key_sha256=[hash_api_key(key)],
                    rate_limit_per_minute=1_000_000, max_concurrent_jobs=max_concurrent_jobs)  # fmt: skip
    TenantRegistry(redis=redis.Redis.from_url(redis_url, decode_responses=True)).put(tenant)
    return tenant.id, key


# --- media --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Media:
    photos: list[Path]
    clips: list[Path]

    def pick(self, index: int, video_share: float) -> tuple[str, bytes, str]:
        """The `index`-th file of a deterministic mix with `video_share` clips: (name, unique bytes, type)."""
        every = round(1 / video_share) if video_share > 0 else 0
        if every and index % every == every - 1:
            clip = self.clips[index % len(self.clips)]
            return clip.name, unique_clip(clip.read_bytes()), "video/mp4"
        photo = self.photos[index % len(self.photos)]
        return photo.name, unique_photo(photo.read_bytes()), "image/jpeg"


def load_media() -> Media:
    """Real photos with faces and a 2 s, 320x240, 12 fps clip of the real talking-face video."""
    folder = ensure_media()
    clip = cached_clip("service-clip.mp4", width=320, height=240, fps=12, seconds=2.0)
    return Media([folder / name for name in PHOTOS if (folder / name).is_file()], [clip])


# --- jobs through the API -----------------------------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def submit(client: httpx.Client, name: str, data: bytes, content_type: str) -> dict[str, Any]:
    response = client.post("/v1/jobs", files={"file": (name, data, content_type)})
    if response.status_code != 202:
        raise RuntimeError(f"submission refused: {response.status_code} {response.text[:300]}")
    return response.json()


def wait_all_terminal(client: httpx.Client, job_ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    """The last document of each job, polling (long-polls of 5 s) until all are finished or the deadline."""
    deadline = time.monotonic() + timeout_s
    jobs: dict[str, dict[str, Any]] = {}
    pending = list(job_ids)
    while pending and time.monotonic() < deadline:
        still = []
        for job_id in pending:
            response = client.get(f"/v1/jobs/{job_id}")
            if response.status_code == 200:
                jobs[job_id] = response.json()
            if jobs.get(job_id, {}).get("status") not in TERMINAL:
                still.append(job_id)
        pending = still
        if pending:
            client.get(f"/v1/jobs/{pending[0]}", params={"wait": 5})
    return jobs


def warm_up(client: httpx.Client, media: Media) -> None:
    """One photo and one clip first: each worker loads its models on its first job."""
    for index in (0, round(1 / 0.2) - 1):
        job = submit(client, *media.pick(index, 0.2))
        finished = wait_all_terminal(client, [job["id"]], 300)[job["id"]]
        if finished["status"] != "succeeded":
            raise SystemExit(f"error: the warm-up job failed: {finished.get('error')}")


def calibrate(client: httpx.Client, media: Media, jobs: int, video_share: float) -> float:
    """Jobs finished per second with the pipeline saturated: a burst submitted at once, measured between its first
    and its last finish (so the first job's own latency, the pipeline filling up, does not count)."""
    submitted = [submit(client, *media.pick(index, video_share))["id"] for index in range(jobs)]
    finished = wait_all_terminal(client, submitted, 600).values()
    done = sorted(parse_time(job["finished_at"]) for job in finished if job["status"] == "succeeded")
    if len(done) < jobs:
        raise SystemExit(f"error: {jobs - len(done)} of {jobs} calibration jobs did not succeed")
    return (len(done) - 1) / max((done[-1] - done[0]).total_seconds(), 1e-3)


# --- the locust run -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    sustainable_rate: float
    rate: float
    duration_s: float
    max_submissions: int
    users: int
    max_concurrent_jobs: int
    drain_timeout_s: float


def run_locust(svc: Service, plan: LoadPlan, api_key: str, callback: str, media: Media, args: argparse.Namespace,
               output: Path) -> int:  # fmt: skip
    env = {
        **os.environ,
        "LOADTEST_API_KEY": api_key,
        "LOADTEST_SUBMIT_RATE": f"{plan.rate:.4f}",
        "LOADTEST_MAX_SUBMISSIONS": str(plan.max_submissions),
        "LOADTEST_SUBMIT_SECONDS": str(plan.duration_s),
        "LOADTEST_CALLBACK_URL": callback,
        "LOADTEST_VIDEO_SHARE": str(args.video_share),
        "LOADTEST_FOLLOW_TIMEOUT_S": str(plan.drain_timeout_s),
        "LOADTEST_OUTPUT": str(output),
        "LOADTEST_PHOTOS": os.pathsep.join(str(path) for path in media.photos),
        "LOADTEST_CLIPS": os.pathsep.join(str(path) for path in media.clips),
    }
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", svc.gateway_url,
        "-u", str(plan.users), "-r", str(plan.users), "-t", f"{math.ceil(plan.duration_s + plan.drain_timeout_s)}s",
        "--stop-timeout", "10", "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0",
    ]  # fmt: skip
    print(f"\nlocust: {' '.join(command[2:])}", flush=True)
    return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode


# --- the report ---------------------------------------------------------------------------------------------------


def latency_summary(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    return {"count": len(values), **{f"p{q}": round(percentile(values, q), 1) for q in (50, 95, 99)},
            "max": round(max(values), 1)}  # fmt: skip


def is_error(status: str) -> bool:
    """5xx, connection errors and timeouts (locust reports those by exception name)."""
    return not status.isdigit() or int(status) >= 500


def build_report(
    plan: LoadPlan, locust: dict[str, Any], jobs: dict[str, dict[str, Any]], receiver: Any, wall_s: float
) -> dict[str, Any]:
    submissions = locust["submissions"]
    accepted = [s for s in submissions if s["job_id"]]
    by_status = Counter(str(s["status"]) + (f" {s['code']}" if s["code"] else "") for s in submissions)
    finished = {job_id: job for job_id, job in jobs.items() if job.get("status") in TERMINAL}
    lost = [s["job_id"] for s in accepted if s["job_id"] not in finished]
    outcomes = Counter(
        job["status"] + (f" ({job['error']['code']})" if job.get("error") else "") for job in finished.values()
    )
    webhook_jobs = [s for s in accepted if s["mode"] == "webhook"]
    owed = [s for s in webhook_jobs if finished.get(s["job_id"], {}).get("status") in ("succeeded", "failed")]
    delivered = [s for s in owed if s["job_id"] in receiver.first_by_job]
    e2e_webhook = [(receiver.first_by_job[s["job_id"]].received_at - s["submitted_at"]) * 1000 for s in delivered]
    e2e_polled = [
        (locust["followed"][s["job_id"]]["seen_terminal_at"] - s["submitted_at"]) * 1000
        for s in accepted
        if s["mode"] != "webhook" and (locust["followed"].get(s["job_id"]) or {}).get("seen_terminal_at")
    ]
    server_ms = [
        (parse_time(job["finished_at"]) - parse_time(job["created_at"])).total_seconds() * 1000
        for job in finished.values()
        if job.get("finished_at")
    ]
    succeeded = [job for job in finished.values() if job["status"] == "succeeded" and job.get("finished_at")]
    span = (
        (max(parse_time(j["finished_at"]) for j in succeeded) - min(parse_time(j["created_at"]) for j in succeeded))
        if succeeded
        else None
    )
    statuses: dict[str, dict[str, int]] = locust["statuses"]
    requests = sum(sum(counts.values()) for counts in statuses.values())
    errors = {name: {s: n for s, n in counts.items() if is_error(s)} for name, counts in statuses.items()}
    errors = {name: counts for name, counts in errors.items() if counts}
    refused = sum(1 for s in submissions if s["status"] == 429)
    return {
        "plan": plan.__dict__,
        "wall_s": round(wall_s, 1),
        "requests": requests,
        "submitted": len(submissions),
        "accepted": len(accepted),
        "refused_429": refused,
        "refused_share": round(refused / len(submissions), 3) if submissions else 0.0,
        "submit_answers": dict(by_status),
        "offered_rate_per_s": round(len(submissions) / plan.duration_s, 3),
        "completed_jobs_per_s": round(len(succeeded) / span.total_seconds(), 3) if span else 0.0,
        "outcomes": dict(outcomes),
        "lost_jobs": len(lost),
        "lost_job_ids": lost[:20],
        "webhooks_owed": len(owed),
        "webhooks_delivered": len(delivered),
        "lost_webhooks": len(owed) - len(delivered),
        "duplicate_deliveries": receiver.duplicates,
        "bad_signatures": receiver.bad_signatures,
        "unreadable_deliveries": receiver.unreadable,
        "endpoints": {name: latency_summary(values) for name, values in locust["latencies_ms"].items()},
        "statuses": statuses,
        "errors": errors,
        "submit_202_ms": latency_summary([s["latency_ms"] for s in submissions if s["status"] == 202]),
        "submit_429_ms": latency_summary([s["latency_ms"] for s in submissions if s["status"] == 429]),
        "submit_start_lateness_ms": latency_summary([s["lateness_ms"] for s in submissions]),
        "end_to_end_webhook_ms": latency_summary(e2e_webhook),
        "end_to_end_polled_ms": latency_summary(e2e_polled),
        "server_created_to_finished_ms": latency_summary(server_ms),
    }


def verdicts(report: dict[str, Any]) -> list[tuple[str, bool, bool]]:
    """(what, met, is a correctness failure) for each target."""
    submit_p99 = report["endpoints"].get(SUBMIT, {}).get("p99", math.inf)
    non_429 = {k: v for k, v in report["submit_answers"].items() if not k.startswith(("202", "429"))}
    return [
        ("0 lost jobs", report["lost_jobs"] == 0, True),
        ("0 lost webhooks", report["lost_webhooks"] == 0, True),
        ("0 duplicate deliveries", report["duplicate_deliveries"] == 0, True),
        ("every delivery correctly signed", report["bad_signatures"] == 0 and report["unreadable_deliveries"] == 0,
         True),
        ("no 5xx, timeouts or connection errors", not report["errors"], True),
        (f"the excess refused with 429 only (other submit answers: {non_429 or 'none'})", not non_429, False),
        (f"submit p99 <= {SUBMIT_P99_TARGET_MS:g} ms (measured {submit_p99:g} ms)", submit_p99 <= SUBMIT_P99_TARGET_MS,
         False),
    ]  # fmt: skip


def print_report(report: dict[str, Any]) -> None:
    plan = report["plan"]
    print("\n=== load test report ===")
    print(f"sustainable rate {plan['sustainable_rate']:.2f} jobs/s (calibrated); offered {plan['rate']:.2f} "
          f"submissions/s for {plan['duration_s']:g} s; quota {plan['max_concurrent_jobs']} jobs in flight; "
          f"{plan['users']} users")  # fmt: skip
    print(f"submitted {report['submitted']}, accepted {report['accepted']}, refused with 429 "
          f"{report['refused_429']} ({report['refused_share']:.0%}); answers {report['submit_answers']}")  # fmt: skip
    print(f"throughput: offered {report['offered_rate_per_s']} submissions/s, completed "
          f"{report['completed_jobs_per_s']} jobs/s; {report['requests']} requests in "
          f"{report['wall_s']} s")  # fmt: skip
    print(f"job outcomes: {report['outcomes']}")
    print("latency per endpoint (ms):")
    for name, summary in sorted(report["endpoints"].items()):
        print(f"  {name:<24} {json.dumps(summary)}")
    print(f"  submit 202 only          {json.dumps(report['submit_202_ms'])}")
    print(f"  submit 429 only          {json.dumps(report['submit_429_ms'])}")
    print(f"  submit start lateness    {json.dumps(report['submit_start_lateness_ms'])}  (open-loop schedule slip)")
    print("answers by endpoint and status:")
    for name, counts in sorted(report["statuses"].items()):
        total = sum(counts.values())
        shares = ", ".join(f"{status}: {n} ({n / total:.1%})" for status, n in sorted(counts.items()))
        print(f"  {name:<24} {shares}")
    print("end-to-end job latency (ms):")
    print(f"  submit -> webhook        {json.dumps(report['end_to_end_webhook_ms'])}")
    print(f"  submit -> seen finished  {json.dumps(report['end_to_end_polled_ms'])}  (polling and long-poll users)")
    print(f"  server created->finished {json.dumps(report['server_created_to_finished_ms'])}")
    print(f"lost jobs {report['lost_jobs']}; webhooks owed {report['webhooks_owed']}, delivered "
          f"{report['webhooks_delivered']}, lost {report['lost_webhooks']}; duplicate deliveries "
          f"{report['duplicate_deliveries']}; bad signatures {report['bad_signatures']}")  # fmt: skip
    print("targets:")
    for what, met, _ in verdicts(report):
        print(f"  {'met   ' if met else 'MISSES'} {what}")


# --- main -----------------------------------------------------------------------------------------------------------


def plan_load(args: argparse.Namespace, sustainable: float) -> LoadPlan:
    rate = args.overload * sustainable
    return LoadPlan(
        sustainable_rate=round(sustainable, 4),
        rate=round(rate, 4),
        duration_s=args.duration,
        max_submissions=args.max_submissions or math.ceil(rate * args.duration) + 1,
        users=max(8, math.ceil(rate * 2)),
        max_concurrent_jobs=max(4, math.ceil(sustainable * args.queue_seconds)),
        drain_timeout_s=max(120.0, 4 * args.queue_seconds),
    )


def drain(client: httpx.Client, receiver: WebhookReceiver, locust: dict[str, Any], timeout_s: float) -> dict:
    """Every accepted job's final document; then wait (bounded) for the webhooks owed, plus a short grace for
    late duplicates."""
    accepted = [s for s in locust["submissions"] if s["job_id"]]
    jobs = wait_all_terminal(client, [s["job_id"] for s in accepted], timeout_s)
    owed = {
        s["job_id"]
        for s in accepted
        if s["mode"] == "webhook" and jobs.get(s["job_id"], {}).get("status") in ("succeeded", "failed")
    }
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not owed <= set(receiver.snapshot().first_by_job):
        time.sleep(0.5)
    time.sleep(5.0)  # a grace for duplicates sent late (e.g. by a redelivery sweep)
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 s of load and a small calibration (CI, reports)")
    parser.add_argument("--duration", type=float, help="seconds of load (default 300; 30 with --quick)")
    parser.add_argument("--sustainable-rate", type=float, help="jobs/s the stack sustains (default: calibrate)")
    parser.add_argument("--calibration-jobs", type=int, help="jobs in the calibration burst (default 24; 10 quick)")
    parser.add_argument("--overload", type=float, default=2.0, help="offered rate / sustainable rate (default 2)")
    parser.add_argument("--video-share", type=float, default=0.2, help="share of short videos (default 0.2)")
    parser.add_argument(
        "--queue-seconds", type=float, default=10.0, help="seconds of work the quota admits (default 10)"
    )
    parser.add_argument("--max-submissions", type=int, help="bound on submissions (default: rate x duration)")
    parser.add_argument("--output", type=Path, help="report JSON (default var/reports/loadtest[-quick].json)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the stack's logs")
    args = parser.parse_args(argv)
    args.duration = args.duration or (30.0 if args.quick else 300.0)
    calibration_jobs = args.calibration_jobs or (10 if args.quick else 24)
    output = args.output or REPORTS_DIR / ("loadtest-quick.json" if args.quick else "loadtest.json")

    media = load_media()
    started = time.monotonic()
    with own_stack(args.keep_logs) as svc:
        dev = httpx.Client(base_url=svc.gateway_url, headers={"Authorization": f"Bearer {svc.dev_key}"}, timeout=120)
        print("warming up (the first jobs load the models in each worker)", flush=True)
        warm_up(dev, media)
        sustainable = args.sustainable_rate
        if sustainable is None:
            print(f"calibrating: {calibration_jobs} jobs submitted at once", flush=True)
            sustainable = calibrate(dev, media, calibration_jobs, args.video_share)
        plan = plan_load(args, sustainable)
        tenant_id, api_key = create_load_tenant(svc.redis_url, plan.max_concurrent_jobs)
        client = httpx.Client(base_url=svc.gateway_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=120)
        secret = client.get("/v1/webhooks/secret").raise_for_status().json()["secret"]
        receiver = WebhookReceiver(secret).start()
        try:
            print(f"sustainable {sustainable:.2f} jobs/s -> offering {plan.rate:.2f}/s for {plan.duration_s:g} s "
                  f"(tenant {tenant_id}, quota {plan.max_concurrent_jobs})", flush=True)  # fmt: skip
            locust_output = svc.folder / "locust-output.json"
            load_started = time.monotonic()
            run_locust(svc, plan, api_key, receiver.url, media, args, locust_output)
            if not locust_output.is_file():
                print("error: locust wrote no output", file=sys.stderr)
                return 1
            locust = json.loads(locust_output.read_text())
            print("draining: waiting for every accepted job and its webhook", flush=True)
            jobs = drain(client, receiver, locust, plan.drain_timeout_s)
            report = build_report(plan, locust, jobs, receiver.snapshot(), time.monotonic() - load_started)
        finally:
            receiver.stop()
    report["total_wall_s"] = round(time.monotonic() - started, 1)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"report written to {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    return 1 if any(not met and correctness for _, met, correctness in verdicts(report)) else 0


if __name__ == "__main__":
    sys.exit(main())
