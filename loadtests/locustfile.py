"""Locust load of the gateway: webhook-driven submissions, polling clients and long-poll clients, with a mix
of real photos and short real videos, at a fixed open-loop submission rate (2x the sustainable rate when
started by loadtests/run_load.py, which also starts the stack, the webhook receiver and reads the results).

Run alone against a running gateway (loopback only):

    LOADTEST_API_KEY=... LOADTEST_SUBMIT_RATE=2 LOADTEST_PHOTOS=a.jpg:b.jpg LOADTEST_CLIPS=c.mp4 \
        locust -f loadtests/locustfile.py --headless -u 12 -r 12 -t 60s --host http://127.0.0.1:8000

Submissions are paced by one schedule shared by every user (submission i is due at start + i / rate), so
slow answers cannot lower the offered rate; polling and long-polling run in their own greenlets beside it.
It stops by itself: after `-t`, or once LOADTEST_MAX_SUBMISSIONS were sent and every followed job finished.
At the end it writes LOADTEST_OUTPUT (JSON): every submission, and every request's latency and status.
"""

from __future__ import annotations

import json
import os
import random
import struct
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import HttpUser, between, events, task
from locust.env import Environment
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING, WorkerRunner

TERMINAL = ("succeeded", "failed", "canceled")
SUBMIT = "POST /v1/jobs"
POLL = "GET /v1/jobs/{id}"
LONG_POLL = "GET /v1/jobs/{id}?wait"
# 429 is the expected refusal of the excess; anything else but 2xx is an error.
ACCEPTED_STATUSES = (200, 202, 429)
STOPPED_STATES = (STATE_STOPPING, STATE_STOPPED, STATE_CLEANUP)


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"loadtests/locustfile.py needs {name} (see its docstring)")
    return value


def _paths(name: str) -> list[Path]:
    return [Path(part) for part in _env(name, "").split(os.pathsep) if part]


class Config:
    """Everything the run is told through the environment, read once."""

    def __init__(self) -> None:
        self.api_key = _env("LOADTEST_API_KEY")
        self.rate = float(_env("LOADTEST_SUBMIT_RATE"))
        self.max_submissions = int(_env("LOADTEST_MAX_SUBMISSIONS", "100000"))
        self.submit_seconds = float(_env("LOADTEST_SUBMIT_SECONDS", "1e9"))
        self.callback_url = os.environ.get("LOADTEST_CALLBACK_URL") or None
        self.video_share = float(_env("LOADTEST_VIDEO_SHARE", "0.2"))
        self.poll_interval_s = float(_env("LOADTEST_POLL_INTERVAL_S", "1.0"))
        self.long_poll_wait_s = float(_env("LOADTEST_LONG_POLL_WAIT_S", "10"))
        self.follow_timeout_s = float(_env("LOADTEST_FOLLOW_TIMEOUT_S", "300"))
        self.output = Path(_env("LOADTEST_OUTPUT", "var/loadtest/locust-output.json"))
        self.photos = [(path.name, path.read_bytes()) for path in _paths("LOADTEST_PHOTOS")]
        self.clips = [(path.name, path.read_bytes()) for path in _paths("LOADTEST_CLIPS")]
        if not self.photos:
            raise SystemExit("LOADTEST_PHOTOS names no photo")


CONFIG: Config | None = None


def config() -> Config:
    global CONFIG
    if CONFIG is None:
        CONFIG = Config()
    return CONFIG


class Schedule:
    """The shared open-loop schedule: `next_slot()` gives a submission its due time, or None when done."""

    def __init__(self, rate: float, limit: int, seconds: float) -> None:
        self.rate, self.limit, self.seconds = rate, limit, seconds
        self.start: float | None = None
        self.issued = 0
        self.exhausted = False

    def next_slot(self) -> float | None:
        now = time.monotonic()
        if self.start is None:
            self.start = now + 0.2
        due = self.start + self.issued / self.rate
        if self.issued >= self.limit or due - self.start >= self.seconds:
            self.exhausted = True
            return None
        self.issued += 1
        return due


