"""Open a media source and read only its header: what it is, how big, how long, and whether it is allowed.

Every limit in CoreSettings is checked here, before any pixel is decoded, so an oversized or hostile
upload costs a header read, not a decode.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import av
import av.container
import av.stream
import av.video.stream
from PIL import Image, UnidentifiedImageError

from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.frames import MediaProbe, MediaSource
from deepfake_core.media.sniff import SNIFF_BYTES, sniff_format
from deepfake_core.result import MediaType
from deepfake_core.settings import CoreSettings

# Pillow plugin for each sniffed image format: Pillow may only parse what the sniffer recognised.
PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP"}
# FFmpeg demuxer for each sniffed container. Naming it stops FFmpeg from probing other formats itself
# (some, like HLS playlists, would open further files or URLs named inside the upload).
DEMUXERS = {"mp4": "mov", "mov": "mov", "webm": "matroska", "mkv": "matroska", "avi": "avi"}
# Frame rate assumed when a stream declares none; only used to space samples in time.
FALLBACK_FPS = 25.0

# Exceptions Pillow raises for damaged or truncated files.
PILLOW_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError)


def probe_media(source: MediaSource, settings: CoreSettings) -> MediaProbe:
    """Identify `source` by content, read its header, enforce the size and length limits, then hash it.

    Width and height are the stored size; a loaded frame may be turned by EXIF orientation or a
    video display matrix (LoadedMedia.probe carries the displayed size). Raises DetectionError.
    """
    size = source_size(source)
    if size > settings.max_file_bytes:
        raise DetectionError(
            ErrorCode.FILE_TOO_LARGE,
            f"The file is {_megabytes(size)}; the limit is {_megabytes(settings.max_file_bytes)}. "
            "Send a shorter or more compressed file.",
        )
    media_type, kind = sniff_format(read_head(source))
    if media_type is MediaType.IMAGE:
        return _probe_image(source, kind, size, settings)
    return _probe_video(source, kind, size, settings)


# --------------------------------------------------------------------------------------------------
# Sources: a path on disk or the file's bytes
# --------------------------------------------------------------------------------------------------


def source_size(source: MediaSource) -> int:
    """Size in bytes, without reading a path into memory. A missing path raises FileNotFoundError."""
    return len(source) if isinstance(source, bytes) else Path(source).stat().st_size


def read_head(source: MediaSource, size: int = SNIFF_BYTES) -> bytes:
    if isinstance(source, bytes):
        return source[:size]
    with open(source, "rb") as file:
        return file.read(size)


def source_sha256(source: MediaSource) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    with open(source, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def as_file(source: MediaSource) -> str | BinaryIO:
    """What PyAV and Pillow open: a path string, or a seekable in-memory file over the bytes."""
    return io.BytesIO(source) if isinstance(source, bytes) else str(source)


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


@contextmanager
def open_image(source: MediaSource, kind: str) -> Iterator[Image.Image]:
    """Pillow's lazy open (header only), restricted to the sniffed format; pixels load on demand.

    Pillow's own decompression-bomb guard is muted here because `max_image_pixels` is the limit we
    enforce; Pillow still refuses above twice its own limit (~179 MP), reported as IMAGE_TOO_LARGE.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(as_file(source), formats=[PILLOW_FORMATS[kind]])
        except Image.DecompressionBombError as error:
            raise DetectionError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"The {kind.upper()} image declares far more pixels than can be analysed ({error}). "
                "Send an image of at most a few tens of megapixels.",
            ) from error
        except PILLOW_DECODE_ERRORS as error:
            raise _corrupt(kind, error) from error
        with image:
            yield image


def _probe_image(source: MediaSource, kind: str, size: int, settings: CoreSettings) -> MediaProbe:
    with open_image(source, kind) as image:
        width, height = image.size
    if width <= 0 or height <= 0:
        raise _corrupt(kind, f"its header gives a size of {width} x {height} pixels")
    if width * height > settings.max_image_pixels:
        raise DetectionError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"The image is {width} x {height} pixels ({_megapixels(width * height)}); the limit is "
            f"{_megapixels(settings.max_image_pixels)}. Downscale it and try again.",
        )
    return MediaProbe(MediaType.IMAGE, kind, size, source_sha256(source), width, height)


