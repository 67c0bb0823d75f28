"""The local servers of deepfake_devstack: each one starts, answers real clients, and stops; and the stack CLI
brings a set of them up and down by pid."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
import yaml
from deepfake_devstack import PrometheusServer, RedisServer, S3Server, ServerStartError, free_port
from deepfake_devstack.process import pid_is_alive
from deepfake_devstack.stack import installed_triton_model, parse_env_file, render_prometheus_config

from tests.infra.conftest import PROMETHEUS_DIR

pytestmark = pytest.mark.usefixtures("system_programs")


def wait_for(predicate, timeout_s: float = 20.0, interval_s: float = 0.25):  # noqa: ANN001, ANN201
    """Poll `predicate` until it returns something truthy; that value, or a failure after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def test_the_install_script_is_idempotent(system_programs: dict[str, Path]) -> None:
    """A second run (what `make setup` does every time) changes nothing and reports where the programs are."""
    from deepfake_devstack.binaries import INSTALL_SCRIPT

    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "apt-get" not in result.stderr and "installing" not in result.stderr
    assert f"prometheus={system_programs['prometheus']}" in result.stderr


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # raises OSError when the picked port is taken
        assert sock.getsockname() == ("127.0.0.1", port)


# --- Redis ---


def test_redis_answers_and_stops() -> None:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        client.set("job:1", "queued")
        assert client.get("job:1") == b"queued"
        assert client.config_get("save") == {"save": ""}, "snapshots stay off in tests"
        client.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(server.url, socket_connect_timeout=1).ping()


