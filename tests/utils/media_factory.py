"""Test media made from real footage: re-encoded clips in every accepted container, and bad inputs.

Clips are re-encodings of the fetched talking-face video (franck.mp4), so decoders and face detectors see
real content; generated files are cached under `.cache/media/generated/` and rebuilt only when missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import struct
import zipfile
import zlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from tests.utils.media import MEDIA_DIR, ensure_media

GENERATED_DIR = MEDIA_DIR / "generated"
SOURCE_VIDEO = "franck.mp4"
RECIPE_VERSION = 1  # bump when make_clip changes what it writes, so cached clips are rebuilt

# PyAV muxer names by file suffix; `container=` overrides.
_MUXERS = {".mp4": "mp4", ".mov": "mov", ".webm": "webm", ".mkv": "matroska", ".avi": "avi"}
# One encoder per accepted container, from those this PyAV build has (VP9 for WebM, MPEG-4 Part 2 for AVI).
SAMPLE_CODECS = {"mp4": "libx264", "mov": "libx264", "webm": "libvpx-vp9", "mkv": "libx264", "avi": "mpeg4"}
# x264's "medium" preset is what most encoders ship with, so decode timings stay realistic.
_CODEC_OPTIONS = {
    "libx264": {"preset": "medium"},
    "libx265": {"preset": "fast", "x265-params": "log-level=none"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
}


def make_clip(
    source: Path,
    dest: Path,
    *,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seconds: float = 10.0,
    codec: str = "libx264",
    container: str | None = None,
    gop: int | None = None,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """Re-encode `source` into a `width` x `height`, `fps` clip of `seconds` with PyAV.

    Frames are taken at their source time (repeated or dropped to reach `fps`), scaled to fit and
    pillarboxed so faces keep their proportions; the source loops if it is shorter than `seconds`.
    `gop` sets the keyframe interval (codec default when None), `rotation` writes a display matrix
    (counter-clockwise degrees, as phones do), `faststart` puts the MP4/MOV index before the data.
    """
    muxer = {"mkv": "matroska"}.get(container, container) if container else _MUXERS[dest.suffix.lower()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(dest), "w", format=muxer, options=options) as output:
        stream = output.add_stream(codec, rate=fps, options=dict(_CODEC_OPTIONS.get(codec, {})))
        stream.width, stream.height = width, height
        stream.pix_fmt = _pixel_format(stream.codec_context.codec)
        if gop is not None:
            stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        frames = _frames_at_rate(source, fps)
        for index in range(round(seconds * fps)):
            image = _fit(next(frames), width, height)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return dest


def cached_clip(name: str, **kwargs: object) -> Path:
    """`make_clip` from franck.mp4 into the generated cache, keyed by `name` and the arguments."""
    recipe = {"source": SOURCE_VIDEO, "version": RECIPE_VERSION, **kwargs}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:10]
    stem, suffix = os.path.splitext(name)
    dest = GENERATED_DIR / f"{stem}-{key}{suffix}"
    if not dest.exists():
        # Build beside the target and rename, so concurrent test runs never see half a file.
        partial = dest.with_name(f".{dest.stem}.{os.getpid()}{dest.suffix}")
        try:
            make_clip(ensure_media() / SOURCE_VIDEO, partial, **kwargs)  # type: ignore[arg-type]
            partial.replace(dest)
        finally:
            partial.unlink(missing_ok=True)
    return dest


def sample_clip(kind: str, **overrides: object) -> Path:
    """A cached 2 s, 320x240, 25 fps clip in container `kind` ('mp4', 'mov', 'webm', 'mkv' or 'avi')."""
    options = {"width": 320, "height": 240, "fps": 25, "seconds": 2.0, "codec": SAMPLE_CODECS[kind]} | overrides
    return cached_clip(f"sample.{kind}", **options)


def photo(width: int = 480, name: str = "sample1.jpg") -> np.ndarray:
    """A real photo with faces (BGR), scaled to `width`: small enough to encode in milliseconds."""
    image = cv2.imread(str(ensure_media() / name), cv2.IMREAD_COLOR)
    height = round(image.shape[0] * width / image.shape[1])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def encode_image(image: np.ndarray, kind: str, **options: object) -> bytes:
    """`image` (BGR, grey, BGRA or uint16 grey) encoded as 'jpeg', 'png', 'webp' or 'bmp' by Pillow."""
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=kind.upper(), **options)
    return buffer.getvalue()


def benchmark_clip() -> Path:
    """The 10 s, 1280x720, 30 fps H.264 MP4 the decode speed target is measured on (built once)."""
    return cached_clip("benchmark_720p30_10s.mp4")


def _pixel_format(codec: av.Codec) -> str:
    if codec.name == "mjpeg":
        return "yuvj420p"  # full-range YUV, as cameras write Motion JPEG
    formats = [fmt.name for fmt in codec.video_formats or ()]
    return "yuv420p" if not formats or "yuv420p" in formats else formats[0]


def _frames_at_rate(source: Path, fps: float) -> Iterator[np.ndarray]:
    """BGR frames of `source` sampled at `fps`, looping the source forever."""
    step = 1.0 / fps
    next_time = 0.0
    offset = 0.0
    while True:
        last_time = offset
        with av.open(str(source)) as media:
            stream = media.streams.video[0]
            for frame in media.decode(stream):
                frame_time = offset + float(frame.time or 0.0)
                image = frame.to_ndarray(format="bgr24")
                while next_time < frame_time + float(1 / stream.average_rate):
                    yield image
                    next_time += step
                last_time = frame_time
        offset = last_time + float(1 / stream.average_rate)


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to fit inside width x height and pad with black, keeping the aspect ratio."""
    scale = min(width / image.shape[1], height / image.shape[0])
    new_w, new_h = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    left, top = (width - new_w) // 2, (height - new_h) // 2
    return cv2.copyMakeBorder(
        resized, top, height - new_h - top, left, width - new_w - left, cv2.BORDER_CONSTANT, value=(0, 0, 0)
    )


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------


