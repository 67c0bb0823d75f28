"""Workers spread their Triton requests over every replica a name resolves to (the chart's headless Service).

Two real gRPC servers speak Triton's protocol (tritonclient's own service definition) on two loopback
addresses; the client gets one target naming both, as DNS names every ready pod behind a headless Service.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
import tritonclient.grpc as grpcclient
from deepfake_core.inference.triton_backend import channel_options
from deepfake_devstack.ports import free_port
from tritonclient.grpc import service_pb2, service_pb2_grpc

ADDRESSES = ("127.0.0.1", "127.0.0.2")


class CountingTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, name: str, calls: Counter) -> None:
        self.name, self.calls, self.lock = name, calls, threading.Lock()

    def ServerLive(self, request, context):  # noqa: N802 - the protocol's name
        with self.lock:
            self.calls[self.name] += 1
        return service_pb2.ServerLiveResponse(live=True)


@pytest.fixture
def two_replicas() -> Iterator[tuple[str, Counter]]:
    port, calls, servers = free_port(), Counter(), []
    for address in ADDRESSES:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(CountingTriton(address, calls), server)
        server.add_insecure_port(f"{address}:{port}")
        server.start()
        servers.append(server)
    try:
        yield f"ipv4:{ADDRESSES[0]}:{port},{ADDRESSES[1]}:{port}", calls
    finally:
        for server in servers:
            server.stop(grace=None)


def test_requests_are_spread_over_every_replica(two_replicas: tuple[str, Counter]) -> None:
    target, calls = two_replicas
    client = grpcclient.InferenceServerClient(target, channel_args=channel_options())
    try:
        for _ in range(40):
            assert client.is_server_live()
    finally:
        client.close()
    assert set(calls) == set(ADDRESSES), calls
    assert min(calls.values()) >= 10, f"round robin should share the load, got {dict(calls)}"


def test_without_round_robin_one_replica_takes_everything(two_replicas: tuple[str, Counter]) -> None:
    """The control: gRPC's default policy, which the chart's headless Service alone would not fix."""
    target, calls = two_replicas
    client = grpcclient.InferenceServerClient(target)
    try:
        for _ in range(40):
            assert client.is_server_live()
    finally:
        client.close()
    assert sorted(calls.values()) == [40]


def test_channel_options_keep_tritonclients_message_limits() -> None:
    options = dict(channel_options())
    assert options["grpc.max_receive_message_length"] == grpcclient.MAX_GRPC_MESSAGE_SIZE
    assert options["grpc.lb_policy_name"] == "round_robin"