@pytest.mark.parametrize("appendonly", [True, False])
def test_redis_keeps_data_across_a_restart_only_with_appendonly(tmp_path: Path, appendonly: bool) -> None:
    with RedisServer(appendonly=appendonly, data_dir=tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        client.rpush("preprocess", "task-1", "task-2")
        client.close()
        server.restart()
        client = redis.Redis.from_url(server.url)
        assert client.llen("preprocess") == (2 if appendonly else 0)
        client.close()


def test_a_taken_port_is_refused_before_anything_runs() -> None:
    """Otherwise the readiness check could be answered by the server already on the port."""
    with RedisServer() as first:
        second = RedisServer(port=first.port)
        with pytest.raises(ServerStartError, match=f"127.0.0.1:{first.port} is already in use"):
            second.start()
        assert not second.running
        second.close()


def test_a_failed_start_says_why_with_the_log_tail(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 5s\n")
    server = PrometheusServer(config)
    with pytest.raises(ServerStartError) as raised:
        server.start()
    message = str(raised.value)
    assert "prometheus exited with code" in message
    assert "scrape timeout greater than scrape interval" in message, "the log's tail names the cause"
    assert not server.running
    server.close()


# --- S3 ---


def test_s3_server_is_a_separate_process_serving_the_minio_client() -> None:
    with S3Server() as server:
        assert server.pid != os.getpid()
        assert "moto.server" in Path(f"/proc/{server.pid}/cmdline").read_text()
        client = server.minio_client()
        server.ensure_bucket("media")
        body = os.urandom(256 * 1024)
        client.put_object("media", "uploads/a.bin", io.BytesIO(body), len(body), content_type="video/mp4")
        assert client.stat_object("media", "uploads/a.bin").size == len(body)
        assert client.get_object("media", "uploads/a.bin").read() == body

        # Presigned URLs, as the gateway hands them to clients: PUT (with its Content-Type, see the moto quirk
        # in s3_server's docstring), then GET, over plain HTTP.
        from datetime import timedelta

        put_url = client.presigned_put_object("media", "uploads/b.jpg", expires=timedelta(minutes=5))
        photo = os.urandom(4096)
        assert httpx.put(put_url, content=photo, headers={"Content-Type": "image/jpeg"}).status_code == 200
        get_url = client.presigned_get_object("media", "uploads/b.jpg", expires=timedelta(minutes=5))
        response = httpx.get(get_url)
        assert response.status_code == 200 and response.content == photo
        assert sorted(o.object_name for o in client.list_objects("media", prefix="uploads/")) == [
            "uploads/a.bin",
            "uploads/b.jpg",
        ]
        pid = server.pid
    assert not pid_is_alive(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=2)


# --- Prometheus ---


def test_prometheus_scrapes_and_loads_the_platform_rules(tmp_path: Path) -> None:
    with RedisServer() as redis_server:  # something that is not an HTTP exporter: its target must be down
        port = free_port()
        template = yaml.safe_load((PROMETHEUS_DIR / "prometheus-local.yml").read_text())
        config = render_prometheus_config(
            template,
            {"prometheus": [(f"127.0.0.1:{port}", {})], "triton": [(f"127.0.0.1:{redis_server.port}", {})]},
            PROMETHEUS_DIR / "rules",
        )
        config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        with PrometheusServer(config_path, port) as server:
            samples = wait_for(lambda: server.query('up{job="prometheus"} == 1'))
            assert samples[0]["metric"]["instance"] == f"127.0.0.1:{port}"
            targets = wait_for(
                lambda: (
                    {t["labels"]["job"]: t["health"] for t in server.active_targets() if t["health"] != "unknown"}
                    if len(server.active_targets()) == 2
                    and all(t["health"] != "unknown" for t in server.active_targets())
                    else None
                )
            )
            assert targets == {"prometheus": "up", "triton": "down"}
            groups = server.api_get("rules")["groups"]
            assert {group["name"] for group in groups} == {"deepfake-platform.recording", "deepfake-platform.alerts"}
            # The TritonNotReady alert starts pending as soon as Triton's target is down.
            alerts = wait_for(lambda: server.api_get("alerts")["alerts"])
            assert {alert["labels"]["alertname"] for alert in alerts} == {"TritonNotReady"}
    assert not server.running


# --- the stack command ---


def test_installed_triton_model_picks_the_newest_version_with_a_model(tmp_path: Path) -> None:
    model_dir = tmp_path / "deepfake_detector"
    (model_dir / "1").mkdir(parents=True)
    assert installed_triton_model(tmp_path) is None
    for version in ("1", "2", "10"):
        (model_dir / version).mkdir(exist_ok=True)
        (model_dir / version / "model.onnx").write_bytes(b"onnx")
    (model_dir / "11").mkdir()  # a version folder without its model does not count
    assert installed_triton_model(tmp_path) == model_dir / "10"


def run_stack(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deepfake_devstack.stack", *arguments],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_stack_up_writes_the_env_file_and_down_stops_everything(tmp_path: Path) -> None:
    stack_dir = tmp_path / "stack"
    up = run_stack("up", "--services", "redis,s3,prometheus", "--stack-dir", str(stack_dir))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        env = parse_env_file(stack_dir / "env")
        for name in ("DEEPFAKE_REDIS_URL", "DEEPFAKE_S3_ENDPOINT", "DEEPFAKE_S3_ACCESS_KEY", "DEEPFAKE_S3_SECRET_KEY"):
            assert env[name]
        assert env["DEEPFAKE_INFERENCE_BACKEND"] == "onnxruntime", "no Triton was started"
        from deepfake_jobs.tenants import TenantRegistry, hash_api_key

        tenants = json.loads(Path(env["DEEPFAKE_TENANTS_FILE"]).read_text())["tenants"]
        assert tenants[0]["api_key_sha256"] == hash_api_key(env["DEEPFAKE_API_KEY"]), "a fresh development key"
        assert TenantRegistry.from_file(Path(env["DEEPFAKE_TENANTS_FILE"])).authenticate(env["DEEPFAKE_API_KEY"])
        assert Path(env["PROMETHEUS_MULTIPROC_DIR"]).is_dir()
        assert redis.Redis.from_url(env["DEEPFAKE_REDIS_URL"]).ping()
        endpoint = env["DEEPFAKE_S3_ENDPOINT"].removeprefix("http://")
        from minio import Minio

        s3 = Minio(endpoint, env["DEEPFAKE_S3_ACCESS_KEY"], env["DEEPFAKE_S3_SECRET_KEY"], secure=False)
        assert s3.bucket_exists(env["DEEPFAKE_S3_BUCKET"])
        assert httpx.get(f"{env['DEEPFAKE_PROMETHEUS_URL']}/-/ready").status_code == 200

        status = run_stack("status", "--stack-dir", str(stack_dir))
        assert status.returncode == 0 and status.stdout.count("running") == 3, status.stdout
        again = run_stack("up", "--services", "redis", "--stack-dir", str(stack_dir))
        assert again.returncode == 0 and "already up" in again.stdout
        state = yaml.safe_load((stack_dir / "state.json").read_text())
        pids = [entry["pid"] for entry in state["services"].values()]
    finally:
        down = run_stack("down", "--stack-dir", str(stack_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Stopped 3 service(s)" in down.stdout
    assert not any(pid_is_alive(pid) for pid in pids)
    assert run_stack("status", "--stack-dir", str(stack_dir)).returncode == 3
    assert (stack_dir / "logs" / "redis.log").stat().st_size > 0, "logs stay after down"


def test_stack_refuses_an_unknown_service(tmp_path: Path) -> None:
    result = run_stack("up", "--services", "redis,mysql", "--stack-dir", str(tmp_path))
    assert result.returncode == 2 and "unknown service(s) mysql" in result.stderr


def test_stack_up_serves_an_installed_model_through_triton_to_the_dev_tenant(
    tmp_path: Path, media_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`up` with a model installed in a (temporary) repository: Triton serves it, the gateway admits the printed
    development key, a photo goes through every stage to a result made by that model, and `down` stops it all."""
    from deepfake_client import ApiError, DeepfakeClient
    from deepfake_core.model.export import create_untrained_model
    from deepfake_core.serving.model_repository import install_model

    repository = tmp_path / "model_repository"  # never the real model_repository/
    model = create_untrained_model(tmp_path_factory.mktemp("stack-model") / "untrained112.onnx", input_size=112)
    install_model(model, repository)
    stack_dir = tmp_path / "stack"
    services = "redis,s3,triton,gateway,worker-pipeline,worker-webhooks"
    up = subprocess.run(
        [sys.executable, "-m", "deepfake_devstack.stack", "up", "--services", services,
         "--stack-dir", str(stack_dir), "--model-repository", str(repository)],
        capture_output=True, text=True, timeout=400, check=False,
        env={**os.environ, "DEEPFAKE_ALLOW_UNTRAINED_MODEL": "true"},
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        env = parse_env_file(stack_dir / "env")
        assert env["DEEPFAKE_INFERENCE_BACKEND"] == "triton"
        assert f"API key:  {env['DEEPFAKE_API_KEY']}" in up.stdout
        assert f"Gateway:  {env['DEEPFAKE_GATEWAY_URL']}" in up.stdout
        assert env["DEEPFAKE_API_URL"] == env["DEEPFAKE_GATEWAY_URL"]
        assert (stack_dir / "env").stat().st_mode & 0o077 == 0, "the env file holds a key: owner-only"
        assert env["DEEPFAKE_API_KEY"] not in (stack_dir / "tenants.json").read_text(), "only its hash is stored"

        with DeepfakeClient(env["DEEPFAKE_GATEWAY_URL"], "dfk_not-a-key") as stranger:
            with pytest.raises(ApiError) as refused:
                stranger.list()
            assert refused.value.status == 401
        with DeepfakeClient(env["DEEPFAKE_GATEWAY_URL"], env["DEEPFAKE_API_KEY"]) as client:
            job = client.submit_file(media_dir / "sample1.jpg")
            finished = client.wait(job.id, timeout_s=180)
            assert finished.status == "succeeded", finished.error
            result = client.result(job.id)
        assert result["model"]["input_size"] == 112 and result["tracks"], "the installed model scored the faces"

        state = json.loads((stack_dir / "state.json").read_text())
        worker_metrics = httpx.get(f"{state['services']['worker-pipeline']['url']}/metrics", timeout=10).text
        assert re.search(r'deepfake_inference_duration_seconds_count\{backend="triton"\} [1-9]', worker_metrics)
        triton_metrics = httpx.get(f"http://127.0.0.1:{state['services']['triton']['ports']['metrics']}/metrics").text
        assert re.search(r'nv_inference_request_success\{model="deepfake_detector",version="1"\} [1-9]', triton_metrics)
        pids = [entry["pid"] for entry in state["services"].values()]
    finally:
        down = run_stack("down", "--stack-dir", str(stack_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(pid_is_alive(pid) for pid in pids)


def test_picked_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    """Outgoing connections take their local port from the ephemeral range, so a port picked there could be taken
    before the server binds it; picks stay below it and are never handed out twice."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    picks = [free_port() for _ in range(50)]
    assert len(set(picks)) == len(picks)
    assert all(port < low for port in picks)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", picks[0]))  # still free to bind
