"""Frame sampling strategies: which frame indices of a video to decode and analyse.

Pure functions, so that the decoder decodes no more than the strategy needs and tests need no video.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from deepfake_core.errors import DetectionError, ErrorCode

SamplingKind = Literal["uniform", "fps", "windows"]
_SPEC = re.compile(r"^(uniform|fps|windows):(\d+(?:\.\d+)?)$")
MAX_SAMPLED_FRAMES = 2048
# The frame rate assumed for a video whose header gives none.
DEFAULT_FPS = 25.0


@dataclass(frozen=True)
class SamplingStrategy:
    kind: SamplingKind
    value: float

    def __str__(self) -> str:
        """The spec again, in the positional form parse_sampling reads ('fps:1000000', never 'fps:1e+06')."""
        return f"{self.kind}:{format(Decimal(repr(self.value)).normalize(), 'f')}"


@dataclass(frozen=True)
class FramePlan:
    """Sorted unique frame indices to decode, and how they group into BiLSTM sequences."""

    indices: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class FrameSampling:
    """A strategy with the BiLSTM window it plans for: everything `plan_frames` needs besides the video.

    `window` frames per window, `window_fps` frames per second inside a window (None: consecutive); both
    come from the model, so that windows:K gives exactly the windows it was trained on.
    """

    strategy: SamplingStrategy
    window: int = 30
    window_fps: float | None = None

    def plan(self, total_frames: int, fps: float) -> FramePlan:
        return plan_frames(self.strategy, total_frames, fps, self.window, self.window_fps)

    def __str__(self) -> str:
        """As the result reports it: windows:K with a spacing says it, e.g. 'windows:2@8fps'."""
        if self.strategy.kind == "windows" and self.window_fps and self.window_fps > 0:
            return f"{self.strategy}@{self.window_fps:g}fps"
        return str(self.strategy)


def parse_sampling(spec: str) -> SamplingStrategy:
    """Parse `uniform:N`, `fps:R` or `windows:K`."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise DetectionError(
            ErrorCode.INVALID_SAMPLING,
            f"Sampling '{spec}' is not understood; use uniform:N (e.g. uniform:32), fps:R (e.g. fps:1) "
            "or windows:K (e.g. windows:2).",
        )
    kind, raw = match.group(1), float(match.group(2))
    if raw <= 0 or (kind != "fps" and not raw.is_integer()):
        raise DetectionError(
            ErrorCode.INVALID_SAMPLING,
            f"Sampling '{spec}' needs a positive {'number' if kind == 'fps' else 'whole number'}.",
        )
    if kind != "fps" and raw > MAX_SAMPLED_FRAMES:
        raise DetectionError(
            ErrorCode.INVALID_SAMPLING, f"Sampling '{spec}' asks for more than {MAX_SAMPLED_FRAMES} frames or windows."
        )
    return SamplingStrategy(kind, raw)  # type: ignore[arg-type]


def plan_frames(
    strategy: SamplingStrategy, total_frames: int, fps: float, window: int = 30, window_fps: float | None = None
) -> FramePlan:
    """Choose frame indices for a video of `total_frames` frames at `fps` frames per second.

    uniform:N takes N frames at the centres of N equal segments (all frames if fewer), fps:R one
    frame every 1/R seconds; their sampled frames form one sequence. windows:K takes K windows of
    `window` frames spread evenly over the video, each one sequence, with the frames of a window
    `window_fps` per second apart (consecutive when None or 0): the windows the BiLSTM was trained on.
    """
    if total_frames <= 0:
        return FramePlan((), ())
    if strategy.kind == "uniform":
        count = min(int(strategy.value), total_frames)
        indices = sorted({min(total_frames - 1, int((k + 0.5) * total_frames / count)) for k in range(count)})
        return FramePlan(tuple(indices), (tuple(indices),))
    if strategy.kind == "fps":
        step = max(1.0, _known_fps(fps) / strategy.value)
        count = min(MAX_SAMPLED_FRAMES, math.ceil(total_frames / step))
        indices = sorted({min(total_frames - 1, int(round(k * step))) for k in range(count)})
        return FramePlan(tuple(indices), (tuple(indices),))
    return _plan_windows(int(strategy.value), total_frames, window, window_step(fps, window_fps))


def window_step(fps: float, window_fps: float | None) -> int:
    """Frames between two frames of a window: the video's rate over the training rate, at least 1.

    A video of unknown rate is taken as DEFAULT_FPS, as for fps:R.
    """
    if not window_fps or window_fps <= 0:
        return 1
    return max(1, round(_known_fps(fps) / window_fps))


def _plan_windows(count: int, total_frames: int, window: int, step: int) -> FramePlan:
    """`count` windows of `window` frames `step` apart, the first starting at frame 0 and the last ending
    at the last frame (one window: centred). A video too short for a window at `step` gets a smaller step,
    so that one full window still fits; one with fewer than `window` frames gives one group of all of them
    (too short to score as a sequence)."""
    if total_frames < window:
        indices = tuple(range(total_frames))
        return FramePlan(indices, (indices,))
    if window > 1:
        step = min(step, (total_frames - 1) // (window - 1))
    span = (window - 1) * step + 1
    last_start = total_frames - span
    starts = sorted({int(round(k * last_start / (count - 1))) if count > 1 else last_start // 2 for k in range(count)})
    groups = tuple(tuple(range(start, start + span, step)) for start in starts)
    return FramePlan(tuple(sorted({i for group in groups for i in group})), groups)


def _known_fps(fps: float) -> float:
    return fps if fps > 0 else DEFAULT_FPS
