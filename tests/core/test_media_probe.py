"""Header facts and limits: what probing reports, and every refusal it makes before decoding."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.probe import probe_media
from deepfake_core.result import MediaType
from deepfake_core.settings import CoreSettings

from tests.utils.media_factory import (
    benchmark_clip,
    ftyp_then_random,
    long_duration_video,
    png_claiming_size,
    sample_clip,
    streamed_matroska,
)


def refusal(source, settings: CoreSettings | None = None) -> DetectionError:
    with pytest.raises(DetectionError) as caught:
        probe_media(source, settings or CoreSettings())
    return caught.value


def test_video_probe_reads_size_rate_length_and_codec():
    clip = benchmark_clip()

    probe = probe_media(clip, CoreSettings())

    assert probe.type is MediaType.VIDEO
    assert probe.format == "mp4/h264"
    assert (probe.width, probe.height) == (1280, 720)
    assert probe.fps == pytest.approx(30.0)
    assert probe.total_frames == 300
    assert probe.duration_s == pytest.approx(10.0, abs=0.05)
    assert probe.size_bytes == clip.stat().st_size
    assert probe.sha256 == hashlib.sha256(clip.read_bytes()).hexdigest()


def test_path_and_bytes_probe_the_same(media_dir):
    for path in (sample_clip("webm"), media_dir / "sample2.jpg"):
        assert probe_media(path, CoreSettings()) == probe_media(path.read_bytes(), CoreSettings())


def test_image_probe_reads_the_header(media_dir):
    probe = probe_media(media_dir / "astronaut.png", CoreSettings())

    assert (probe.type, probe.format, probe.width, probe.height) == (MediaType.IMAGE, "png", 512, 512)
    assert probe.fps is None and probe.total_frames is None


@pytest.mark.parametrize("kind", ["webm", "mkv"])
def test_matroska_without_a_frame_count_is_estimated_from_duration(kind):
    probe = probe_media(sample_clip(kind), CoreSettings())

    assert probe.total_frames == 50  # 2 s at 25 fps


def test_a_stream_without_duration_or_count_is_counted_by_demuxing():
    data = streamed_matroska(sample_clip("mp4"))

    probe = probe_media(data, CoreSettings())

    assert probe.duration_s is None
    assert probe.total_frames == 50


def test_a_missing_path_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        probe_media(tmp_path / "nope.mp4", CoreSettings())


# --- refusals ------------------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_from_bytes_and_path():
    clip = sample_clip("mp4")
    settings = CoreSettings(max_file_bytes=1000)

    for source in (clip, clip.read_bytes()):
        error = refusal(source, settings)
        assert error.code is ErrorCode.FILE_TOO_LARGE
        assert "1,000 bytes" in error.message


def test_a_huge_file_is_refused_without_being_read(tmp_path):
    # A sparse 64 GiB file: reading it (to sniff, hash or decode) would take minutes and the memory of the host.
    huge = tmp_path / "huge.mp4"
    with open(huge, "wb") as file:
        file.truncate(64 * 1024**3)

    error = refusal(huge)

    assert error.code is ErrorCode.FILE_TOO_LARGE
    assert "68,719.5 MB" in error.message


def test_a_png_claiming_fifty_thousand_squared_pixels_is_refused_from_its_header():
    error = refusal(png_claiming_size(50_000, 50_000))

    assert error.code is ErrorCode.IMAGE_TOO_LARGE
    assert "2500000000" in error.message


def test_a_png_over_the_configured_pixel_limit_names_its_size():
    error = refusal(png_claiming_size(8000, 6000))

    assert error.code is ErrorCode.IMAGE_TOO_LARGE
    assert "8000 x 6000" in error.message and "40.0 megapixels" in error.message


def test_video_frames_over_the_frame_pixel_limit_are_refused():
    error = refusal(sample_clip("mp4"), CoreSettings(max_frame_pixels=320 * 240 - 1))

    assert error.code is ErrorCode.IMAGE_TOO_LARGE
    assert "320 x 240" in error.message


def test_a_four_hour_video_is_refused_as_too_long(tmp_path):
    video = long_duration_video(tmp_path / "four_hours.mp4", hours=4.0)
    assert video.stat().st_size < 20_000  # few tiny frames, spread over four hours

    error = refusal(video)

    assert error.code is ErrorCode.VIDEO_TOO_LONG
    assert "4:00:00" in error.message and "30:00" in error.message
    assert probe_media(video, CoreSettings(max_duration_s=5 * 3600)).duration_s == pytest.approx(4 * 3600)


def test_a_video_with_more_frames_than_allowed_is_refused():
    error = refusal(sample_clip("mkv"), CoreSettings(max_total_frames=20))

    assert error.code is ErrorCode.TOO_MANY_FRAMES
    assert "20" in error.message


@pytest.mark.parametrize("fraction", [0.5, None])
def test_a_truncated_mp4_is_corrupt(fraction):
    data = benchmark_clip().read_bytes()
    cut = data[: int(len(data) * fraction)] if fraction else data[:2048]

    error = refusal(cut)

    assert error.code is ErrorCode.CORRUPT_MEDIA
    assert "MP4" in error.message and "truncated" in error.message


def test_random_bytes_behind_an_mp4_header_are_corrupt():
    error = refusal(ftyp_then_random())

    assert error.code is ErrorCode.CORRUPT_MEDIA


def test_a_truncated_image_header_is_corrupt(media_dir):
    error = refusal((media_dir / "sample3.jpg").read_bytes()[:200])

    assert error.code is ErrorCode.CORRUPT_MEDIA
    assert "JPEG" in error.message


@pytest.mark.parametrize(("data", "code"), [(b"", ErrorCode.EMPTY_FILE), (b"%PDF-1.7\n", ErrorCode.UNSUPPORTED_MEDIA)])
def test_sniffing_errors_surface_through_probe(tmp_path: Path, data, code):
    path = tmp_path / "upload.mp4"  # the name says MP4, the content decides
    path.write_bytes(data)

    assert refusal(path).code is code
    assert refusal(data).code is code