class Recorder:
    """Every request's latency and status by endpoint name, and every submission, for the run's report."""

    def __init__(self) -> None:
        self.latencies_ms: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.submissions: list[dict[str, Any]] = []
        self.followed: dict[str, dict[str, Any]] = {}
        self.followers = 0

    def request(self, name: str, response_time: float, status: str) -> None:
        self.latencies_ms[name].append(response_time)
        self.statuses[name][status] += 1

    def document(self) -> dict[str, Any]:
        return {
            "latencies_ms": self.latencies_ms,
            "statuses": {name: dict(counts) for name, counts in self.statuses.items()},
            "submissions": self.submissions,
            "followed": self.followed,
        }


SCHEDULE: Schedule | None = None
RECORDER = Recorder()


@events.test_start.add_listener
def _on_start(environment: Environment, **_: Any) -> None:
    global SCHEDULE
    cfg = config()
    host = urlsplit(environment.host or "").hostname or ""
    if not host.startswith("127.") and host != "localhost":
        raise SystemExit(f"the load test runs on loopback only; --host {environment.host} is not")
    SCHEDULE = Schedule(cfg.rate, cfg.max_submissions, cfg.submit_seconds)


def stop_when_done(environment: Environment) -> None:
    """End the run once every submission was sent and answered and no job is followed any more (or at `-t`)."""
    while environment.runner is not None and environment.runner.state not in STOPPED_STATES:
        gevent.sleep(1.0)
        done = SCHEDULE is not None and SCHEDULE.exhausted and len(RECORDER.submissions) >= SCHEDULE.issued
        if done and RECORDER.followers == 0:
            environment.runner.quit()
            return


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(stop_when_done, environment)


@events.request.add_listener
def _on_request(name: str, response_time: float, response: Any, exception: BaseException | None, **_: Any) -> None:
    status = type(exception).__name__ if exception is not None and response is None else str(response.status_code)
    if status == "0" and exception is not None:  # a connection error or timeout reported with an empty response
        status = type(exception).__name__
    RECORDER.request(name, response_time, status)


@events.test_stop.add_listener
def _on_stop(environment: Environment, **_: Any) -> None:
    cfg = config()
    cfg.output.parent.mkdir(parents=True, exist_ok=True)
    cfg.output.write_text(json.dumps(RECORDER.document()) + "\n")


def unique_photo(photo: bytes) -> bytes:
    """JPEG and PNG decoders stop at their end marker: a random tail changes the hash (no cache hit), not the image."""
    return photo + uuid.uuid4().bytes


def unique_clip(clip: bytes) -> bytes:
    """An MP4 `free` box with random content appended (every demuxer skips it)."""
    payload = uuid.uuid4().bytes
    return clip + struct.pack(">I", 8 + len(payload)) + b"free" + payload


