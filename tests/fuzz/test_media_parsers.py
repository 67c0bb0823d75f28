"""Fuzzing the media sniffing, probing and decoding: random bytes and mutated real JPEG, PNG and MP4 files
never raise anything but the core's DetectionError with a stable code, and never hang (each test has a
pytest timeout; the budgets are fixed example counts, derandomized so every run sees the same inputs).

Seeds are real face media: a fetched photo and a clip re-encoded from the fetched talking-face video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.frames import MediaProbe
from deepfake_core.media.image import decode_image
from deepfake_core.media.loader import load_media
from deepfake_core.media.probe import probe_media
from deepfake_core.media.sampling import SamplingStrategy
from deepfake_core.media.sniff import SNIFF_BYTES, sniff_format
from deepfake_core.result import MediaType
from deepfake_core.settings import CoreSettings
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import CHEAP_EXAMPLES, DECODER_EXAMPLES, PARSER_EXAMPLES, count_example, fuzz_settings
from tests.utils.media_factory import cached_clip, encode_image, photo

pytestmark = pytest.mark.timeout(300)

SNIFF_CODES = {ErrorCode.EMPTY_FILE, ErrorCode.UNSUPPORTED_MEDIA}
# What a damaged or hostile file may be refused with; anything else (or any other exception) is a bug.
MEDIA_CODES = {
    ErrorCode.EMPTY_FILE,
    ErrorCode.UNSUPPORTED_MEDIA,
    ErrorCode.CORRUPT_MEDIA,
    ErrorCode.FILE_TOO_LARGE,
    ErrorCode.IMAGE_TOO_LARGE,
    ErrorCode.VIDEO_TOO_LONG,
    ErrorCode.TOO_MANY_FRAMES,
    ErrorCode.NO_DECODABLE_FRAME,
}
# Small limits, so that a mutated header claiming a huge size is refused instead of decoded.
SETTINGS = CoreSettings(max_file_bytes=8 * 1024 * 1024, max_image_pixels=4_000_000, max_frame_pixels=2_000_000,
                        max_duration_s=120.0, max_total_frames=3000)  # fmt: skip
FEW_FRAMES = SamplingStrategy("uniform", 4)


def real_jpeg() -> bytes:
    from tests.utils.media import ensure_media

    return (ensure_media() / "clm_bill-murray-snl_crop.jpg").read_bytes()


def real_png() -> bytes:
    return encode_image(photo(width=96), "png")


def real_mp4() -> Path:
    """One second of the real talking-face video, 96x72 at 10 fps: every mutated copy decodes in milliseconds."""
    return cached_clip("fuzz-seed.mp4", width=96, height=72, fps=10, seconds=1.0)


SEEDS: dict[str, bytes] = {}


def seed(kind: str) -> bytes:
    if kind not in SEEDS:
        SEEDS[kind] = {"jpeg": real_jpeg, "png": real_png, "mp4": lambda: real_mp4().read_bytes()}[kind]()
    return SEEDS[kind]


@st.composite
def mutated(draw: st.DrawFn, kind: str, header_bias: int = SNIFF_BYTES) -> bytes:
    """A real file with a few bytes replaced (mostly in its header), a random block inserted, or a truncation."""
    data = bytearray(seed(kind))
    for _ in range(draw(st.integers(0, 8))):
        limit = min(len(data), header_bias) if draw(st.booleans()) else len(data)
        data[draw(st.integers(0, limit - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    if draw(st.integers(0, 3)) == 0:
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


# Found by this fuzzing and fixed in media/probe.py: a non-UTF-8 muxer tag raised UnicodeDecodeError, and an MP4
# whose sample description box is damaged gave a video stream without a codec context (AttributeError).


def without_sample_description() -> bytes:
    data = bytearray(seed("mp4"))
    data[data.index(b"stsd") + 3] = ord("i")  # `stsi`: the track's sample description is gone
    return bytes(data)


def with_non_utf8_encoder_tag() -> bytes:
    data = bytearray(seed("mp4"))
    data[data.index(b"Lavf")] = 0x80  # the muxer's `encoder` tag, now invalid UTF-8
    return bytes(data)


def assert_typed(error: DetectionError, allowed: set[ErrorCode]) -> None:
    assert error.code in allowed, error
    assert error.message and error.message[-1] in ".)!", error.message


@fuzz_settings(CHEAP_EXAMPLES)
@given(head=st.binary(max_size=SNIFF_BYTES))
def test_random_bytes_are_sniffed_or_refused(head: bytes) -> None:
    count_example("sniff_random")
    try:
        media_type, kind = sniff_format(head)
    except DetectionError as error:
        assert_typed(error, SNIFF_CODES)
        return
    assert media_type in (MediaType.IMAGE, MediaType.VIDEO) and kind


@fuzz_settings(CHEAP_EXAMPLES)
@given(data=st.sampled_from(["jpeg", "png", "mp4"]).flatmap(lambda kind: mutated(kind)))
def test_mutated_headers_are_sniffed_or_refused(data: bytes) -> None:
    count_example("sniff_mutated")
    try:
        sniff_format(data[:SNIFF_BYTES])
    except DetectionError as error:
        assert_typed(error, SNIFF_CODES)


MAGIC_NUMBERS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\x00\x00\x00\x18ftypisom"]
NOISE_BEHIND_MAGIC = st.sampled_from(MAGIC_NUMBERS).flatmap(
    lambda magic: st.binary(max_size=2048).map(lambda rest: magic + rest)
)


@fuzz_settings(PARSER_EXAMPLES)
@given(data=st.binary(max_size=2048) | NOISE_BEHIND_MAGIC)
def test_random_bodies_behind_real_magic_are_probed_or_refused(data: bytes) -> None:
    """Magic numbers that pass the sniffer followed by noise: the header parsers must refuse them cleanly."""
    count_example("probe_random")
    try:
        probe = probe_media(data, SETTINGS)
    except DetectionError as error:
        assert_typed(error, MEDIA_CODES)
        return
    assert isinstance(probe, MediaProbe)


@fuzz_settings(PARSER_EXAMPLES)
@given(data=st.sampled_from(["jpeg", "png"]).flatmap(lambda kind: mutated(kind)))
def test_mutated_images_probe_and_decode_or_refuse(data: bytes) -> None:
    count_example("image_mutated")
    try:
        probe = probe_media(data, SETTINGS)
        pixels = decode_image(data, probe.format)
    except DetectionError as error:
        assert_typed(error, MEDIA_CODES)
        return
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert pixels.shape[0] * pixels.shape[1] <= SETTINGS.max_image_pixels


@fuzz_settings(DECODER_EXAMPLES)
@given(data=mutated("mp4"))
def test_mutated_videos_load_or_refuse(data: bytes) -> None:
    """The whole loader on a damaged MP4: probe, sampling plan, seek and decode of the planned frames."""
    count_example("video_mutated")
    try:
        loaded = load_media(data, SETTINGS, FEW_FRAMES)
    except DetectionError as error:
        assert_typed(error, MEDIA_CODES)
        return
    assert loaded.frames and all(frame.image.dtype == np.uint8 for frame in loaded.frames)


@fuzz_settings(DECODER_EXAMPLES)
@given(data=mutated("mp4", header_bias=1 << 30))
def test_mutated_video_payloads_load_or_refuse(data: bytes) -> None:
    """Damage anywhere in the file (the coded frames, not just the boxes): decoded frames or a typed refusal."""
    count_example("video_payload_mutated")
    try:
        loaded = load_media(data, SETTINGS, FEW_FRAMES)
    except DetectionError as error:
        assert_typed(error, MEDIA_CODES)
        return
    assert loaded.frames


def test_the_seeds_themselves_load() -> None:
    """The unmutated seeds decode: the properties above start from real, valid media."""
    for kind in ("jpeg", "png", "mp4"):
        loaded = load_media(seed(kind), SETTINGS, FEW_FRAMES)
        assert loaded.frames, kind


def test_non_utf8_container_metadata_is_read() -> None:
    probe = probe_media(with_non_utf8_encoder_tag(), SETTINGS)
    assert probe.type == MediaType.VIDEO and probe.width > 0 and probe.height > 0


def test_video_track_without_codec_is_refused() -> None:
    with pytest.raises(DetectionError) as refused:
        probe_media(without_sample_description(), SETTINGS)
    assert_typed(refused.value, MEDIA_CODES)
