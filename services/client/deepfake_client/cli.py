"""`deepfake-detect submit FILE... [--wait]`: send media to a running service instead of analysing locally.

The core's CLI (deepfake_core.cli) hands `deepfake-detect submit ...` to `main(argv)` here. Exit status:
0 when every job was queued (or, with --wait, succeeded), 1 when a job failed or was canceled, 2 when
the request itself was refused (bad key, bad option, unreachable service).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from deepfake_client.client import ApiError, DeepfakeClient, Job, WaitTimeout

DEFAULT_API_URL = "http://localhost:8000"
EXIT_OK, EXIT_JOB_FAILED, EXIT_ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake-detect submit",
        description="Submit images or videos to a deepfake detection service (files are uploaded; "
        "http(s) URLs are fetched by the service).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="media files, or http(s) URLs of media")
    parser.add_argument(
        "--url",
        default=os.environ.get("DEEPFAKE_API_URL", DEFAULT_API_URL),
        help="the service's base URL (default: $DEEPFAKE_API_URL or %(default)s)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("DEEPFAKE_API_KEY"), help="your API key (default: $DEEPFAKE_API_KEY)"
    )
    parser.add_argument("--wait", action="store_true", help="wait for each job and print its result")
    parser.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--sampling", help="frame sampling: uniform:N, fps:R or windows:K")
    parser.add_argument("--priority", choices=("low", "normal", "high"))
    parser.add_argument("--callback-url", help="receives a signed webhook when each job ends")
    parser.add_argument("--metadata", help="a JSON object echoed back with the job")
    parser.add_argument("--no-explain", action="store_true", help="skip Grad-CAM heatmaps")
    parser.add_argument("--presigned", action="store_true", help="upload through a presigned URL (large files)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.api_key:
        print("error: no API key: pass --api-key or set DEEPFAKE_API_KEY", file=sys.stderr)
        return EXIT_ERROR
    try:
        options = _options(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    reports: list[dict[str, Any]] = []
    status = EXIT_OK
    with DeepfakeClient(args.url, args.api_key) as client:
        for target in args.files:
            try:
                report = _submit_one(client, target, args, options)
            except (ApiError, httpx.HTTPError, OSError, WaitTimeout) as error:
                report = {"file": target, "error": _describe(error)}
                status = EXIT_ERROR
            else:
                if args.wait and report["job"]["status"] != "succeeded":
                    status = max(status, EXIT_JOB_FAILED)
            reports.append(report)
            if not args.json:
                _print_text(report)
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
    return status


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "sampling": args.sampling,
        "priority": args.priority,
        "callback_url": args.callback_url,
        "explain": False if args.no_explain else None,
    }
    if args.metadata:
        try:
            metadata = json.loads(args.metadata)
        except ValueError as error:
            raise ValueError(f"--metadata is not valid JSON: {error}") from error
        if not isinstance(metadata, dict):
            raise ValueError("--metadata must be a JSON object")
        options["metadata"] = metadata
    return {name: value for name, value in options.items() if value is not None}


def _submit_one(
    client: DeepfakeClient, target: str, args: argparse.Namespace, options: dict[str, Any]
) -> dict[str, Any]:
    if target.startswith(("http://", "https://")):
        job = client.submit_url(target, **options)
    elif args.presigned:
        job = client.submit_presigned(target, **options)
    else:
        job = client.submit_file(target, **options)
    report: dict[str, Any] = {"file": target, "job": job.document}
    if not args.wait:
        return report
    progress = None if args.json else _progress_printer(target)
    job = client.wait(job.id, timeout_s=args.timeout, on_update=progress)
    report["job"] = job.document
    if job.status == "succeeded":
        report["result"] = client.result(job.id)
    return report


def _progress_printer(target: str):  # noqa: ANN202 - a small closure
    def show(job: Job) -> None:
        if not job.terminal:
            stage = f" {job.stage}" if job.stage else ""
            print(f"{target}: {job.status}{stage} {job.progress}%", file=sys.stderr)

    return show


def _describe(error: BaseException) -> dict[str, Any]:
    if isinstance(error, ApiError):
        return {"status": error.status, "code": error.code, "detail": error.detail}
    if isinstance(error, WaitTimeout):
        return {"code": "wait_timeout", "detail": str(error), "job_id": error.job.id}
    return {"code": "request_failed", "detail": f"{type(error).__name__}: {error}"}


def _print_text(report: dict[str, Any]) -> None:
    target = report["file"]
    if "error" in report:
        error = report["error"]
        print(f"{target}: error {error['code']}: {error['detail']}", file=sys.stderr)
        return
    job = report["job"]
    line = f"{target}: job {job['id']} {job['status']}"
    if job.get("error"):
        line += f" ({job['error']['code']}: {job['error']['message']})"
    result = report.get("result")
    if result is not None:
        score = "n/a" if result.get("score") is None else f"{result['score']:.3f}"
        faces = len(result.get("tracks", []))
        cached = ", cached" if result.get("cache_hit") else ""
        line += f": verdict {result['verdict']} (score {score}, {faces} face track(s){cached})"
    print(line)


if __name__ == "__main__":
    sys.exit(main())
