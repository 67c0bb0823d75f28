"""Decode only the planned frames of a video, from a path or from bytes, as upright BGR images.

Chosen path (fastest in loadtests/bench_decode.py): PyAV with threaded decoding. Packets are decoded
up to the last planned frame and no further, but only planned frames are converted to pixels
(yuv420p planes, then cv2 I420 -> BGR, faster than PyAV's bgr24 conversion); frames no other frame
refers to (most B-frames) are not decoded at all unless planned; and when the container's index
shows a keyframe far enough ahead, decoding jumps to it by seeking.

Which packets to skip is decided on the packet's own presentation index, in decode order: the
decoder (and its threads) hands frames out several packets later, so a rule on the frames already
out would decide on stale information (measured: 258 of 300 frames decoded for the served windows
of a 10 s clip; 153 with the rule below, the same 60 frames out, bit for bit).

Frame index convention: index i is the picture shown at time i / fps from the stream start, computed
as round((pts - start) * time_base * fps). For constant-frame-rate video (nearly all uploads) this is
the running frame counter; it stays correct after a seek, where a counter would not. A planned index
that no frame lands on exactly (variable frame rate) gets the next frame, as a player would show it.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container
import av.video.frame
import av.video.stream
import cv2
import numpy as np

from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.frames import DecodedFrame, MediaProbe, MediaSource
from deepfake_core.media.probe import describe_error, open_video

log = logging.getLogger(__name__)

# Seek only to skip at least this many frames: a seek flushes the threaded decoder, which then
# refills its pipeline; below this it is cheaper to decode straight through.
MIN_FRAMES_SKIPPED_BY_SEEK = 16
# Give up after this many seconds' worth of consecutive packets the decoder rejects.
MAX_FAILING_SECONDS = 10.0

_ROTATIONS = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


@dataclass
class _Cursor:
    """Where decoding stands: the next planned index, the last frame decoded, how far the demuxer got."""

    targets: Sequence[int]
    start: int  # the stream's first presentation timestamp
    fps: float
    skip_unused: bool = True
    next: int = 0
    last_index: int = -1
    last_frame: av.video.frame.VideoFrame | None = None
    last_packet_index: int = -1
    failures: int = 0
    sought: int = -1  # the keyframe index last sought to: seeks only ever go forward, never loop
    # True while every packet seen lasts exactly one frame (constant frame rate): a frame is then
    # wanted only if its own index is planned. Variable-rate streams keep the safe rule (see _wanted).
    constant_rate: bool = True
    planned: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        self.planned = frozenset(self.targets)

    @property
    def done(self) -> bool:
        return self.next >= len(self.targets)


class _TooManyFailures(Exception):
    """The decoder rejected so many packets in a row that the rest of the stream is not worth trying."""


def decode_video(
    source: MediaSource, probe: MediaProbe, indices: Sequence[int], *, seek: bool = True, skip_unused: bool = True
) -> list[DecodedFrame]:
    """Decode the frames at `indices` (sorted, unique) of the probed video.

    `seek=False` never seeks and `skip_unused=False` decodes every frame up to the last planned one
    (both only for measuring and debugging; the defaults are faster and give the same frames).

    Frames past the real end of the stream (a header that overstates the count) are left out; if none
    of the planned frames exists, the last frame of the stream stands in. A stream that breaks midway
    keeps what was decoded (with a warning). Raises DetectionError CORRUPT_MEDIA when the data breaks
    or ends before any frame decodes, NO_DECODABLE_FRAME when the data is there but none of it decodes.
    """
    if not indices:
        return []
    frames: list[DecodedFrame] = []
    with open_video(source, probe.format.split("/")[0]) as (container, stream):
        stream.thread_type = "AUTO"  # frame and slice threads: ~2x on two cores
        cursor = _Cursor(indices, start=stream.start_time or 0, fps=probe.fps or 0.0, skip_unused=skip_unused)
        keyframes = _keyframe_indices(stream, cursor) if seek and _has_gaps(indices) else []
        broken: Exception | None = None
        try:
            while not cursor.done:
                target = _seek_target(keyframes, cursor)
                if target is not None:
                    _seek(container, stream, target, cursor.fps)
                    cursor.sought = keyframes[bisect.bisect_right(keyframes, target) - 1]
                    cursor.last_index = cursor.sought - 1
                if not _decode_run(container, stream, cursor, keyframes, frames):
                    break  # end of stream
        except (av.FFmpegError, _TooManyFailures) as error:
            broken = error
        _report(probe, frames, cursor, broken)
        if not frames and cursor.last_frame is not None:
            frames.append(_decoded_frame(cursor.last_index, cursor.last_frame, cursor))
    return frames


def _decode_run(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    cursor: _Cursor,
    keyframes: list[int],
    frames: list[DecodedFrame],
) -> bool:
    """Decode from the current position, keeping planned frames; True if it stopped to seek ahead."""
    for frame in _decoded(container, stream, cursor):
        index = _frame_index(frame, cursor)
        cursor.last_index, cursor.last_frame = index, frame
        while not cursor.done and cursor.targets[cursor.next] <= index:
            frames.append(_decoded_frame(cursor.targets[cursor.next], frame, cursor))
            cursor.next += 1
        if cursor.done:
            return False
        if _seek_target(keyframes, cursor) is not None:
            return True
    return False


def _decoded(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, cursor: _Cursor
) -> Iterator[av.video.frame.VideoFrame]:
    """Decoded frames from the current position; packets the decoder rejects are skipped and counted.

    Demuxing errors propagate (the container is broken); a long run of rejected packets raises
    _TooManyFailures so that a file of garbage costs seconds of video, not its whole length.
    """
    limit = max(50, round(MAX_FAILING_SECONDS * (cursor.fps or 25.0)))
    codec = stream.codec_context
    for packet in container.demux(stream):
        index = _index_at(packet.pts, packet.time_base, cursor) if packet.pts is not None and packet.time_base else None
        if index is not None and packet.size:
            cursor.last_packet_index = max(cursor.last_packet_index, index)
        if cursor.skip_unused:
            # Frames no other frame refers to need not be decoded unless wanted. The setting applies to the
            # packet sent next, also with frame threading.
            skip = "DEFAULT" if _wanted(index, packet, cursor) else "NONREF"
            if codec.skip_frame != skip:
                codec.skip_frame = skip
        try:
            decoded = packet.decode()
        except av.FFmpegError as error:
            cursor.failures += 1
            if cursor.failures >= limit:
                raise _TooManyFailures(f"{cursor.failures} packets in a row could not be decoded") from error
            continue
        for frame in decoded:
            cursor.failures = 0
            yield frame


def _wanted(index: int | None, packet: av.Packet, cursor: _Cursor) -> bool:
    """Whether the frame in `packet` (presentation index `index`) may be a planned frame.

    A frame shown before the next planned frame not yet handed out is never wanted. At a constant
    frame rate a frame is wanted only if its own index is planned; once a packet lasts other than one
    frame (variable rate), a planned index that no frame lands on takes the next frame, which could be
    any frame after it, so every frame from the next planned index on is kept.
    """
    if index is None or cursor.done:
        return True
    if index < cursor.targets[cursor.next]:
        return False
    if cursor.constant_rate and packet.duration and packet.time_base:
        cursor.constant_rate = _index_at(packet.pts + packet.duration, packet.time_base, cursor) - index == 1
    else:
        cursor.constant_rate = False
    return not cursor.constant_rate or index in cursor.planned


def _report(probe: MediaProbe, frames: list[DecodedFrame], cursor: _Cursor, broken: Exception | None) -> None:
    """Raise when nothing decoded; otherwise log what is missing and why."""
    if cursor.last_frame is None:
        total = probe.total_frames or 0
        if broken is None and cursor.last_packet_index < 0.9 * (total - 1):
            broken = EOFError(f"its data ends at frame {max(0, cursor.last_packet_index + 1)} of {total}")
        if broken is None or isinstance(broken, _TooManyFailures):
            raise DetectionError(
                ErrorCode.NO_DECODABLE_FRAME,
                f"No frame of the {probe.format} video could be decoded: its video data is damaged or not "
                "what its container declares. Re-export the video and try again.",
            )
        raise DetectionError(
            ErrorCode.CORRUPT_MEDIA,
            f"The {probe.format} video broke before its first frame ({describe_error(broken)}); it may be truncated. "
            "Upload it again or re-export it.",
        )
    if broken is not None:
        log.warning(
            "Video stream broke after frame %d (%s); keeping %d of %d planned frames.",
            cursor.last_index,
            describe_error(broken),
            len(frames),
            len(cursor.targets),
        )
    elif not cursor.done:
        log.warning(
            "Video ended at frame %d although its header declares %s frames; keeping %d of %d planned frames.",
            cursor.last_index,
            probe.total_frames,
            len(frames),
            len(cursor.targets),
        )


def _index_at(pts: int, time_base: Fraction, cursor: _Cursor) -> int:
    return round((pts - cursor.start) * float(time_base) * cursor.fps)


def _frame_index(frame: av.video.frame.VideoFrame, cursor: _Cursor) -> int:
    if frame.pts is None or not frame.time_base or cursor.fps <= 0:
        return cursor.last_index + 1
    return _index_at(frame.pts, frame.time_base, cursor)


def _decoded_frame(index: int, frame: av.video.frame.VideoFrame, cursor: _Cursor) -> DecodedFrame:
    if frame.pts is not None and frame.time_base:
        timestamp = float((frame.pts - cursor.start) * frame.time_base)
    else:
        timestamp = index / cursor.fps if cursor.fps > 0 else 0.0
    return DecodedFrame(index, max(0.0, timestamp), to_bgr(frame))


def to_bgr(frame: av.video.frame.VideoFrame) -> np.ndarray:
    """Upright BGR uint8 pixels: yuv420p via cv2 (fast path), anything else via PyAV's converter."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        image = cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    else:
        image = np.ascontiguousarray(frame.to_ndarray(format="bgr24"))  # rows may carry padding
    # The display matrix (phone videos) says how far to turn the stored picture counter-clockwise.
    rotation = round(frame.rotation) % 360
    return cv2.rotate(image, _ROTATIONS[rotation]) if rotation in _ROTATIONS else image