# --------------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------------


@contextmanager
def open_video(
    source: MediaSource, kind: str
) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open the container with the sniffed demuxer and pick its video stream (not cover art)."""
    try:
        # Tags are read leniently: one non-UTF-8 byte in a muxer tag must not stop the analysis of the pictures.
        container = av.open(as_file(source), mode="r", format=DEMUXERS[kind], metadata_errors="replace")
    except av.FFmpegError as error:
        raise _corrupt(kind, error) from error
    with container:
        streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            raise DetectionError(
                ErrorCode.UNSUPPORTED_MEDIA,
                f"The {kind.upper()} file has no video track (audio only?); send a video or an image.",
            )
        yield container, streams[0]


def _probe_video(source: MediaSource, kind: str, size: int, settings: CoreSettings) -> MediaProbe:
    with open_video(source, kind) as (container, stream):
        if stream.codec_context is None:
            raise _corrupt(kind, "its video track has no codec description")
        codec = stream.codec_context.name
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise _corrupt(kind, "its video track declares no frame size")
        if width * height > settings.max_frame_pixels:
            raise DetectionError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"The video's frames are {width} x {height} pixels; the limit is "
                f"{_megapixels(settings.max_frame_pixels)} per frame. Re-encode it at a lower resolution.",
            )
        fps = frame_rate(stream)
        duration = _duration_s(container, stream)
        if duration is not None and duration > settings.max_duration_s:
            raise DetectionError(
                ErrorCode.VIDEO_TOO_LONG,
                f"The video lasts {_clock(duration)}; the limit is {_clock(settings.max_duration_s)}. "
                "Trim it to the part that matters and try again.",
            )
        total_frames = _frame_count(container, stream, duration, fps, settings.max_total_frames)
    if total_frames > settings.max_total_frames:
        raise DetectionError(
            ErrorCode.TOO_MANY_FRAMES,
            f"The video has more than {settings.max_total_frames:,} frames, the most that can be analysed. "
            "Trim it or lower its frame rate.",
        )
    if total_frames == 0:
        raise DetectionError(
            ErrorCode.NO_DECODABLE_FRAME, f"The {kind.upper()} file's video track holds no frames; send another file."
        )
    digest = source_sha256(source)  # last: hashing reads the whole file, so refusals come first
    return MediaProbe(MediaType.VIDEO, f"{kind}/{codec}", size, digest, width, height, duration, fps, total_frames)


def frame_rate(stream: av.video.stream.VideoStream) -> float:
    """Frames per second: the measured average, else the codec's declared rate, else a fallback."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return FALLBACK_FPS


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _frame_count(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    duration: float | None,
    fps: float,
    limit: int,
) -> int:
    """The header's frame count; else duration x rate; else packets counted by demuxing (no decoding).

    Counting stops one past `limit`, so a huge file costs no more than the limit allows.
    """
    if stream.frames > 0:
        return stream.frames
    if duration and duration > 0:
        return max(1, round(duration * fps))
    count = 0
    try:
        for packet in container.demux(stream):
            count += packet.size > 0
            if count > limit:
                break
    except av.FFmpegError:
        pass  # a damaged tail: the packets before it still count; the decoder reports the damage
    return count


def _corrupt(kind: str, reason: object) -> DetectionError:
    return DetectionError(
        ErrorCode.CORRUPT_MEDIA,
        f"The file looks like {kind.upper()} but could not be read ({describe_error(reason)}); it may be "
        "truncated or damaged. Upload it again or re-export it.",
    )


def describe_error(reason: object) -> str:
    """A decoder error as a short phrase: FFmpeg's own text, without errno and file name."""
    if isinstance(reason, av.FFmpegError) and reason.strerror:
        return str(reason.strerror)
    return str(reason)


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB" if size >= 100_000 else f"{size:,} bytes"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:,.1f} megapixels" if pixels >= 100_000 else f"{pixels:,} pixels"


def _clock(seconds: float) -> str:
    whole = math.ceil(seconds)  # rounded up, so a video just over the limit never reads as equal to it
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
