"""The local stack keeps its data like production does: Redis with the append-only file, and the S3 server's objects
across a restart (moto replaying its request log; see deepfake_devstack.s3_server for what that does not cover)."""

from __future__ import annotations

import io
from pathlib import Path

import redis
from deepfake_devstack import RedisServer, S3Server


def test_redis_with_a_data_dir_runs_with_aof_and_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path / "redis") as server:
        assert server.appendonly, "a data dir means the append-only file, as compose and the chart run Redis"
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.set("job", "still here")
        client.close()
        server.restart()
        assert redis.Redis.from_url(server.url).get("job") == b"still here"
    assert not RedisServer().appendonly, "test fixtures without a data dir write nothing"


def test_the_s3_server_keeps_its_objects_across_a_restart(tmp_path: Path) -> None:
    with S3Server(replay_dir=tmp_path / "s3") as server:
        client = server.minio_client()
        client.make_bucket("kept")
        client.put_object("kept", "uploads/t/j/media", io.BytesIO(b"\xff\xd8\xffmedia"), 8, content_type="image/jpeg")
        client.put_object("kept", "jobs/j/job.json", io.BytesIO(b"{}"), 2, content_type="application/json")
        client.put_object("kept", "gone.txt", io.BytesIO(b"x"), 1)
        client.remove_object("kept", "gone.txt")
        server.restart()
        client = server.minio_client()
        keys = sorted(item.object_name for item in client.list_objects("kept", recursive=True))
        assert keys == ["jobs/j/job.json", "uploads/t/j/media"]
        assert client.get_object("kept", "uploads/t/j/media").read() == b"\xff\xd8\xffmedia"
        server.restart()  # a second restart replays the same log once, not twice
        assert sorted(item.object_name for item in server.minio_client().list_objects("kept", recursive=True)) == keys
    with S3Server() as memory_only:
        assert memory_only.replay_log is None


def test_objects_written_in_parallel_all_survive_a_restart(tmp_path: Path) -> None:
    """moto's recorder is not thread-safe on its own: parallel requests used to interleave into a log that no
    longer replayed (deepfake_devstack.moto_replay serialises it)."""
    from concurrent.futures import ThreadPoolExecutor

    with S3Server(replay_dir=tmp_path / "s3") as server:
        server.minio_client().make_bucket("parallel")

        def put(index: int) -> None:
            body = bytes([index]) * 50_000
            server.minio_client().put_object("parallel", f"objects/{index}", io.BytesIO(body), len(body))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(32)))
        server.restart()
        client = server.minio_client()
        assert len(list(client.list_objects("parallel", prefix="objects/", recursive=True))) == 32
        assert client.get_object("parallel", "objects/7").read() == bytes([7]) * 50_000
