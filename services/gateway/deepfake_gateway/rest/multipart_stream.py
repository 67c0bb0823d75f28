"""Streams the file part of a multipart/form-data request without holding or spooling it whole.

Starlette's form parser writes every file to a temporary file before the route runs, so a 500 MB upload
costs 500 MB of disk and the size limit is only checked afterwards. Here the raw body is parsed as it
arrives: small form fields are collected, and the file part is exposed either as a synchronous reader that
a worker thread hands to `ObjectStore.put_stream` (pulling each chunk from the event loop, so the upload to
object storage proceeds at the pace of the client, with bounded memory), or as an async iterator of chunks.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32


class MultipartError(ValueError):
    """The body is not the multipart form this API expects; the message says what to fix."""


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    content_type: str | None = None
    is_file: bool = False
    data: bytearray = field(default_factory=bytearray)


class MultipartStream:
    """Parses one request body; form fields land in `fields`, the one file part is read with `reader()`."""

    def __init__(
        self,
        content_type: str,
        body: AsyncIterator[bytes],
        *,
        file_field: str = FILE_FIELD,
        stall_timeout_s: float = 60.0,
    ) -> None:
        kind, params = parse_options_header(content_type)
        if kind != b"multipart/form-data" or b"boundary" not in params:
            raise MultipartError("Expected Content-Type multipart/form-data with a boundary.")
        self._body = body
        self._file_field = file_field
        self._stall_timeout_s = stall_timeout_s
        self._parser = MultipartParser(
            params[b"boundary"],
            {
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
            },
        )
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_content_type: str | None = None
        self._part = _Part()
        self._header_name = b""
        self._header_value = b""
        self._file_seen = False
        self._file_done = False
        self._body_done = False
        self._pending = bytearray()  # file bytes parsed but not yet read

    # --- parser callbacks ---

    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._part.headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._part.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise MultipartError('Every form part needs a Content-Disposition header with a "name".')
        self._part.name = options[b"name"].decode("utf-8", "replace")
        if self._part.name == self._file_field:
            if self._file_seen:
                raise MultipartError(f"Send exactly one '{self._file_field}' part; this request has several.")
            self._file_seen = True
            self._part.is_file = True
            raw_filename = options.get(b"filename")
            self.filename = raw_filename.decode("utf-8", "replace") if raw_filename else None
            raw_type = self._part.headers.get(b"content-type")
            self.file_content_type = raw_type.decode("latin-1").strip() if raw_type else None
        elif len(self.fields) >= MAX_FIELDS:
            raise MultipartError(f"Too many form fields (at most {MAX_FIELDS}).")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part.is_file:
            self._pending += data[start:end]
            return
        if len(self._part.data) + (end - start) > MAX_FIELD_BYTES:
            raise MultipartError(f"Form field '{self._part.name}' is longer than {MAX_FIELD_BYTES} bytes.")
        self._part.data += data[start:end]

    def _on_part_end(self) -> None:
        if self._part.is_file:
            self._file_done = True
        else:
            self.fields[self._part.name] = self._part.data.decode("utf-8", "replace")

    # --- feeding ---

    async def _feed_next(self) -> bool:
        """Parse the next chunk of the body; False at its end."""
        if self._body_done:
            return False
        try:
            chunk = await asyncio.wait_for(anext(self._body), self._stall_timeout_s)
        except StopAsyncIteration:
            chunk = b""
        except TimeoutError as error:
            raise MultipartError(f"The upload sent nothing for {self._stall_timeout_s:g} s and was dropped.") from error
        try:
            if chunk:
                self._parser.write(chunk)
                return True
            self._parser.finalize()
        except MultipartParseError as error:
            raise MultipartError(f"The multipart body is malformed: {error}") from error
        self._body_done = True
        if self._file_seen and not self._file_done:
            raise MultipartError("The body ended in the middle of the file part.")
        return False

    async def find_file(self) -> bool:
        """Parse until the file part's data begins (fields before it are collected); False if there is none."""
        while not self._file_seen:
            if not await self._feed_next():
                return False
        return True

    async def drain(self) -> None:
        """Parse the rest of the body (fields after the file part); the file's bytes must have been read."""
        while await self._feed_next():
            if self._pending and not self._file_done:
                raise MultipartError("drain() called before the file part was read")
        self._pending.clear()

    async def file_chunks(self) -> AsyncIterator[bytes]:
        """The file part's bytes, on the event loop."""
        while True:
            if self._pending:
                chunk, self._pending = bytes(self._pending), bytearray()
                yield chunk
            elif self._file_done or not await self._feed_next():
                return

    def reader(self, loop: asyncio.AbstractEventLoop) -> io.RawIOBase:
        """A blocking file object over the file part, for a worker thread; each read pulls from `loop`."""
        return _ThreadReader(self, loop)


class _ThreadReader(io.RawIOBase):
    """read(n) in a worker thread returns up to n bytes, fetching body chunks through the event loop."""

    def __init__(self, stream: MultipartStream, loop: asyncio.AbstractEventLoop) -> None:
        self._stream = stream
        self._loop = loop

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        stream = self._stream
        # Fill up to `size` in one call: minio concatenates what read() returns, so fewer, larger pieces
        # cost less copying than one piece per network chunk.
        while (size < 0 or len(stream._pending) < size) and not stream._file_done:
            if not asyncio.run_coroutine_threadsafe(stream._feed_next(), self._loop).result():
                break
        if size < 0 or size >= len(stream._pending):
            chunk, stream._pending = bytes(stream._pending), bytearray()
        else:
            chunk = bytes(stream._pending[:size])
            del stream._pending[:size]
        return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)
