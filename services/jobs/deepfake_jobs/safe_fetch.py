"""HTTP(S) to user-supplied URLs without SSRF: media downloads and webhook deliveries both go through here.

Every hop is vetted: the host is resolved once, every address it resolves to must be publicly routable (unless
allow-listed), and the connection goes to that vetted address with the original Host header and TLS SNI, so a
second DNS answer (rebinding) can never redirect it inward. Redirects are followed by hand and vetted again.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from deepfake_jobs.settings import PlatformSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_SIZE = 256 * 1024  # what a fetch used to wait for before checking its deadline (see `_stream_body`)
USER_AGENT = "deepfake-platform/0.1 (+media fetch)"

# Instance-metadata endpoints of cloud providers: named in refusals because they are the classic SSRF target.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "fd00:ec2::23")
)
CGNAT_NETWORK = ipaddress.ip_network("100.64.0.0/10")
NAT64_NETWORK = ipaddress.ip_network("64:ff9b::/96")


class FetchErrorCode(StrEnum):
    INVALID_URL = "invalid_url"
    URL_NOT_ALLOWED = "url_not_allowed"
    FETCH_FAILED = "fetch_failed"
    FETCH_TIMEOUT = "fetch_timeout"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    MEDIA_TOO_LARGE = "media_too_large"


class FetchError(Exception):
    """A URL that was refused or could not be fetched; `transient` errors are worth another try later."""

    def __init__(self, code: FetchErrorCode, message: str, *, transient: bool = False) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.transient = transient

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


@dataclass(frozen=True)
class VettedURL:
    """A URL whose host resolved only to allowed addresses; requests go to `addresses[0]`."""

    url: str
    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def connect_url(self, address: str | None = None) -> str:
        """The URL with a vetted address (the first by default) in place of the host name."""
        address = address or self.addresses[0]
        if address not in self.addresses:
            raise ValueError(f"{address} is not one of the vetted addresses of {self.host}")
        literal = f"[{address}]" if ":" in address else address
        return f"{self.scheme}://{literal}:{self.port}{self.target}"


@dataclass
class FetchResult:
    url: str
    final_url: str
    status_code: int
    content_type: str | None
    size_bytes: int
    sha256: str
    filename: str | None
    redirects: list[str] = field(default_factory=list)


# --- address rules ----------------------------------------------------------------------------------------------


def blocked_reason(address: IPAddress) -> str | None:
    """Why requests to `address` are refused, or None when it is publicly routable."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is None and address in NAT64_NETWORK:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = blocked_reason(embedded)
            return f"{reason} (embedded in {address})" if reason else None
    if address in METADATA_ADDRESSES:
        return "a cloud instance-metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT_NETWORK:
        return "a carrier-grade NAT (shared) address"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return "a unique-local address"
    if address.is_private:
        return "a private-network address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "an address that is not publicly routable"
    return None


def _allowlisted_host(host: str, settings: PlatformSettings) -> bool:
    return host.lower() in settings.fetch_allowlist


def _allowlisted_address(address: IPAddress, settings: PlatformSettings) -> bool:
    for entry in settings.fetch_allowlist:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:  # a host name entry
            continue
    return False


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise FetchError(FetchErrorCode.FETCH_FAILED, f"could not resolve host {host!r}: {error}") from error
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError(FetchErrorCode.FETCH_FAILED, f"host {host!r} has no address")
    return addresses


