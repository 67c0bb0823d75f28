"""The media stage end to end: every accepted format from a path and from bytes, and every bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from deepfake_core.contract import ModelMetadata
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.loader import load_media, resolve_sampling
from deepfake_core.media.sampling import FramePlan, parse_sampling
from deepfake_core.result import MediaType
from deepfake_core.settings import CoreSettings

from tests.utils.media import MEDIA_DIR
from tests.utils.media_factory import (
    benchmark_clip,
    encode_image,
    ftyp_then_random,
    jpeg_with_orientation,
    long_duration_video,
    pdf_document,
    photo,
    png_claiming_size,
    sample_clip,
    with_garbage_packets,
    zip_archive,
)

SETTINGS = CoreSettings()
VIDEO_KINDS = ("mp4", "mov", "webm", "mkv", "avi")
IMAGE_KINDS = ("jpeg", "png", "webp", "bmp")
# Names that lie about the content: the loader must not care.
MISLEADING_NAMES = {"mp4": "clip.avi", "mov": "holiday.jpg", "webm": "video.mp4", "mkv": "notes.txt", "avi": "x"}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_each_video_format_loads_from_a_misnamed_path_and_from_bytes(tmp_path, kind):
    data = sample_clip(kind).read_bytes()
    sampling = parse_sampling("uniform:8")

    from_path = load_media(write(tmp_path, MISLEADING_NAMES[kind], data), SETTINGS, sampling)
    from_bytes = load_media(data, SETTINGS, sampling)

    for media in (from_path, from_bytes):
        assert media.probe.type is MediaType.VIDEO
        assert media.probe.format.split("/")[0] == kind
        assert (media.probe.width, media.probe.height, media.probe.total_frames) == (320, 240, 50)
        assert len(media.frames) == 8 and media.plan.indices == tuple(f.index for f in media.frames)
        assert all(f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8 for f in media.frames)
        assert set(media.timings_ms) == {"probe", "decode"} and min(media.timings_ms.values()) >= 0
    assert from_path.probe == from_bytes.probe
    for a, b in zip(from_path.frames, from_bytes.frames, strict=True):
        assert a.index == b.index and np.array_equal(a.image, b.image)


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_each_image_format_loads_as_one_frame_from_a_misnamed_path_and_from_bytes(tmp_path, media_dir, kind):
    picture = photo(300)
    data = encode_image(picture, kind)

    for source in (write(tmp_path, "upload.mp4", data), data):
        media = load_media(source, SETTINGS)
        assert (media.probe.type, media.probe.format) == (MediaType.IMAGE, kind)
        assert media.plan == FramePlan((0,), ((0,),))
        (frame,) = media.frames
        assert (frame.index, frame.timestamp_s) == (0, 0.0)
        assert frame.image.shape == picture.shape and frame.image.dtype == np.uint8
        assert np.abs(frame.image.astype(int) - picture).mean() < 4


def test_real_photos_and_videos_load(media_dir):
    photo_media = load_media(media_dir / "insightface_t1.jpg", SETTINGS)
    video_media = load_media(media_dir / "cap13_edit2.mp4", SETTINGS, parse_sampling("fps:1"))

    assert photo_media.frames[0].image.shape == (photo_media.probe.height, photo_media.probe.width, 3)
    assert video_media.probe.format == "mp4/h264" and (video_media.probe.width, video_media.probe.height) == (400, 300)
    assert len(video_media.frames) == pytest.approx(video_media.probe.duration_s, abs=1.5)


def test_sampling_defaults_to_the_settings():
    media = load_media(benchmark_clip(), CoreSettings(sampling="fps:2"))

    assert len(media.frames) == 20


def test_without_settings_a_video_gets_the_default_models_windows():
    media = load_media(benchmark_clip(), CoreSettings())  # 300 frames; the default model: windows:2 of 30

    assert media.plan.groups == (tuple(range(0, 30)), tuple(range(270, 300)))


def test_a_request_spec_wins_over_the_settings_which_win_over_the_model():
    model = ModelMetadata(sampling="windows:3", sequence_fps=8.0, sequence_length=16)

    assert str(resolve_sampling(None, CoreSettings(), model)) == "windows:3@8fps"
    assert str(resolve_sampling(None, CoreSettings(sampling="fps:1"), model)) == "fps:1"
    assert str(resolve_sampling("uniform:8", CoreSettings(sampling="fps:1"), model)) == "uniform:8"


def test_windows_take_the_models_length_and_spacing():
    model = ModelMetadata(sampling="windows:3", sequence_fps=8.0, sequence_length=16)

    resolved = resolve_sampling("windows:2", CoreSettings(), model)
    assert (resolved.window, resolved.window_fps) == (16, 8.0)
    assert str(resolved) == "windows:2@8fps"
    assert resolve_sampling(None, CoreSettings(sequence_length=12), model).window == 12
    consecutive = resolve_sampling(None, CoreSettings(), ModelMetadata())
    assert (str(consecutive), consecutive.window, consecutive.window_fps) == ("windows:2", 30, None)


def test_a_blank_sampling_setting_means_the_models():
    assert CoreSettings(sampling="  ").sampling is None
    with pytest.raises(DetectionError) as caught:
        CoreSettings(sampling="every:3")
    assert caught.value.code is ErrorCode.INVALID_SAMPLING


def test_the_probe_reports_the_upright_size_of_a_turned_photo(media_dir):
    picture = photo(300)  # 300 x 200 stored

    media = load_media(jpeg_with_orientation(picture, 6), SETTINGS)

    assert (media.probe.width, media.probe.height) == (200, 300)
    assert media.frames[0].image.shape == (300, 200, 3)


# --- every bad input gets its code and a sentence ----------------------------------------------------


def truncated_jpeg() -> bytes:
    data = (MEDIA_DIR / "sample6.jpg").read_bytes()
    return data[: len(data) * 2 // 3]


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


BAD_INPUTS: dict[str, tuple[Callable[[Path], bytes | Path], CoreSettings, ErrorCode, str]] = {
    "zero bytes": (lambda _: b"", SETTINGS, ErrorCode.EMPTY_FILE, "empty"),
    "truncated jpeg": (lambda _: truncated_jpeg(), SETTINGS, ErrorCode.CORRUPT_MEDIA, "truncated"),
    "mp4 cut in half": (lambda _: half(benchmark_clip().read_bytes()), SETTINGS, ErrorCode.CORRUPT_MEDIA, "MP4"),
    "mp4 cut to 2 KB": (lambda _: benchmark_clip().read_bytes()[:2048], SETTINGS, ErrorCode.CORRUPT_MEDIA, "MP4"),
    "pdf": (lambda _: pdf_document(), SETTINGS, ErrorCode.UNSUPPORTED_MEDIA, "PDF"),
    "zip": (lambda _: zip_archive(), SETTINGS, ErrorCode.UNSUPPORTED_MEDIA, "ZIP"),
    "png bomb": (lambda _: png_claiming_size(50_000, 50_000), SETTINGS, ErrorCode.IMAGE_TOO_LARGE, "pixels"),
    "four hours": (
        lambda tmp: long_duration_video(tmp / "long.mp4", hours=4.0),
        SETTINGS,
        ErrorCode.VIDEO_TOO_LONG,
        "4:00:00",
    ),
    "over max_file_bytes": (
        lambda _: sample_clip("mp4"),
        CoreSettings(max_file_bytes=10_000),
        ErrorCode.FILE_TOO_LARGE,
        "10,000 bytes",
    ),
    "too many frames": (
        lambda _: sample_clip("avi"),
        CoreSettings(max_total_frames=49),
        ErrorCode.TOO_MANY_FRAMES,
        "49",
    ),
    "garbage packets": (
        lambda _: with_garbage_packets(sample_clip("mp4")),
        SETTINGS,
        ErrorCode.NO_DECODABLE_FRAME,
        "decoded",
    ),
    "random after ftyp": (lambda _: ftyp_then_random(), SETTINGS, ErrorCode.CORRUPT_MEDIA, "MP4"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_get_a_stable_code_and_a_helpful_sentence(tmp_path, media_dir, case):
    make, settings, code, mentions = BAD_INPUTS[case]
    source = make(tmp_path)
    sources = [source, source.read_bytes()] if isinstance(source, Path) else [source, write(tmp_path, "in.bin", source)]

    for each in sources:
        with pytest.raises(DetectionError) as caught:
            load_media(each, settings)
        error = caught.value
        assert error.code is code
        assert mentions in error.message
        assert error.message.endswith(".") and len(error.message.split()) >= 8
        assert error.to_dict() == {"code": code.value, "message": error.message}
