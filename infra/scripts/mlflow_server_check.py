"""Run the MLflow tracking server as the chart runs it, and the training side's client against it, end to end.

The project's environment has only the MLflow client (mlflow-skinny, in requirements/dev.lock): the server is
the full `mlflow` package, which the chart runs from MLflow's own image. This check installs that package, at
the client's release, into a virtual environment of its own (.cache/mlflow-server; a few minutes the first time),
starts an S3 server (the moto server of the dev stack) and `mlflow server` with the chart's arguments (SQLite
backend store, artifacts proxied to s3://BUCKET/mlflow), then drives it with `deepfake_training.tracking.Tracker`
exactly as `deepfake-train` and `retrain` do: a run with parameters, metrics and an artifact, three registered
versions and the staging/production aliases of retrain's gate. It checks each through the server's API and the
artifact's bytes in the bucket, and prints what it measured.

Run by hand (`make mlflow-check`), not by `make test`: the server's package and its dependencies are ~400 MB.
Exit status 0 when every check passed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SERVER_VENV = Path(os.environ.get("MLFLOW_SERVER_VENV", ROOT / ".cache" / "mlflow-server"))  # reused across runs
BUCKET = "deepfake"
PREFIX = "mlflow"


def client_release() -> str:
    """The MLflow release of the training client: the server runs the same one (as the chart's image tag does)."""
    match = re.search(r"^mlflow-skinny==([\w.]+)$", (ROOT / "requirements" / "dev.lock").read_text(), re.MULTILINE)
    if not match:
        raise SystemExit("requirements/dev.lock pins no mlflow-skinny: nothing to match the server to")
    return match.group(1)


def server_environment(release: str) -> Path:
    """`mlflow` (the server) and boto3 in their own virtual environment; reused when the release matches."""
    mlflow = SERVER_VENV / "bin" / "mlflow"
    marker = SERVER_VENV / "release.txt"
    if mlflow.is_file() and marker.is_file() and marker.read_text() == release:
        return mlflow
    print(f"installing mlflow=={release} (the server) into {SERVER_VENV} ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(SERVER_VENV)
    subprocess.run([str(SERVER_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", f"mlflow=={release}", "boto3"], check=True)  # fmt: skip
    marker.write_text(release)
    return mlflow


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 180.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            raise SystemExit(f"mlflow server exited with status {process.returncode} before it answered")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"mlflow server did not answer {url}/health within {timeout_s:.0f} s")


def check(url: str, s3_endpoint: str, access_key: str, secret_key: str, scratch: Path) -> list[str]:
    """Drive the server with the training side's Tracker; return the failed checks (empty: all passed)."""
    import boto3
    import mlflow
    from deepfake_training.tracking import Tracker

    failures: list[str] = []
    weights = scratch / "model.pt"
    weights.write_bytes(b"weights of the check")
    report = scratch / "summary.json"
    report.write_text('{"held_out_auc": 0.5}')
    tracker = Tracker("mlflow-server-check", "retrain-check", url)
    try:
        tracker.log_params({"input_size": 112, "phase1_steps": 900})
        tracker.log_metrics({"val/frame_auc": 0.73, "time/phase1_s": 2638.0})
        tracker.log_artifact(report)
        first = tracker.register_version(weights, "detector-check", "production", "baseline", {"source": "check"})
        second = tracker.register_version(weights, "detector-check", "staging", "candidate", {"gate": "passed"})
        tracker.set_alias("detector-check", "production", str(second))
        third = tracker.register_version(weights, "detector-check", "staging", "candidate-2", {"gate": "failed"})
        run_id = tracker.run_id
    finally:
        tracker.end("FINISHED")

    client = mlflow.MlflowClient(tracking_uri=url)
    run = client.get_run(run_id)
    if run.data.params.get("phase1_steps") != "900":
        failures.append(f"parameters not on the server: {run.data.params}")
    if run.data.metrics.get("val/frame_auc") != 0.73:
        failures.append(f"metrics not on the server: {run.data.metrics}")
    if (first, second, third) != ("1", "2", "3"):
        failures.append(f"registered versions are {(first, second, third)}, expected 1, 2, 3")
    production = client.get_model_version_by_alias("detector-check", "production")
    staging = client.get_model_version_by_alias("detector-check", "staging")
    if (str(production.version), str(staging.version)) != ("2", "3"):
        failures.append(f"aliases: production {production.version}, staging {staging.version}; expected 2, 3")
    read_back = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=report.name, tracking_uri=url, dst_path=str(scratch / "down")
    )
    downloaded = Path(read_back)
    if downloaded.read_text() != report.read_text():
        failures.append("the artifact read back through the server differs from what was logged")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=access_key,
                      aws_secret_access_key=secret_key, region_name="us-east-1")  # fmt: skip
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents", [])]
    stored = [key for key in keys if key.endswith(f"{run_id}/artifacts/{report.name}")]
    if not stored:
        failures.append(f"no artifact of run {run_id} in s3://{BUCKET}/{PREFIX}: {keys}")
    elif s3.get_object(Bucket=BUCKET, Key=stored[0])["Body"].read() != report.read_bytes():
        failures.append("the artifact's bytes in the bucket differ from what was logged")
    print(f"run {run_id}: {len(run.data.params)} parameters, {len(run.data.metrics)} metrics, "
          f"{len(keys)} objects under s3://{BUCKET}/{PREFIX}/; registry versions {first}, {second}, {third}; "
          f"production -> {production.version}, staging -> {staging.version}")  # fmt: skip
    return failures


def main() -> int:
    from deepfake_devstack import S3Server
    from deepfake_devstack.ports import LOOPBACK, free_port

    release = client_release()
    mlflow_command = server_environment(release)
    with tempfile.TemporaryDirectory() as folder, S3Server() as s3:
        scratch = Path(folder)
        import boto3

        boto3.client("s3", endpoint_url=s3.url, aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)  # fmt: skip
        port = free_port(LOOPBACK)
        url = f"http://{LOOPBACK}:{port}"
        environment = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3.url, "AWS_ACCESS_KEY_ID": s3.access_key,
                       "AWS_SECRET_ACCESS_KEY": s3.secret_key, "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        # The chart's arguments (templates/mlflow-deployment.yaml), on loopback, one worker, SQLite.
        command = [str(mlflow_command), "server", f"--host={LOOPBACK}", f"--port={port}", "--workers=1",
                   f"--backend-store-uri=sqlite:///{scratch}/mlflow.db", "--serve-artifacts",
                   f"--artifacts-destination=s3://{BUCKET}/{PREFIX}",
                   f"--allowed-hosts={LOOPBACK}:{port},localhost:{port}"]  # fmt: skip
        log = (scratch / "server.log").open("wb")
        server = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready_s = wait_healthy(url, server)
            print(f"mlflow server {release} answered /health after {ready_s:.1f} s (SQLite, artifacts in S3)")
            os.environ.update(MLFLOW_S3_ENDPOINT_URL=s3.url, AWS_ACCESS_KEY_ID=s3.access_key,
                              AWS_SECRET_ACCESS_KEY=s3.secret_key)  # fmt: skip
            failures = check(url, s3.url, s3.access_key, s3.secret_key, scratch)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
        if failures:
            print((scratch / "server.log").read_text()[-3000:])
    for failure in failures:
        print(f"FAILED: {failure}")
    print("mlflow-check: every check passed" if not failures else f"mlflow-check: {len(failures)} checks failed")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
