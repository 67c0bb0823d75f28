"""Frame sampling strategies: which frame indices of a video to decode and analyse.

Pure functions, so that the decoder decodes no more than the strategy needs and tests need no video.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from deepfake_core.errors import DetectionError, ErrorCode

SamplingKind = Literal["uniform", "fps", "windows"]
_SPEC = re.compile(r"^(uniform|fps|windows):(\d+(?:\.\d+)?)$")
MAX_SAMPLED_FRAMES = 2048


@dataclass(frozen=True)
class SamplingStrategy:
    kind: SamplingKind
    value: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"


@dataclass(frozen=True)
class FramePlan:
    """Sorted unique frame indices to decode, and how they group into BiLSTM sequences."""

    indices: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]


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


def plan_frames(strategy: SamplingStrategy, total_frames: int, fps: float, window: int = 30) -> FramePlan:
    """Choose frame indices for a video of `total_frames` frames at `fps` frames per second.

    uniform:N takes N frames at the centres of N equal segments (all frames if fewer), fps:R one
    frame every 1/R seconds, windows:K K runs of `window` consecutive frames spread evenly.
    For uniform and fps the sampled frames form one sequence; for windows each run is one.
    """
    if total_frames <= 0:
        return FramePlan((), ())
    if strategy.kind == "uniform":
        count = min(int(strategy.value), total_frames)
        indices = sorted({min(total_frames - 1, int((k + 0.5) * total_frames / count)) for k in range(count)})
        return FramePlan(tuple(indices), (tuple(indices),))
    if strategy.kind == "fps":
        step = max(1.0, (fps if fps > 0 else 25.0) / strategy.value)
        count = min(MAX_SAMPLED_FRAMES, math.ceil(total_frames / step))
        indices = sorted({min(total_frames - 1, int(round(k * step))) for k in range(count)})
        return FramePlan(tuple(indices), (tuple(indices),))
    runs = int(strategy.value)
    length = min(window, total_frames)
    last_start = total_frames - length
    starts = sorted({int(round(k * last_start / (runs - 1))) if runs > 1 else last_start // 2 for k in range(runs)})
    groups = tuple(tuple(range(s, s + length)) for s in starts)
    indices = sorted({i for group in groups for i in group})
    return FramePlan(tuple(indices), groups)
