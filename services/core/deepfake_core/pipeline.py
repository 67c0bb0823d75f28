"""The detection pipeline: media -> faces -> inference -> scores -> result, in stages.

The CLI runs `Detector.analyze`; the Celery workers run the same stage functions one per task and
store each stage's output (`to_bytes`) in object storage, so a retried task resumes, never re-decodes.
Decoding and face finding share one stage because persisting full decoded frames would cost more than
redoing the decode.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from deepfake_core.assembly import ProgressCallback, build_detector, find_faces
from deepfake_core.contract import InferenceBackend, ModelMetadata, to_model_input
from deepfake_core.faces.analyzer import FaceAnalyzer
from deepfake_core.faces.detectors import FaceBox
from deepfake_core.faces.tracking import FaceObservation, FaceTrack
from deepfake_core.media.frames import MediaProbe, MediaSource
from deepfake_core.media.loader import resolve_sampling, resolve_sequence_length
from deepfake_core.media.sampling import FramePlan
from deepfake_core.result import (
    DetectionResult,
    Heatmap,
    MediaInfo,
    MediaType,
    ModelInfo,
    TrackFrame,
    TrackResult,
    Verdict,
)
from deepfake_core.scoring import (
    DECISION_RULE,
    confidence_for,
    fake_probability,
    fuse,
    is_sequence_window,
    resolve_thresholds,
    split_windows,
    verdict_for,
)
from deepfake_core.settings import CoreSettings, get_settings

PREVIEW_MAX_SIDE = 1280
EXPLAIN_WORKERS = 2  # frame overlays drawn at once: the CPU path runs on 2 cores


class HeatmapWriter(Protocol):
    """Stores one rendered heatmap PNG and returns the reference that goes into the result."""

    def write(self, name: str, png: bytes) -> str: ...


class DirectoryHeatmapWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, png: bytes) -> str:
        path = self.directory / name
        path.write_bytes(png)
        return str(path)


# --------------------------------------------------------------------------- stage outputs


@dataclass
class PreparedMedia:
    """Output of the decode + sample + faces stage."""

    probe: MediaProbe
    sampling: str
    plan: FramePlan
    frames_sampled: int
    tracks: list[FaceTrack]
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # BGR frames that hold a face, for overlays
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Serialise for object storage; frames are kept as JPEG previews (they only back overlays)."""
        arrays: dict[str, np.ndarray] = {}
        tracks = []
        for track in self.tracks:
            observations = []
            for k, obs in enumerate(track.observations):
                key = f"t{track.track_id}_{k}"
                arrays[key + "_crop"] = obs.crop_rgb
                arrays[key + "_landmarks"] = obs.landmarks
                arrays[key + "_matrix"] = obs.matrix
                observations.append(
                    {"frame_index": obs.frame_index, "timestamp_s": obs.timestamp_s, "box": asdict(obs.box)}
                )
            tracks.append({"track_id": track.track_id, "observations": observations})
        for index, frame in self.frames.items():
            arrays[f"frame_{index}"] = _encode_preview(frame)
        header = {
            "probe": {**asdict(self.probe), "type": self.probe.type.value},
            "sampling": self.sampling,
            "plan": {"indices": list(self.plan.indices), "groups": [list(g) for g in self.plan.groups]},
            "frames_sampled": self.frames_sampled,
            "tracks": tracks,
            "timings_ms": self.timings_ms,
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PreparedMedia:
        with np.load(io.BytesIO(data)) as archive:
            header = json.loads(archive["header"].tobytes())
            tracks = []
            for track in header["tracks"]:
                observations = []
                for k, obs in enumerate(track["observations"]):
                    key = f"t{track['track_id']}_{k}"
                    observations.append(
                        FaceObservation(
                            frame_index=obs["frame_index"],
                            timestamp_s=obs["timestamp_s"],
                            box=FaceBox(**obs["box"]),
                            landmarks=archive[key + "_landmarks"],
                            crop_rgb=archive[key + "_crop"],
                            matrix=archive[key + "_matrix"],
                        )
                    )
                tracks.append(FaceTrack(track_id=track["track_id"], observations=observations))
            frames = {
                int(name[len("frame_") :]): cv2.imdecode(archive[name], cv2.IMREAD_COLOR)
                for name in archive.files
                if name.startswith("frame_")
            }
        probe = header["probe"]
        probe["type"] = MediaType(probe["type"])
        plan = FramePlan(tuple(header["plan"]["indices"]), tuple(tuple(g) for g in header["plan"]["groups"]))
        return cls(
            probe=MediaProbe(**probe),
            sampling=header["sampling"],
            plan=plan,
            frames_sampled=header["frames_sampled"],
            tracks=tracks,
            frames=frames,
            timings_ms=header["timings_ms"],
        )


@dataclass
class TrackScores:
    track_id: int
    frame_logits: np.ndarray  # [n, 2], one row per observation
    frame_cams: np.ndarray  # [n, h, w]
    sequence_logits: np.ndarray  # [k, 2], one row per BiLSTM window; k = 0 for images


@dataclass
class InferenceRun:
    """Output of the inference stage."""

    tracks: list[TrackScores]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        for scores in self.tracks:
            arrays[f"{scores.track_id}_frame_logits"] = scores.frame_logits
            arrays[f"{scores.track_id}_frame_cams"] = scores.frame_cams
            arrays[f"{scores.track_id}_sequence_logits"] = scores.sequence_logits
        header = {"track_ids": [s.track_id for s in self.tracks], "timings_ms": self.timings_ms}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> InferenceRun:
        with np.load(io.BytesIO(data)) as archive:
            header = json.loads(archive["header"].tobytes())
            tracks = [
                TrackScores(
                    track_id=tid,
                    frame_logits=archive[f"{tid}_frame_logits"],
                    frame_cams=archive[f"{tid}_frame_cams"],
                    sequence_logits=archive[f"{tid}_sequence_logits"],
                )
                for tid in header["track_ids"]
            ]
        return cls(tracks=tracks, timings_ms=header["timings_ms"])


def _encode_preview(frame_bgr: np.ndarray) -> np.ndarray:
    height, width = frame_bgr.shape[:2]
    scale = min(1.0, PREVIEW_MAX_SIDE / max(height, width))
    if scale < 1.0:
        frame_bgr = cv2.resize(frame_bgr, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover - cv2 encodes any BGR uint8 image
        raise RuntimeError("JPEG encoding of a preview frame failed")
    return encoded.reshape(-1)


# --------------------------------------------------------------------------- stages


def prepare_media(
    source: MediaSource,
    settings: CoreSettings,
    sampling: str | None,
    analyzer: FaceAnalyzer,
    progress: ProgressCallback | None = None,
    *,
    metadata: ModelMetadata,
) -> PreparedMedia:
    """Decode the sampled frames and find, align and track the faces in them.

    `sampling` unset means DEEPFAKE_SAMPLING, else the model's own (`metadata`), whose windows have the
    length and spacing the model was trained on.
    """
    frame_sampling = resolve_sampling(sampling, settings, metadata)
    found = find_faces(source, settings, frame_sampling, analyzer, progress)
    loaded = found.media
    timings = dict(loaded.timings_ms)
    timings["faces"] = found.faces_ms
    with_faces = {obs.frame_index for track in found.tracks for obs in track.observations}
    frames = {frame.index: frame.image for frame in loaded.frames if frame.index in with_faces}
    return PreparedMedia(
        probe=loaded.probe,
        sampling=str(frame_sampling),
        plan=loaded.plan,
        frames_sampled=len(loaded.frames),
        tracks=found.tracks,
        frames=frames,
        timings_ms=timings,
    )


def run_inference(prepared: PreparedMedia, backend: InferenceBackend, sequence_length: int) -> InferenceRun:
    """Score every face: each track's frames go through the model in BiLSTM-sized windows.

    Windows of the same length, from any track, share one model call (one batch), so a photo with five
    faces or a video with two people costs one call per window length, not one per face. A window
    shorter than `sequence_length` (the model's trained length) gets CNN scores but no BiLSTM score, so a
    track with no full window has an empty `sequence_logits` and is scored by the CNN alone.
    """
    started = time.perf_counter()
    is_image = prepared.probe.type is MediaType.IMAGE
    # (track position, observation positions, whether the BiLSTM output counts) of every window; frames
    # outside every window (windows sampling with stray frames) become one-frame windows that do not count.
    windows: list[tuple[int, list[int], bool]] = []
    for t, track in enumerate(prepared.tracks):
        positions = list(range(len(track.observations)))
        indices = [obs.frame_index for obs in track.observations]
        chosen = split_windows(positions, prepared.plan.groups, indices, sequence_length)
        windows += [(t, window, not is_image and is_sequence_window(window, sequence_length)) for window in chosen]
        covered = {p for window in chosen for p in window}
        windows += [(t, [p], False) for p in positions if p not in covered]

    frame_logits = [[None] * len(track.observations) for track in prepared.tracks]
    frame_cams = [[None] * len(track.observations) for track in prepared.tracks]
    sequence_logits: list[list[np.ndarray]] = [[] for _ in prepared.tracks]
    by_length: dict[int, list[tuple[int, list[int], bool]]] = {}
    for window in windows:
        by_length.setdefault(len(window[1]), []).append(window)
    for batch in by_length.values():
        crops = [[prepared.tracks[t].observations[p].crop_rgb for p in window] for t, window, _ in batch]
        output = backend.infer(to_model_input(np.array(crops)))
        for row, (t, window, is_sequence) in enumerate(batch):
            if is_sequence:
                sequence_logits[t].append(output.sequence_logits[row])
            for column, position in enumerate(window):
                frame_logits[t][position] = output.frame_logits[row, column]
                frame_cams[t][position] = output.frame_cams[row, column]

    results = [
        TrackScores(
            track_id=track.track_id,
            frame_logits=np.stack(frame_logits[t]).astype(np.float32),
            frame_cams=np.stack(frame_cams[t]).astype(np.float32),
            sequence_logits=np.array(sequence_logits[t], dtype=np.float32).reshape(-1, 2),
        )
        for t, track in enumerate(prepared.tracks)
    ]
    return InferenceRun(tracks=results, timings_ms={"inference": (time.perf_counter() - started) * 1000})


def build_result(
    prepared: PreparedMedia,
    run: InferenceRun,
    metadata: ModelMetadata,
    settings: CoreSettings,
    heatmap_writer: HeatmapWriter | None = None,
    explain: bool = True,
    model_sha256: str | None = None,
) -> DetectionResult:
    """Aggregate scores into the result document and render heatmaps for the most suspicious frames."""
    started = time.perf_counter()
    thresholds = resolve_thresholds(settings, metadata, prepared.probe.type)
    scores_by_track = {scores.track_id: scores for scores in run.tracks}
    explain_ms = 0.0
    track_results = []
    to_frames: dict[int, list[tuple[FaceObservation, np.ndarray, Heatmap]]] = {}  # frame overlays to draw
    for track in prepared.tracks:
        scores = scores_by_track[track.track_id]
        frame_scores = fake_probability(scores.frame_logits)
        frame_score = float(frame_scores.mean())
        sequence_score = float(fake_probability(scores.sequence_logits).mean()) if len(scores.sequence_logits) else None
        score = fuse(frame_score, sequence_score, thresholds)
        frames = [
            TrackFrame(
                frame_index=obs.frame_index,
                timestamp_s=obs.timestamp_s,
                box=obs.box.to_result_box(),
                detection_score=min(1.0, max(0.0, obs.box.score)),
                score=float(frame_scores[k]),
            )
            for k, obs in enumerate(track.observations)
        ]
        heatmaps: list[Heatmap] = []
        if explain and heatmap_writer is not None and settings.heatmap_frames_per_track > 0:
            explain_started = time.perf_counter()
            heatmaps = _render_face_heatmaps(track, scores, frame_scores, settings, heatmap_writer, to_frames)
            explain_ms += (time.perf_counter() - explain_started) * 1000
        track_results.append(
            TrackResult(
                track_id=track.track_id,
                frames=frames,
                frame_score=frame_score,
                sequence_score=sequence_score,
                score=score,
                verdict=verdict_for(score, thresholds),
                heatmaps=heatmaps,
            )
        )
    if to_frames and heatmap_writer is not None:
        explain_started = time.perf_counter()
        _render_frame_heatmaps(prepared, to_frames, heatmap_writer)
        explain_ms += (time.perf_counter() - explain_started) * 1000
    for track_result in track_results:
        track_result.heatmaps = [h for h in track_result.heatmaps if h.ref]
    if track_results:
        worst = max(track_results, key=lambda t: t.score)
        verdict, score = worst.verdict, worst.score
        confidence: float | None = confidence_for(score, verdict, thresholds)
    else:
        verdict, score, confidence = Verdict.NO_FACE, None, None
    probe = prepared.probe
    timings = {**prepared.timings_ms, **run.timings_ms}
    timings["aggregate"] = (time.perf_counter() - started) * 1000 - explain_ms
    timings["explain"] = explain_ms
    return DetectionResult(
        verdict=verdict,
        score=score,
        confidence=confidence,
        decision_rule=DECISION_RULE,
        thresholds=thresholds,
        model=ModelInfo(
            name=metadata.name,
            version=metadata.version,
            input_size=metadata.input_size,
            sequence_length=metadata.sequence_length,
            trained=metadata.trained,
            sha256=model_sha256,
        ),
        media=MediaInfo(
            type=probe.type,
            format=probe.format,
            size_bytes=probe.size_bytes,
            sha256=probe.sha256,
            width=probe.width,
            height=probe.height,
            duration_s=probe.duration_s,
            fps=probe.fps,
            total_frames=probe.total_frames,
            frames_sampled=prepared.frames_sampled,
        ),
        sampling=prepared.sampling,
        tracks=track_results,
        timings_ms={name: round(value, 2) for name, value in timings.items()},
    )


def _render_face_heatmaps(
    track: FaceTrack,
    scores: TrackScores,
    frame_scores: np.ndarray,
    settings: CoreSettings,
    writer: HeatmapWriter,
    to_frames: dict[int, list[tuple[FaceObservation, np.ndarray, Heatmap]]],
) -> list[Heatmap]:
    """Face overlays for the track's most suspicious frames; their frame overlays are queued in `to_frames`
    so that each frame is drawn once with every face on it."""
    from deepfake_core.explain.gradcam import heatmap_from_cam
    from deepfake_core.explain.render import render_face_overlay

    heatmaps = []
    top = np.argsort(-frame_scores, kind="stable")[: settings.heatmap_frames_per_track]
    for position in sorted(int(p) for p in top):
        obs = track.observations[position]
        heatmap = heatmap_from_cam(scores.frame_cams[position], obs.crop_rgb.shape[0])
        score = float(frame_scores[position])
        face_ref = writer.write(f"track{track.track_id}_frame{obs.frame_index}_face.png",
                                render_face_overlay(obs.crop_rgb, heatmap))  # fmt: skip
        heatmaps.append(Heatmap(frame_index=obs.frame_index, kind="face", ref=face_ref, score=score))
        frame_entry = Heatmap(frame_index=obs.frame_index, kind="frame", ref="", score=score)
        heatmaps.append(frame_entry)
        to_frames.setdefault(obs.frame_index, []).append((obs, heatmap, frame_entry))
    return heatmaps


def _render_frame_heatmaps(
    prepared: PreparedMedia,
    to_frames: dict[int, list[tuple[FaceObservation, np.ndarray, Heatmap]]],
    writer: HeatmapWriter,
) -> None:
    """One overlay per frame carrying the heatmaps of all its selected faces; fills in the entries' refs.

    Frames are drawn and PNG-encoded on a small thread pool (OpenCV releases the GIL), then written in order.
    """
    from concurrent.futures import ThreadPoolExecutor

    from deepfake_core.explain.render import encode_png, overlay_face_heatmap

    def draw(item: tuple[int, list[tuple[FaceObservation, np.ndarray, Heatmap]]]) -> bytes | None:
        frame_index, faces = item
        frame = prepared.frames.get(frame_index)
        if frame is None:
            return None
        image = frame
        for obs, heatmap, _ in faces:
            image = overlay_face_heatmap(image, heatmap, _matrix_for_frame(obs.matrix, prepared.probe, frame))
        return encode_png(image, max_side=PREVIEW_MAX_SIDE)

    items = sorted(to_frames.items())
    with ThreadPoolExecutor(max_workers=min(EXPLAIN_WORKERS, len(items)), thread_name_prefix="explain") as pool:
        pngs = list(pool.map(draw, items))
    for (frame_index, faces), png in zip(items, pngs, strict=True):
        ref = "" if png is None else writer.write(f"frame{frame_index}.png", png)
        for *_, entry in faces:
            entry.ref = ref


def _matrix_for_frame(matrix: np.ndarray, probe: MediaProbe, frame: np.ndarray) -> np.ndarray:
    """The frame->crop matrix, adjusted when the stored preview frame was downscaled."""
    scale = frame.shape[1] / probe.width if probe.width else 1.0
    if abs(scale - 1.0) < 1e-6:
        return matrix
    adjusted = matrix.astype(np.float64).copy()
    adjusted[:, :2] /= scale
    return adjusted


# --------------------------------------------------------------------------- the whole pipeline


class Detector:
    """Loads the model and the face models once (`build_detector`, with its checks); analyses any number of files."""

    def __init__(self, settings: CoreSettings | None = None, backend: InferenceBackend | None = None) -> None:
        self.settings = settings or get_settings()
        models = build_detector(self.settings, backend=backend)
        self.backend = models.backend
        self.metadata = models.metadata
        self.analyzer = models.analyzer

    def analyze(
        self,
        source: MediaSource,
        *,
        sampling: str | None = None,
        explain: bool = True,
        heatmap_writer: HeatmapWriter | None = None,
        progress: ProgressCallback | None = None,
    ) -> DetectionResult:
        started = time.perf_counter()
        prepared = prepare_media(source, self.settings, sampling, self.analyzer, progress, metadata=self.metadata)
        run = run_inference(prepared, self.backend, resolve_sequence_length(self.settings, self.metadata))
        if progress:
            progress("inference", 1.0)
        result = build_result(
            prepared,
            run,
            self.metadata,
            self.settings,
            heatmap_writer,
            explain,
            model_sha256=getattr(self.backend, "sha256", None),
        )
        result.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 2)
        if progress:
            progress("done", 1.0)
        return result

    def close(self) -> None:
        self.backend.close()
