"""The media stage of the pipeline: probe a source, plan which frames to analyse, decode only those.

This is the one entry point the pipeline and the workers call; probe.py, image.py and video.py are its parts.
"""

from __future__ import annotations

import dataclasses
import time

from deepfake_core.contract import ModelMetadata
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.frames import DecodedFrame, LoadedMedia, MediaProbe, MediaSource
from deepfake_core.media.image import decode_image
from deepfake_core.media.probe import probe_media
from deepfake_core.media.sampling import FramePlan, FrameSampling, SamplingStrategy, parse_sampling
from deepfake_core.media.video import decode_video
from deepfake_core.result import MediaType
from deepfake_core.settings import CoreSettings

IMAGE_PLAN = FramePlan((0,), ((0,),))


def resolve_sequence_length(settings: CoreSettings, metadata: ModelMetadata) -> int:
    """Frames per BiLSTM window: DEEPFAKE_SEQUENCE_LENGTH when set, else the length the model was trained on."""
    return settings.sequence_length or metadata.sequence_length


def resolve_sampling(spec: str | None, settings: CoreSettings, metadata: ModelMetadata) -> FrameSampling:
    """The sampling of one request: its own spec, else DEEPFAKE_SAMPLING, else the model's (its metadata).

    Windows always take the model's training spacing (metadata.sequence_fps), so that windows:K feeds the
    BiLSTM the sequences it learned from. Raises DetectionError(INVALID_SAMPLING) for a bad spec.
    """
    strategy = parse_sampling(spec or settings.sampling or metadata.sampling)
    window_fps = metadata.sequence_fps if metadata.sequence_fps > 0 else None
    return FrameSampling(strategy, resolve_sequence_length(settings, metadata), window_fps)


def load_media(
    source: MediaSource, settings: CoreSettings, sampling: FrameSampling | SamplingStrategy | None = None
) -> LoadedMedia:
    """Probe `source` (limits included), then decode the frames the sampling plan needs.

    `sampling` defaults to `resolve_sampling` for a model that says nothing of itself (the default
    ModelMetadata); a bare strategy plans windows of the settings' (else the default) length, consecutive.
    Images always give one frame (index 0, time 0).
    The returned probe carries the displayed size (after EXIF or display-matrix rotation), and the
    returned plan lists exactly the frames decoded, which may be fewer than planned when a video's
    header overstates its length or its stream breaks. timings_ms has 'probe' and 'decode'.
    Raises DetectionError.
    """
    started = time.perf_counter()
    probe = probe_media(source, settings)
    probed = time.perf_counter()
    if probe.type is MediaType.IMAGE:
        frames = [DecodedFrame(0, 0.0, decode_image(source, probe.format))]
        plan = IMAGE_PLAN
    else:
        planned = _frame_sampling(sampling, settings).plan(probe.total_frames or 0, probe.fps or 0.0)
        frames = decode_video(source, probe, planned.indices)
        if not frames:  # only an empty plan gets here; the prober refuses streams without frames
            raise DetectionError(
                ErrorCode.NO_DECODABLE_FRAME, "The video holds no frame to analyse; send another file."
            )
        plan = plan_of_decoded(planned, frames)
    decoded = time.perf_counter()
    return LoadedMedia(
        probe=_displayed_size(probe, frames[0]),
        frames=frames,
        plan=plan,
        timings_ms={"probe": (probed - started) * 1000, "decode": (decoded - probed) * 1000},
    )


def _frame_sampling(sampling: FrameSampling | SamplingStrategy | None, settings: CoreSettings) -> FrameSampling:
    if isinstance(sampling, FrameSampling):
        return sampling
    resolved = resolve_sampling(None, settings, ModelMetadata())
    return resolved if sampling is None else FrameSampling(sampling, resolved.window)


def plan_of_decoded(planned: FramePlan, frames: list[DecodedFrame]) -> FramePlan:
    """`planned` restricted to the frames that were decoded; a stand-in frame outside it forms its own group."""
    decoded = [frame.index for frame in frames]
    if tuple(decoded) == planned.indices:
        return planned
    present = set(decoded)
    groups = [kept for group in planned.groups if (kept := tuple(i for i in group if i in present))]
    grouped = {i for group in groups for i in group}
    if leftover := tuple(i for i in decoded if i not in grouped):
        groups.append(leftover)
    return FramePlan(tuple(sorted(present)), tuple(groups))


def _displayed_size(probe: MediaProbe, frame: DecodedFrame) -> MediaProbe:
    height, width = frame.image.shape[:2]
    return (
        probe
        if (width, height) == (probe.width, probe.height)
        else dataclasses.replace(probe, width=width, height=height)
    )
