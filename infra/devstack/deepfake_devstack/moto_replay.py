"""`python -m deepfake_devstack.moto_replay --host H --port P --log FILE`: moto's S3 server that first replays its
request log in-process, then listens, so no client can see a half-restored bucket.

moto keeps objects in memory. Its recorder (`MOTO_ENABLE_RECORDING`, which this sets) appends every request, body
included, to FILE; replaying that log rebuilds the objects after a restart. moto's own replay endpoint
(`/moto-api/recorder/replay-recording`) runs while the server already serves requests: a worker retrying through
an S3 outage then finds its objects missing and fails the job (`media_missing`). Here the log is replayed through
a WSGI test client before the port is bound. See deepfake_devstack.s3_server for what a replay does not restore.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def replay(app: Any, log: Path) -> int:
    """Send every recorded request to `app` again (not recorded a second time); returns how many."""
    from moto.moto_api import recorder
    from werkzeug.test import Client

    if not log.is_file():
        return 0
    client = Client(app)
    recorder.stop_recording()
    count = 0
    try:
        with log.open() as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:  # the last line of a server killed mid-write
                    print(f"skipped a torn line of {log}", flush=True)
                    continue
                body = entry.get("body") or b""
                if entry.get("body_encoded"):
                    body = base64.b64decode(body)
                elif isinstance(body, str):
                    body = body.encode()
                url = urlsplit(entry["url"])
                headers = {k: v for k, v in entry["headers"].items() if k.lower() != "transfer-encoding"}
                client.open(url.path, method=entry["method"], query_string=url.query, headers=headers, data=body)
                count += 1
    finally:
        recorder.start_recording()
    return count


def serialise_recording() -> None:
    """moto's recorder appends each request with two unlocked writes from many server threads, so concurrent
    requests interleave into lines no replay can parse; one lock around it keeps one request per line."""
    from moto.moto_api import recorder

    record, lock = recorder._record_request, threading.Lock()

    def locked(*args: Any, **kwargs: Any) -> None:
        with lock:
            record(*args, **kwargs)

    recorder._record_request = locked  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deepfake_devstack.moto_replay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True, help="the request log (appended to, replayed at start)")
    args = parser.parse_args(argv)
    os.environ["MOTO_ENABLE_RECORDING"] = "true"
    os.environ["MOTO_RECORDER_FILEPATH"] = str(args.log)
    os.environ.setdefault("MOTO_PORT", str(args.port))

    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    serialise_recording()
    replayed = replay(app, args.log)
    print(f"replayed {replayed} recorded requests from {args.log}", flush=True)
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
