"""SSRF-safe fetching against a real HTTP server on loopback: every refused address class, redirects, limits."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest
from deepfake_jobs.safe_fetch import FetchError, FetchErrorCode, check_url_allowed, fetch_media
from deepfake_jobs.settings import PlatformSettings

from tests.stack.servers import Route, ScriptedHTTPServer

LOOPBACK_ONLY = PlatformSettings(fetch_allowlist=["127.0.0.1"], fetch_read_timeout_s=5)
NO_ALLOWLIST = PlatformSettings(fetch_allowlist=[])


@pytest.fixture(scope="module")
def media_bytes(media_dir) -> bytes:  # noqa: ANN001
    return (media_dir / "sample1.jpg").read_bytes()


@pytest.fixture(scope="module")
def server(media_bytes: bytes) -> ScriptedHTTPServer:
    server = ScriptedHTTPServer().start()
    server.add("/photo.jpg", Route(body=media_bytes, content_type="image/jpeg"))
    yield server
    server.stop()


def refused(url: str, settings: PlatformSettings = NO_ALLOWLIST) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch_media(url, settings, io.BytesIO())
    return caught.value


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",  # loopback
        "127.8.9.10",
        "10.1.2.3",  # private
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "169.254.10.10",  # link-local
        "100.64.0.1",  # CGNAT
        "0.0.0.0",  # unspecified
        "224.0.0.251",  # multicast
        "240.0.0.1",  # reserved
        "[::1]",
        "[fe80::1]",
        "[fc00::1]",  # unique-local
        "[fd00:ec2::254]",  # AWS metadata over IPv6
        "[ff02::1]",  # multicast
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[::ffff:169.254.169.254]",
        "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
        "2130706433",  # 127.0.0.1 in decimal
        "0177.0.0.1",  # octal
        "0x7f.0.0.1",  # hex
        "017700000001",  # whole-address octal
        "localhost",  # a name resolving to loopback
    ],
)
def test_non_public_addresses_are_refused_before_any_request(host: str, server: ScriptedHTTPServer) -> None:
    before = len(server.requests)
    error = refused(f"http://{host}:{server.port}/photo.jpg")
    assert error.code is FetchErrorCode.URL_NOT_ALLOWED
    assert "public" in error.message and not error.transient
    assert len(server.requests) == before, "a refused URL must not be contacted"


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/a.jpg", "file:///etc/passwd", "gopher://example.com/", "http://user:pw@example.com/a.jpg",
     "http:///nohost", "http://example.com:99999/"],
)  # fmt: skip
def test_malformed_or_non_http_urls_are_invalid(url: str) -> None:
    assert refused(url).code is FetchErrorCode.INVALID_URL


def test_allowlisted_loopback_is_fetched_with_hash_size_and_name(
    server: ScriptedHTTPServer, media_bytes: bytes
) -> None:
    dest = io.BytesIO()
    result = fetch_media(server.url("/photo.jpg"), LOOPBACK_ONLY, dest)
    assert dest.getvalue() == media_bytes
    assert result.sha256 == hashlib.sha256(media_bytes).hexdigest()
    assert result.size_bytes == len(media_bytes)
    assert result.content_type == "image/jpeg" and result.filename == "photo.jpg"
    assert result.redirects == [] and result.status_code == 200


def test_the_host_header_is_kept_while_connecting_to_the_vetted_address(server: ScriptedHTTPServer) -> None:
    settings = PlatformSettings(fetch_allowlist=["localhost"])
    vetted = check_url_allowed(f"http://localhost:{server.port}/photo.jpg", settings)
    assert vetted.addresses and all(address in ("127.0.0.1", "::1") for address in vetted.addresses)
    before = len(server.received("/photo.jpg"))
    fetch_media(f"http://localhost:{server.port}/photo.jpg", settings, io.BytesIO())
    assert server.wait_for("/photo.jpg", count=before + 1)[-1].headers["Host"] == f"localhost:{server.port}"


def test_allowlisting_a_cidr_admits_only_that_network(server: ScriptedHTTPServer) -> None:
    settings = PlatformSettings(fetch_allowlist=["127.0.0.0/30"])
    assert check_url_allowed(server.url("/photo.jpg"), settings).addresses == ("127.0.0.1",)
    with pytest.raises(FetchError) as caught:
        check_url_allowed("http://127.0.0.9/", settings)
    assert caught.value.code is FetchErrorCode.URL_NOT_ALLOWED


def test_redirects_are_followed_and_each_hop_is_checked(server: ScriptedHTTPServer, media_bytes: bytes) -> None:
    server.add("/hop2", Route(redirect="/photo.jpg"))
    start = server.add("/hop1", Route(redirect=server.url("/hop2")))
    dest = io.BytesIO()
    result = fetch_media(start, LOOPBACK_ONLY, dest)
    assert dest.getvalue() == media_bytes
    assert result.redirects == [server.url("/hop2"), server.url("/photo.jpg")]
    assert result.final_url == server.url("/photo.jpg")


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::1]/"])
def test_a_redirect_from_an_allowed_server_to_a_private_address_is_refused(
    server: ScriptedHTTPServer, target: str
) -> None:
    start = server.add(f"/to-private-{abs(hash(target))}", Route(redirect=target))
    error = refused(start, LOOPBACK_ONLY)
    assert error.code is FetchErrorCode.URL_NOT_ALLOWED


def test_redirect_loops_stop_at_the_limit(server: ScriptedHTTPServer) -> None:
    loop = server.add("/loop", Route(redirect="/loop"))
    settings = PlatformSettings(fetch_allowlist=["127.0.0.1"], fetch_max_redirects=3)
    before = len(server.received("/loop"))
    assert refused(loop, settings).code is FetchErrorCode.TOO_MANY_REDIRECTS
    # The first request and three redirects (the server records a request after answering it: wait for them).
    assert len(server.wait_for("/loop", count=before + 4)) - before == 4


def test_a_declared_size_over_the_limit_is_refused_before_the_body(server: ScriptedHTTPServer, media_bytes) -> None:  # noqa: ANN001
    settings = PlatformSettings(fetch_allowlist=["127.0.0.1"], max_media_bytes=len(media_bytes) - 1)
    dest = io.BytesIO()
    with pytest.raises(FetchError) as caught:
        fetch_media(server.url("/photo.jpg"), settings, dest)
    assert caught.value.code is FetchErrorCode.MEDIA_TOO_LARGE
    assert dest.getvalue() == b""


def test_an_undeclared_body_is_cut_off_once_it_passes_the_limit(server: ScriptedHTTPServer) -> None:
    body = bytes(3 * 1024 * 1024)
    url = server.add("/no-length.bin", Route(body=body, declare_length=False))
    settings = PlatformSettings(fetch_allowlist=["127.0.0.1"], max_media_bytes=1024 * 1024)
    dest = io.BytesIO()
    with pytest.raises(FetchError) as caught:
        fetch_media(url, settings, dest)
    assert caught.value.code is FetchErrorCode.MEDIA_TOO_LARGE
    assert len(dest.getvalue()) <= 1024 * 1024


def test_a_server_that_stops_sending_times_out(server: ScriptedHTTPServer) -> None:
    release = threading.Event()
    url = server.add("/stalls.bin", Route(body=bytes(100_000), hold=release))
    settings = PlatformSettings(fetch_allowlist=["127.0.0.1"], fetch_read_timeout_s=0.5)
    try:
        error = refused(url, settings)
    finally:
        release.set()
    assert error.code is FetchErrorCode.FETCH_TIMEOUT and error.transient


@pytest.mark.parametrize(("status", "transient"), [(404, False), (403, False), (503, True), (429, True)])
def test_error_statuses_fail_and_say_whether_a_retry_may_help(
    server: ScriptedHTTPServer, status: int, transient: bool
) -> None:
    url = server.add(f"/status-{status}", Route(body=b"no", status=status))
    error = refused(url, LOOPBACK_ONLY)
    assert error.code is FetchErrorCode.FETCH_FAILED and error.transient is transient
    assert str(status) in error.message


def test_an_unresolvable_host_fails_cleanly() -> None:
    error = refused("http://no-such-host.invalid/a.jpg")
    assert error.code is FetchErrorCode.FETCH_FAILED


class TricklingServer:
    """Answers every request with a large declared body sent one byte at a time; counts what it managed to send."""

    def __init__(self, length: int, interval_s: float) -> None:
        import socket

        self.length, self.interval_s, self.sent = length, interval_s, 0
        self.finished = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection:
            connection.recv(65536)
            head = f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {self.length}\r\n\r\n"
            try:
                connection.sendall(head.encode())
                for _ in range(self.length):
                    connection.sendall(b"x")
                    self.sent += 1
                    self.finished.wait(self.interval_s)  # the trickle's pace, not a synchronisation
            except OSError:
                pass  # the client hung up: what the deadline should make it do
        self.finished.set()

    def close(self) -> None:
        self.finished.set()
        self._listener.close()


def test_the_total_fetch_timeout_cuts_off_a_server_that_trickles_bytes() -> None:
    """Each byte arrives well within the read timeout, so only a real total deadline stops the download (the probe
    saw a 1 byte/s server hold a worker until the stage's soft time limit)."""
    trickle = TricklingServer(length=3000, interval_s=0.02)  # 60 s for the whole body
    settings = PlatformSettings(fetch_allowlist=["127.0.0.1"], fetch_read_timeout_s=5, fetch_total_timeout_s=1)
    try:
        with pytest.raises(FetchError) as caught:
            fetch_media(f"http://127.0.0.1:{trickle.port}/slow.jpg", settings, io.BytesIO())
    finally:
        sent = trickle.sent
        trickle.close()
    assert caught.value.code is FetchErrorCode.FETCH_TIMEOUT and caught.value.transient
    assert sent < 3000, "the whole trickle was read: the deadline was not enforced while it ran"