def check_url_allowed(url: str, settings: PlatformSettings) -> VettedURL:
    """Parse, resolve and vet `url`; raises `FetchError` (invalid_url, url_not_allowed, fetch_failed).

    Used for media URLs, for `callback_url` at submission (gateway) and again at each webhook delivery.
    Numeric host forms (2130706433, 0177.0.0.1, 0x7f.1) resolve to the address they denote and are
    judged by it.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise FetchError(FetchErrorCode.INVALID_URL, f"{url!r} is not a valid URL: {error}") from error
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(FetchErrorCode.INVALID_URL, f"only http and https URLs are accepted, not {scheme or 'none'!r}")
    if parts.username is not None or parts.password is not None:
        raise FetchError(FetchErrorCode.INVALID_URL, "URLs with credentials (user:password@) are not accepted")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchError(FetchErrorCode.INVALID_URL, f"{url!r} has no host")
    if any(ch.isspace() for ch in host) or "%" in host:
        raise FetchError(FetchErrorCode.INVALID_URL, f"{url!r} has an invalid host")
    port = port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    addresses = _resolve(host, port)
    if not _allowlisted_host(host, settings):
        for text in addresses:
            address = ipaddress.ip_address(text)
            if _allowlisted_address(address, settings):
                continue
            reason = blocked_reason(address)
            if reason is not None:
                subject = f"{host} is" if host == text else f"{host} resolves to {text},"
                raise FetchError(
                    FetchErrorCode.URL_NOT_ALLOWED,
                    f"{subject} {reason}; only public addresses can be reached (ask an operator to allow-list it)",
                )
    return VettedURL(url=url, scheme=scheme, host=host, port=port, target=target, addresses=tuple(addresses))


# --- requests to vetted addresses -------------------------------------------------------------------------------


def vetted_client(settings: PlatformSettings, read_timeout_s: float | None = None) -> httpx.Client:
    """An httpx client that never follows redirects or uses proxies from the environment (both bypass vetting)."""
    timeout = httpx.Timeout(
        connect=settings.fetch_connect_timeout_s,
        read=read_timeout_s or settings.fetch_read_timeout_s,
        write=settings.fetch_read_timeout_s,
        pool=settings.fetch_connect_timeout_s,
    )
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)


def build_vetted_request(
    client: httpx.Client,
    method: str,
    vetted: VettedURL,
    *,
    address: str | None = None,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Request:
    """A request to a vetted address, carrying the original Host header and TLS SNI / certificate name."""
    request_headers = {"Host": vetted.host_header, "User-Agent": USER_AGENT, **(headers or {})}
    extensions = {"sni_hostname": vetted.host} if vetted.scheme == "https" else {}
    return client.build_request(
        method, vetted.connect_url(address), headers=request_headers, content=content, extensions=extensions
    )


def send_vetted(
    client: httpx.Client,
    method: str,
    vetted: VettedURL,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    stream: bool = False,
) -> httpx.Response:
    """Send to the vetted addresses in resolver order, moving on only when one refuses the connection."""
    for index, address in enumerate(vetted.addresses):
        request = build_vetted_request(client, method, vetted, address=address, headers=headers, content=content)
        try:
            return client.send(request, stream=stream)
        except httpx.ConnectError:
            if index == len(vetted.addresses) - 1:
                raise
    raise AssertionError("unreachable: a vetted URL has at least one address")  # pragma: no cover


def _filename(response: httpx.Response, url: str) -> str | None:
    disposition = response.headers.get("content-disposition", "")
    match = re.search(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)\"?", disposition, flags=re.IGNORECASE)
    if match:
        name = unquote(match.group(1)).strip()
    else:
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:255] or None


def fetch_media(url: str, settings: PlatformSettings, dest: BinaryIO) -> FetchResult:
    """Download `url` into `dest` under the SSRF rules, size limit and timeouts of `settings`.

    Raises `FetchError`: invalid_url / url_not_allowed (refused, nothing was sent), too_many_redirects,
    media_too_large (Content-Length or streamed bytes past `max_media_bytes`), fetch_timeout (connect, read
    or total), fetch_failed (DNS, connection, non-2xx status; 5xx/429/connection errors are `transient`).
    """
    deadline = time.monotonic() + settings.fetch_total_timeout_s
    current = url
    redirects: list[str] = []
    # No single read may wait past the total deadline either: the deadline is then overrun by one read at most.
    with vetted_client(
        settings, read_timeout_s=min(settings.fetch_read_timeout_s, settings.fetch_total_timeout_s)
    ) as client:
        while True:
            vetted = check_url_allowed(current, settings)
            try:
                response = send_vetted(client, "GET", vetted, headers={"Accept": "*/*"}, stream=True)
            except httpx.TimeoutException as error:
                raise FetchError(
                    FetchErrorCode.FETCH_TIMEOUT, f"{vetted.host} did not answer in time: {error}", transient=True
                ) from error
            except httpx.HTTPError as error:
                raise FetchError(
                    FetchErrorCode.FETCH_FAILED, f"could not connect to {vetted.host}: {error}", transient=True
                ) from error
            try:
                if response.status_code in REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(
                            FetchErrorCode.FETCH_FAILED, f"{vetted.host} redirected without a Location header"
                        )
                    if len(redirects) >= settings.fetch_max_redirects:
                        raise FetchError(
                            FetchErrorCode.TOO_MANY_REDIRECTS,
                            f"more than {settings.fetch_max_redirects} redirects starting at {url}",
                        )
                    current = urljoin(current, location)
                    redirects.append(current)
                    continue
                if not 200 <= response.status_code < 300:
                    raise FetchError(
                        FetchErrorCode.FETCH_FAILED,
                        f"{vetted.host} answered HTTP {response.status_code} for {current}",
                        transient=response.status_code >= 500 or response.status_code == 429,
                    )
                size, digest = _stream_body(response, dest, settings.max_media_bytes, deadline, vetted.host)
                return FetchResult(
                    url=url,
                    final_url=current,
                    status_code=response.status_code,
                    content_type=response.headers.get("content-type"),
                    size_bytes=size,
                    sha256=digest,
                    filename=_filename(response, current),
                    redirects=redirects,
                )
            finally:
                response.close()


def _stream_body(
    response: httpx.Response, dest: BinaryIO, max_bytes: int, deadline: float, host: str
) -> tuple[int, str]:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(
            FetchErrorCode.MEDIA_TOO_LARGE, f"{host} announces {declared} bytes; the limit is {max_bytes} bytes"
        )
    digest = hashlib.sha256()
    size = 0
    try:
        # Whatever each read returns, not fixed-size chunks: httpx would hold bytes back until CHUNK_SIZE of them
        # arrived, so a server trickling one byte a second was never checked against the total deadline.
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(FetchErrorCode.MEDIA_TOO_LARGE, f"the media from {host} exceeds {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise FetchError(
                    FetchErrorCode.FETCH_TIMEOUT, f"downloading from {host} took too long; stopped", transient=True
                )
            digest.update(chunk)
            dest.write(chunk)
    except httpx.TimeoutException as error:
        message = f"{host} stopped sending data: {error}"
        raise FetchError(FetchErrorCode.FETCH_TIMEOUT, message, transient=True) from error
    except httpx.HTTPError as error:
        message = f"download from {host} broke off: {error}"
        raise FetchError(FetchErrorCode.FETCH_FAILED, message, transient=True) from error
    return size, digest.hexdigest()
