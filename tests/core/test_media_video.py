"""Video decoding: sampled frames are the right frames, seeking changes nothing, damage is survived."""

from __future__ import annotations

import hashlib
import logging

import av
import cv2
import numpy as np
import pytest
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.loader import load_media
from deepfake_core.media.probe import probe_media
from deepfake_core.media.sampling import FrameSampling, parse_sampling, plan_frames
from deepfake_core.media.video import decode_video, to_bgr
from deepfake_core.settings import CoreSettings

from tests.utils.media_factory import benchmark_clip, cached_clip, sample_clip, with_garbage_packets

SETTINGS = CoreSettings()


def fingerprints(source) -> list[str]:
    """A hash of every frame in presentation order, decoded straight through without sampling or seeking."""
    with av.open(str(source)) as container:
        return [hashlib.sha1(to_bgr(frame).tobytes()).hexdigest() for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def benchmark():
    clip = benchmark_clip()
    return clip, fingerprints(clip)


@pytest.mark.parametrize(
    ("spec", "count", "runs"),
    [("uniform:32", 32, 1), ("fps:1", 10, 1), ("windows:2", 60, 2)],
)
def test_sampling_decodes_exactly_the_planned_frames(benchmark, spec, count, runs):
    clip, reference = benchmark

    media = load_media(clip, SETTINGS, parse_sampling(spec))

    expected = plan_frames(parse_sampling(spec), 300, 30.0, window=30)  # a bare strategy: the default window
    assert media.plan == expected
    assert [frame.index for frame in media.frames] == list(expected.indices)
    assert len(media.frames) == count and len(media.plan.groups) == runs
    for frame in media.frames:
        assert frame.image.shape == (720, 1280, 3) and frame.image.dtype == np.uint8
        assert frame.timestamp_s == pytest.approx(frame.index / 30.0, abs=1e-6)
        assert hashlib.sha1(frame.image.tobytes()).hexdigest() == reference[frame.index]


def test_windows_are_runs_of_consecutive_frames(benchmark):
    clip, _ = benchmark

    media = load_media(clip, SETTINGS, parse_sampling("windows:2"))

    first, last = media.plan.groups
    assert first == tuple(range(0, 30)) and last == tuple(range(270, 300))


def test_windows_at_the_training_spacing_decode_the_spaced_frames(benchmark):
    clip, reference = benchmark  # 300 frames at 30 fps; trained at 8 fps -> every 4th frame (30 / 8 = 3.75)

    media = load_media(clip, SETTINGS, FrameSampling(parse_sampling("windows:2"), window=30, window_fps=8.0))

    first, last = media.plan.groups
    assert first == tuple(range(0, 117, 4)) and last == tuple(range(183, 300, 4))
    assert [frame.index for frame in media.frames] == [*first, *last]
    assert all(hashlib.sha1(f.image.tobytes()).hexdigest() == reference[f.index] for f in media.frames)


@pytest.mark.parametrize("kind", ["mp4", "webm", "mkv"])
@pytest.mark.parametrize("spec", ["fps:1", "windows:3", "uniform:6"])
def test_seeking_gives_the_same_frames_as_decoding_straight_through(kind, spec):
    # One keyframe every 10 frames, so the decoder does seek over the gaps of these plans.
    clip = sample_clip(kind, seconds=6.0, gop=10)
    probe = probe_media(clip, SETTINGS)
    plan = plan_frames(parse_sampling(spec), probe.total_frames, probe.fps, window=20)

    sought = decode_video(clip, probe, plan.indices, seek=True)
    straight = decode_video(clip, probe, plan.indices, seek=False)

    assert [f.index for f in sought] == [f.index for f in straight] == list(plan.indices)
    reference = fingerprints(clip)
    for frame in sought:
        assert hashlib.sha1(frame.image.tobytes()).hexdigest() == reference[frame.index]


def test_fast_colour_conversion_matches_ffmpeg_bgr24():
    with av.open(str(sample_clip("mp4"))) as container:
        frame = next(container.decode(video=0))
        difference = np.abs(to_bgr(frame).astype(int) - frame.to_ndarray(format="bgr24")).mean()

    assert difference < 1.5


def test_full_range_motion_jpeg_takes_the_general_conversion():
    clip = cached_clip("sample_mjpeg.avi", width=320, height=240, fps=25, seconds=1.0, codec="mjpeg")
    media = load_media(clip, SETTINGS, parse_sampling("uniform:4"))

    assert media.probe.format == "avi/mjpeg"
    with av.open(str(clip)) as container:
        frames = list(container.decode(video=0))
    for decoded in media.frames:
        assert np.array_equal(decoded.image, frames[decoded.index].to_ndarray(format="bgr24"))


def best_turn(shown: np.ndarray, stored: np.ndarray) -> int:
    """The quarter turn of `stored` that `shown` matches, up to the noise between two encodes of one picture."""
    turns = (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE)
    errors = {turn: np.abs(shown.astype(int) - cv2.rotate(stored, turn)).mean() for turn in turns}
    best = min(errors, key=errors.get)
    assert errors[best] < 3.0 < max(errors.values())
    return best


def test_display_rotation_turns_phone_video_upright():
    plain = sample_clip("mp4", seconds=1.0)
    turned = sample_clip("mp4", seconds=1.0, rotation=90)
    sampling = parse_sampling("uniform:3")

    upright = load_media(turned, SETTINGS, sampling)
    stored = load_media(plain, SETTINGS, sampling)

    assert (upright.probe.width, upright.probe.height) == (240, 320)
    for shown, original in zip(upright.frames, stored.frames, strict=True):
        assert best_turn(shown.image, original.image) == cv2.ROTATE_90_COUNTERCLOCKWISE


def test_hevc_phone_video_turned_a_quarter_clockwise_loads_upright():
    # Phones record portrait video as landscape frames plus a display matrix, often in HEVC.
    clip = sample_clip("mp4", seconds=1.0, codec="libx265", rotation=-90)
    plain = sample_clip("mp4", seconds=1.0, codec="libx265")
    sampling = parse_sampling("uniform:2")

    upright = load_media(clip, SETTINGS, sampling)
    stored = load_media(plain, SETTINGS, sampling)

    assert upright.probe.format == "mp4/hevc"
    assert (upright.probe.width, upright.probe.height) == (240, 320)
    for shown, original in zip(upright.frames, stored.frames, strict=True):
        assert best_turn(shown.image, original.image) == cv2.ROTATE_90_CLOCKWISE


# --- damaged streams -------------------------------------------------------------------------------


def start_of_an_indexed_mp4(fraction: float) -> bytes:
    """The start of an MP4 whose index (moov) comes first: the header still promises 100 frames."""
    data = sample_clip("mp4", seconds=4.0, faststart=True).read_bytes()
    return data[: int(len(data) * fraction)]


@pytest.fixture(scope="module")
def half_of_an_indexed_mp4() -> bytes:
    return start_of_an_indexed_mp4(0.5)


def test_frames_past_the_real_end_are_left_out(half_of_an_indexed_mp4, caplog):
    with caplog.at_level(logging.WARNING, logger="deepfake_core.media.video"):
        media = load_media(half_of_an_indexed_mp4, SETTINGS, parse_sampling("uniform:20"))

    planned = plan_frames(parse_sampling("uniform:20"), 100, 25.0)
    decoded = [frame.index for frame in media.frames]
    assert media.probe.total_frames == 100
    assert 0 < len(decoded) < 20
    assert decoded == list(planned.indices[: len(decoded)])
    assert media.plan.indices == tuple(decoded) and media.plan.groups == (tuple(decoded),)
    assert "header declares 100 frames" in caplog.text


def test_the_last_frame_stands_in_when_no_planned_frame_exists():
    # One window of 30 frames centred in 100 starts at frame 35, past what the first quarter holds.
    media = load_media(start_of_an_indexed_mp4(0.25), SETTINGS, parse_sampling("windows:1"))

    assert len(media.frames) == 1
    (index,) = media.plan.indices
    assert media.frames[0].index == index < 35
    assert media.plan.groups == ((index,),)


def test_garbage_after_the_first_part_keeps_the_frames_before_it(caplog):
    clip = sample_clip("mp4", seconds=4.0)
    damaged = with_garbage_packets(clip, keep_fraction=0.5)

    with caplog.at_level(logging.WARNING, logger="deepfake_core.media.video"):
        media = load_media(damaged, SETTINGS, parse_sampling("fps:5"))

    reference = fingerprints(clip)
    assert 0 < len(media.frames) < 20
    for frame in media.frames[:2]:  # the first frames come from intact data
        assert hashlib.sha1(frame.image.tobytes()).hexdigest() == reference[frame.index]
    assert caplog.records


def test_a_stream_of_garbage_packets_has_no_decodable_frame():
    data = with_garbage_packets(sample_clip("mp4"))

    with pytest.raises(DetectionError) as caught:
        load_media(data, SETTINGS)

    assert caught.value.code is ErrorCode.NO_DECODABLE_FRAME
    assert "mp4/h264" in caught.value.message


def test_a_stream_cut_before_its_first_frame_is_corrupt():
    data = sample_clip("mp4", seconds=4.0, faststart=True).read_bytes()
    probe = probe_media(data, SETTINGS)
    header_only = data[: data.index(b"mdat") + 64]

    with pytest.raises(DetectionError) as caught:
        decode_video(header_only, probe, (0, 1, 2))

    assert caught.value.code is ErrorCode.CORRUPT_MEDIA
    assert "truncated" in caught.value.message
