"""Frame sampling plans: which frames each strategy decodes."""

import pytest
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.sampling import parse_sampling, plan_frames


def test_uniform_spreads_frames_over_the_whole_video():
    plan = plan_frames(parse_sampling("uniform:32"), total_frames=300, fps=30)
    assert len(plan.indices) == 32
    assert plan.indices[0] < 10 and plan.indices[-1] > 290
    gaps = {b - a for a, b in zip(plan.indices, plan.indices[1:], strict=False)}
    assert gaps <= {9, 10}
    assert plan.groups == (plan.indices,)


def test_uniform_takes_every_frame_of_a_short_video():
    plan = plan_frames(parse_sampling("uniform:32"), total_frames=12, fps=30)
    assert plan.indices == tuple(range(12))


def test_fps_takes_one_frame_per_period():
    plan = plan_frames(parse_sampling("fps:1"), total_frames=300, fps=30)
    assert plan.indices == tuple(range(0, 300, 30))
    half = plan_frames(parse_sampling("fps:2.5"), total_frames=100, fps=25)
    assert half.indices == tuple(range(0, 100, 10))


def test_windows_are_runs_of_consecutive_frames():
    plan = plan_frames(parse_sampling("windows:2"), total_frames=300, fps=30, window=30)
    assert len(plan.groups) == 2
    for group in plan.groups:
        assert len(group) == 30
        assert list(group) == list(range(group[0], group[0] + 30))
    assert plan.groups[0][0] == 0 and plan.groups[-1][-1] == 299
    assert len(plan.indices) == 60


def test_windows_on_a_video_shorter_than_one_window():
    plan = plan_frames(parse_sampling("windows:3"), total_frames=20, fps=30, window=30)
    assert plan.indices == tuple(range(20))


def test_empty_video_has_an_empty_plan():
    assert plan_frames(parse_sampling("uniform:8"), total_frames=0, fps=30).indices == ()


@pytest.mark.parametrize(
    "spec", ["uniform", "uniform:0", "uniform:2.5", "every:3", "fps:-1", "windows:x", "uniform:99999"]
)
def test_bad_specs_get_a_clear_error(spec):
    with pytest.raises(DetectionError) as caught:
        parse_sampling(spec)
    assert caught.value.code is ErrorCode.INVALID_SAMPLING
    assert (
        "uniform:N" in caught.value.message or "positive" in caught.value.message or "more than" in caught.value.message
    )


def test_strategy_prints_back_as_its_spec():
    assert str(parse_sampling("uniform:32")) == "uniform:32"
    assert str(parse_sampling("fps:0.5")) == "fps:0.5"
