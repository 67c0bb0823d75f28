"""The load test's webhook receiver: a threaded HTTP server on 127.0.0.1 that checks every delivery's
`Deepfake-Signature` with `deepfake_client.verify_signature` and counts deliveries per event id.

It answers 200 to every delivery (valid or not) so that the platform never retries on its account: any
second delivery of an event id is then a duplicate the platform sent, and any finished job without a
delivery is a lost webhook. Used by loadtests/run_load.py; runs in that process, not under gevent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from deepfake_client.signing import SIGNATURE_HEADER, verify_signature

LOOPBACK = "127.0.0.1"
CALLBACK_PATH = "/hooks/load"


@dataclass(frozen=True)
class Delivery:
    """One delivery as received: its event, its job and when it arrived (time.time())."""

    event_id: str
    event_type: str
    job_id: str
    job_status: str
    received_at: float


@dataclass
class ReceiverCounts:
    """What the receiver saw: deliveries by event id, the first of each job, and refused ones."""

    deliveries: Counter[str] = field(default_factory=Counter)  # event id -> deliveries
    first_by_job: dict[str, Delivery] = field(default_factory=dict)
    bad_signatures: int = 0
    unreadable: int = 0

    @property
    def duplicates(self) -> int:
        """Deliveries beyond the first of each event id."""
        return sum(count - 1 for count in self.deliveries.values() if count > 1)

    @property
    def total(self) -> int:
        return sum(self.deliveries.values())


class WebhookReceiver:
    """Start with `start()`, give the platform `url`, read `snapshot()`; `stop()` at the end."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._counts = ReceiverCounts()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's naming
                return

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.record(self.headers.get(SIGNATURE_HEADER), body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}{CALLBACK_PATH}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, signature: str | None, body: bytes) -> None:
        """Count one delivery; a wrong signature or an unreadable body is counted apart, not as a delivery."""
        received_at = time.time()
        if not verify_signature(self.secret, signature, body):
            with self._lock:
                self._counts.bad_signatures += 1
            return
        try:
            event = json.loads(body)
            delivery = Delivery(event["id"], event["type"], event["job"]["id"], event["job"]["status"], received_at)
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self._counts.unreadable += 1
            return
        with self._lock:
            self._counts.deliveries[delivery.event_id] += 1
            self._counts.first_by_job.setdefault(delivery.job_id, delivery)

    def snapshot(self) -> ReceiverCounts:
        with self._lock:
            return ReceiverCounts(
                Counter(self._counts.deliveries),
                dict(self._counts.first_by_job),
                self._counts.bad_signatures,
                self._counts.unreadable,
            )