# --------------------------------------------------------------------------------------------------
# Seeking
# --------------------------------------------------------------------------------------------------


def _has_gaps(indices: Sequence[int]) -> bool:
    """Whether any jump between planned frames (or to the first) is long enough to seek over."""
    previous = -1
    for index in indices:
        if index - previous > MIN_FRAMES_SKIPPED_BY_SEEK:
            return True
        previous = index
    return False


def _keyframe_indices(stream: av.video.stream.VideoStream, cursor: _Cursor) -> list[int]:
    """Frame indices of the keyframes in the container's index, sorted; empty when it has none.

    Index timestamps are decode times, at or before presentation times, so these indices never
    overshoot: they only tell whether a keyframe lies far enough ahead to be worth a seek.
    """
    if cursor.fps <= 0 or not stream.time_base:
        return []
    return sorted({_index_at(e.timestamp, stream.time_base, cursor) for e in stream.index_entries if e.is_keyframe})


def _seek_target(keyframes: list[int], cursor: _Cursor) -> int | None:
    """The next planned index, when a keyframe before it lies far enough ahead to seek to."""
    if not keyframes or cursor.done:
        return None
    target = cursor.targets[cursor.next]
    position = bisect.bisect_right(keyframes, target) - 1
    if position < 0:
        return None
    skipped = keyframes[position] - max(cursor.last_index, cursor.sought)
    return target if skipped > MIN_FRAMES_SKIPPED_BY_SEEK else None


def _seek(container: av.container.InputContainer, stream: av.video.stream.VideoStream, index: int, fps: float) -> None:
    """Jump to the last keyframe at or before frame `index`; demuxers seek by presentation time."""
    start = stream.start_time or 0
    container.seek(start + int(index / (fps * stream.time_base)), stream=stream, backward=True)