def long_duration_video(dest: Path, *, hours: float = 4.0, frames: int = 5, size: int = 64) -> Path:
    """A genuine H.264 MP4 a few kilobytes long whose frame timestamps span `hours` hours."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    seconds_per_frame = Fraction(round(hours * 3600), frames)  # the last frame lasts until the end
    with av.open(str(dest), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=1 / seconds_per_frame)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            image = np.full((size, size, 3), 40 * index % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return dest


def with_garbage_packets(clip: Path, *, keep_fraction: float = 0.0, seed: int = 7) -> bytes:
    """The MP4 `clip` with its container intact but its media data (mdat) random after `keep_fraction` of it."""
    data = bytearray(clip.read_bytes())
    start, end = _box_payload(data, b"mdat")
    start += int((end - start) * keep_fraction)
    data[start:end] = random.Random(seed).randbytes(end - start)
    return bytes(data)


def streamed_matroska(clip: Path) -> bytes:
    """`clip` remuxed (no re-encode) into Matroska as a live recorder writes to a pipe: no duration, no index."""

    class _Pipe:  # a write-only sink: the muxer cannot seek back to fill in duration and cues
        def __init__(self) -> None:
            self.buffer = io.BytesIO()

        def write(self, data: bytes) -> int:
            return self.buffer.write(data)

        def seekable(self) -> bool:
            return False

    pipe = _Pipe()
    with av.open(str(clip)) as source, av.open(pipe, "w", format="matroska") as output:
        stream = source.streams.video[0]
        target = output.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.dts is not None:
                packet.stream = target
                output.mux(packet)
    return pipe.buffer.getvalue()


def _box_payload(data: bytes | bytearray, box_type: bytes) -> tuple[int, int]:
    """Byte range of the payload of the first top-level ISO BMFF box of `box_type`."""
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
        elif size == 0:
            size = len(data) - offset
        if kind == box_type:
            return offset + header, offset + size
        offset += size
    raise ValueError(f"no {box_type!r} box")


def ftyp_then_random(size: int = 64 * 1024, *, seed: int = 11) -> bytes:
    """A valid MP4 `ftyp` box followed by random bytes: looks like an MP4 by content, is not one."""
    ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
    return ftyp + random.Random(seed).randbytes(size - len(ftyp))


def png_claiming_size(width: int, height: int) -> bytes:
    """A well-formed PNG whose IHDR claims `width` x `height` RGB pixels but carries one tiny IDAT.

    Decoding it would allocate width*height*3 bytes; a safe reader refuses it from the header alone.
    """

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def pdf_document() -> bytes:
    """A minimal, valid one-page PDF."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    body = io.BytesIO()
    body.write(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(body.tell())
        body.write(b"%d 0 obj\n%s\nendobj\n" % (number, obj))
    xref = body.tell()
    body.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    body.writelines(b"%010d 00000 n \n" % offset for offset in offsets)
    body.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return body.getvalue()


def zip_archive(members: dict[str, bytes] | None = None) -> bytes:
    """A ZIP archive (by default holding a JPEG-named file, as uploads of zipped photos do)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, payload in (members or {"photo.jpg": b"\xff\xd8\xff" + bytes(100)}).items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def jpeg_with_orientation(image_bgr: np.ndarray, orientation: int, quality: int = 92) -> bytes:
    """JPEG of `image_bgr` stored as-is with an EXIF Orientation tag (1-8), as cameras write it."""
    image = Image.fromarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, exif=exif)
    return buffer.getvalue()
