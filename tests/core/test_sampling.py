"""Frame sampling plans: which frames each strategy decodes."""

import pytest
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.sampling import FrameSampling, parse_sampling, plan_frames, window_step


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


def test_windows_space_their_frames_at_the_training_rate():
    # 25 fps video, trained at 8 fps: round(25 / 8) = 3 frames apart.
    plan = plan_frames(parse_sampling("windows:3"), total_frames=1000, fps=25, window=30, window_fps=8)
    assert len(plan.groups) == 3
    for group in plan.groups:
        assert len(group) == 30
        assert {b - a for a, b in zip(group, group[1:], strict=False)} == {3}
    assert plan.indices == tuple(sorted({i for group in plan.groups for i in group}))


def test_spaced_windows_are_spread_evenly_from_the_first_to_the_last_frame():
    plan = plan_frames(parse_sampling("windows:4"), total_frames=1000, fps=30, window=30, window_fps=10)
    starts = [group[0] for group in plan.groups]
    span = 29 * 3 + 1  # 30 frames 3 apart
    assert starts[0] == 0 and plan.groups[-1][-1] == 999 == starts[-1] + span - 1
    gaps = {b - a for a, b in zip(starts, starts[1:], strict=False)}
    assert max(gaps) - min(gaps) <= 1, gaps
    single = plan_frames(parse_sampling("windows:1"), total_frames=1000, fps=30, window=30, window_fps=10)
    assert single.groups[0][0] == (1000 - span) // 2, "one window sits in the middle"


def test_a_video_too_short_for_the_spacing_gets_a_smaller_step_not_a_shorter_window():
    # 60 frames at 30 fps, trained at 8 fps (step 4, span 117): step 2 is the widest whose window fits.
    plan = plan_frames(parse_sampling("windows:2"), total_frames=60, fps=30, window=30, window_fps=8)
    assert plan.groups[0] == tuple(range(0, 59, 2))
    assert all(len(group) == 30 and group[-1] < 60 for group in plan.groups)
    tight = plan_frames(parse_sampling("windows:1"), total_frames=31, fps=30, window=30, window_fps=8)
    assert [len(g) for g in tight.groups] == [30] and set(tight.groups[0]) <= set(range(31))
    assert {b - a for a, b in zip(tight.groups[0], tight.groups[0][1:], strict=False)} == {1}


def test_a_video_with_fewer_frames_than_a_window_is_one_short_group():
    plan = plan_frames(parse_sampling("windows:2"), total_frames=12, fps=30, window=30, window_fps=8)
    assert plan.groups == (tuple(range(12)),)
    assert plan.indices == tuple(range(12))


def test_window_step_is_consecutive_without_a_training_rate():
    assert window_step(30, None) == window_step(30, 0.0) == 1
    assert window_step(30, 8) == 4 and window_step(24, 8) == 3
    assert window_step(0, 5) == 5, "an unknown rate is taken as 25 fps"
    assert window_step(6, 8) == 1, "a video slower than the training rate is read frame by frame"


def test_frame_sampling_reports_its_spacing_for_windows_only():
    assert str(FrameSampling(parse_sampling("windows:2"), 30, 8.0)) == "windows:2@8fps"
    assert str(FrameSampling(parse_sampling("windows:2"), 30, 12.5)) == "windows:2@12.5fps"
    assert str(FrameSampling(parse_sampling("windows:2"), 30, None)) == "windows:2"
    assert str(FrameSampling(parse_sampling("uniform:32"), 30, 8.0)) == "uniform:32"


def test_uniform_and_fps_ignore_the_window_spacing():
    for spec in ("uniform:32", "fps:1"):
        strategy = parse_sampling(spec)
        spaced = plan_frames(strategy, total_frames=300, fps=30, window=30, window_fps=8)
        assert spaced == plan_frames(strategy, total_frames=300, fps=30)


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
