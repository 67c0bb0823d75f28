"""ModelMetadata: every field survives the trip through ONNX/Triton string properties."""

from __future__ import annotations

from deepfake_core.contract import META_PREFIX, ModelMetadata


def test_every_field_round_trips_through_props() -> None:
    metadata = ModelMetadata(
        version="4",
        sequence_length=24,
        trained=True,
        fake_threshold=0.62,
        sampling="windows:3",
        sequence_fps=8.0,
        image_fake_threshold=0.71,
        image_uncertain_low=0.45,
        extra={"precision": "fp16"},
    )
    assert ModelMetadata.from_props(metadata.to_props()) == metadata


def test_new_keys_are_written_under_their_documented_names() -> None:
    props = ModelMetadata(sampling="windows:4", sequence_fps=8.0, image_fake_threshold=0.7).to_props()
    assert props[META_PREFIX + "sampling"] == "windows:4"
    assert float(props[META_PREFIX + "sequence_fps"]) == 8.0
    assert float(props[META_PREFIX + "image_fake_threshold"]) == 0.7


def test_unset_image_thresholds_are_omitted_and_read_back_as_none() -> None:
    props = ModelMetadata().to_props()
    assert META_PREFIX + "image_fake_threshold" not in props
    assert META_PREFIX + "image_uncertain_low" not in props
    metadata = ModelMetadata.from_props(props)
    assert (metadata.image_fake_threshold, metadata.image_uncertain_low) == (None, None)
    assert metadata.extra == {}  # the new keys are known fields, not leftovers


def test_a_model_written_before_these_keys_gets_the_defaults() -> None:
    metadata = ModelMetadata.from_props({META_PREFIX + "name": "old", META_PREFIX + "fake_threshold": "0.6"})
    assert (metadata.sampling, metadata.sequence_fps) == ("windows:2", 0.0)
    assert metadata.image_fake_threshold is None
    assert metadata.fake_threshold == 0.6


def test_only_one_image_threshold_may_be_set() -> None:
    metadata = ModelMetadata.from_props(ModelMetadata(image_uncertain_low=0.3).to_props())
    assert (metadata.image_fake_threshold, metadata.image_uncertain_low) == (None, 0.3)