class Submitter(HttpUser):
    """Base: take the next slot of the shared schedule, submit a photo or a clip, then follow the job."""

    abstract = True
    wait_time = between(0, 0)
    mode = "webhook"

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {config().api_key}"

    @task
    def submit_one(self) -> None:
        assert SCHEDULE is not None
        due = SCHEDULE.next_slot()
        if due is None:
            self.idle_until_followers_finish()
            return
        gevent.sleep(max(0.0, due - time.monotonic()))
        job_id = self.submit(due)
        if job_id is not None:
            self.follow_in_background(job_id)

    def submit(self, due: float) -> str | None:
        cfg = config()
        is_video = bool(cfg.clips) and random.random() < cfg.video_share
        name, data = random.choice(cfg.clips) if is_video else random.choice(cfg.photos)
        body = unique_clip(data) if is_video else unique_photo(data)
        content_type = "video/mp4" if is_video else ("image/png" if name.endswith(".png") else "image/jpeg")
        fields = {"callback_url": cfg.callback_url} if self.mode == "webhook" and cfg.callback_url else {}
        lateness_ms = (time.monotonic() - due) * 1000
        submitted_at = time.time()
        with self.client.post(
            "/v1/jobs",
            files={"file": (name, body, content_type)},
            data=fields,
            name=SUBMIT,
            catch_response=True,
            timeout=60,
        ) as response:
            job_id = response.json().get("id") if response.status_code == 202 else None
            code = None
            if response.status_code >= 400:
                try:
                    code = response.json().get("code")
                except ValueError:
                    code = None
            if response.status_code in ACCEPTED_STATUSES:
                response.success()
            else:
                response.failure(f"{response.status_code} {code}")
        RECORDER.submissions.append(
            {
                "job_id": job_id,
                "status": response.status_code,
                "code": code,
                "mode": self.mode,
                "media": "video" if is_video else "photo",
                "submitted_at": submitted_at,
                "latency_ms": response.elapsed.total_seconds() * 1000 if response.status_code else None,
                "lateness_ms": lateness_ms,
                "retry_after": response.headers.get("Retry-After"),
            }
        )
        return job_id

    def follow_in_background(self, job_id: str) -> None:
        """Webhook users wait for the webhook (counted by the receiver); the others follow through the API."""

    def idle_until_followers_finish(self) -> None:
        """The schedule is done: nothing left to submit (`stop_when_done` ends the run)."""
        gevent.sleep(1.0)

    def followed(self, job_id: str, job: dict[str, Any] | None, started: float) -> None:
        RECORDER.followed[job_id] = {
            "mode": self.mode,
            "status": job.get("status") if job else None,
            "seen_terminal_at": time.time() if job and job.get("status") in TERMINAL else None,
            "followed_s": time.monotonic() - started,
        }


class WebhookUser(Submitter):
    """Submits with a callback URL and never polls: the receiver of run_load.py sees the result."""

    weight = 2
    mode = "webhook"


class PollingUser(Submitter):
    """Submits, then polls GET /v1/jobs/{id} every LOADTEST_POLL_INTERVAL_S until the job is finished."""

    weight = 1
    mode = "poll"

    def follow_in_background(self, job_id: str) -> None:
        gevent.spawn(self._follow, job_id)

    def _follow(self, job_id: str) -> None:
        RECORDER.followers += 1
        started = time.monotonic()
        job: dict[str, Any] | None = None
        try:
            while time.monotonic() - started < config().follow_timeout_s:
                job = self.read(job_id, {})
                if job is not None and job.get("status") in TERMINAL:
                    break
                gevent.sleep(config().poll_interval_s)
        finally:
            RECORDER.followers -= 1
            self.followed(job_id, job, started)

    def read(self, job_id: str, params: dict[str, Any]) -> dict[str, Any] | None:
        name = LONG_POLL if params else POLL
        with self.client.get(f"/v1/jobs/{job_id}", params=params, name=name, catch_response=True, timeout=60) as r:
            if r.status_code in ACCEPTED_STATUSES:
                r.success()
            else:
                r.failure(str(r.status_code))
            return r.json() if r.status_code == 200 else None


class LongPollUser(PollingUser):
    """Submits, then long-polls GET /v1/jobs/{id}?wait=S (the gateway answers when the status changes)."""

    weight = 1
    mode = "long_poll"

    def _follow(self, job_id: str) -> None:
        RECORDER.followers += 1
        started = time.monotonic()
        job: dict[str, Any] | None = None
        try:
            while time.monotonic() - started < config().follow_timeout_s:
                job = self.read(job_id, {"wait": config().long_poll_wait_s})
                if job is not None and job.get("status") in TERMINAL:
                    break
                if job is None:
                    gevent.sleep(config().poll_interval_s)  # refused (429): back off like a polling client
        finally:
            RECORDER.followers -= 1
            self.followed(job_id, job, started)
