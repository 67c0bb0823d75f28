"""`make demo`: sample media through the whole platform, on local processes, then stop everything.

Starts Redis, the S3 server, Triton (CPU, python backend) serving the installed reference model, the
gateway, the Celery workers and Prometheus; submits a real video, a synthetic fake made from it and a
photo, all of identities the reference model never saw in training; prints each verdict and where its
heatmaps are; stops the stack. Needs a trained model (the Makefile runs `make model` first when missing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = ROOT / "var" / "demo"
MEDIA_DIR = ROOT / ".cache" / "media"
# Both held out from training: their people are in the reference model's test split only (checked below,
# against deepfake_training.datasets.local_media.DEFAULT_ASSIGNMENT).
REAL_VIDEO = "cap13_edit2.mp4"
PHOTO = "astronaut.png"
CLIP_SECONDS = 10.0


def trim_video(source: Path, dest: Path, seconds: float) -> Path:
    """The first `seconds` of a video, re-encoded losslessly enough that nothing new is introduced."""
    if dest.exists():
        return dest
    frames = read_frames(source, seconds)
    write_video(dest, frames, fps=video_fps(source))
    return dest


def video_fps(path: Path) -> float:
    with av.open(str(path)) as container:
        return float(container.streams.video[0].average_rate)


def read_frames(path: Path, seconds: float) -> list[np.ndarray]:
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= seconds:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def write_video(dest: Path, frames: list[np.ndarray], fps: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(dest), "w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "17", "preset": "veryfast"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_synthetic_fake(real: Path, dest: Path, seed: int = 7) -> Path:
    """A self-blended fake of the real clip: each frame's face blended with a jittered copy of itself,
    with blend parameters drifting over time (the project's own fakes; see deepfake_training.synthesis)."""
    if dest.exists():
        return dest
    import cv2
    from deepfake_core.faces.detectors import make_detector
    from deepfake_core.faces.landmarks import LandmarkFitter
    from deepfake_core.settings import CoreSettings
    from deepfake_training.synthesis.sbi import self_blend_video

    frames = read_frames(real, CLIP_SECONDS)
    detector, fitter = make_detector(CoreSettings()), LandmarkFitter()
    landmarks, kept = [], []
    for image in frames:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        boxes = detector.detect(bgr)
        if not boxes:
            continue
        landmarks.append(fitter.fit(bgr, max(boxes, key=lambda b: b.area)))
        kept.append(image)
    fakes, _ = self_blend_video(np.stack(kept), np.stack(landmarks), np.random.default_rng(seed), flicker=0.1)
    write_video(dest, list(fakes), fps=video_fps(real))
    return dest


def assert_held_out(*names: str) -> None:
    """The demo must show people the model never trained on, or its verdicts prove nothing."""
    from deepfake_training.datasets.local_media import DEFAULT_ASSIGNMENT

    trained_on = [name for name in names if DEFAULT_ASSIGNMENT.get(name) != "test"]
    if trained_on:
        raise SystemExit(f"demo media {trained_on} are not in the reference model's test split")


def print_result(name: str, job_id: str, result: dict, heatmap_dir: Path, expected: str) -> bool:
    score = result.get("score")
    line = f"{name}: {result['verdict'].upper()}"
    if score is not None:
        thresholds = result["thresholds"]
        line += (
            f"  score {score:.3f} (real < {thresholds['uncertain_low']:.3f} <= uncertain < {thresholds['fake']:.3f})"
        )
    right = result["verdict"] == expected
    print(f"{line}  expected {expected.upper()}: {'right' if right else 'WRONG'}")
    media, model = result["media"], result["model"]
    print(
        f"  job {job_id}; {media['type']} {media['format']} {media['width']}x{media['height']}, "
        f"{media['frames_sampled']} frames sampled; model {model['name']} v{model['version']}"
    )
    for track in result["tracks"]:
        frames = len(track["frames"])
        print(f"  face #{track['track_id']}: {track['verdict']} {track['score']:.3f} over {frames} frames")
        for heatmap in track["heatmaps"]:
            path = heatmap_dir / f"{name}-track{track['track_id']}-frame{heatmap['frame_index']}-{heatmap['kind']}.png"
            path.write_bytes(download(heatmap["ref"]))  # a short-lived presigned URL
            print(f"    heatmap ({heatmap['kind']}, frame {heatmap['frame_index']}): {path.relative_to(ROOT)}")
    return right


def download(url: str) -> bytes:
    import httpx

    response = httpx.get(url, timeout=30)
    response.raise_for_status()
    return response.content


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep-running", action="store_true", help="leave the stack up (stop with make down)")
    args = parser.parse_args()

    from deepfake_client import DeepfakeClient
    from deepfake_devstack.stack import Stack, StackPaths, stop_recorded

    sys.path.insert(0, str(ROOT))
    from tests.utils.media import ensure_media

    ensure_media()
    assert_held_out(REAL_VIDEO, PHOTO)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    real = trim_video(MEDIA_DIR / REAL_VIDEO, DEMO_DIR / "real-cap13-10s.mp4", CLIP_SECONDS)
    print("Making a synthetic fake (self-blended) from the real clip ...")
    fake = make_synthetic_fake(real, DEMO_DIR / "fake-sbi-cap13-10s.mp4")
    samples = [("real-video", real, "real"), ("synthetic-fake", fake, "fake"), ("photo", MEDIA_DIR / PHOTO, "real")]

    paths = StackPaths(DEMO_DIR / "stack")
    print("Starting the stack (Redis, S3, Triton, gateway, workers, Prometheus) ...")
    started = time.perf_counter()
    stack = Stack(paths)
    try:
        env = stack.up()
        print(f"Stack up in {time.perf_counter() - started:.1f} s; gateway {env['DEEPFAKE_GATEWAY_URL']}, "
              f"inference via {env.get('DEEPFAKE_INFERENCE_BACKEND', 'onnxruntime')}\n")  # fmt: skip
        heatmap_dir = DEMO_DIR / "heatmaps"
        heatmap_dir.mkdir(exist_ok=True)
        with DeepfakeClient(env["DEEPFAKE_GATEWAY_URL"], env["DEEPFAKE_API_KEY"]) as client:
            jobs = [(name, client.submit_file(path), expected) for name, path, expected in samples]
            right = 0
            for name, job, expected in jobs:
                finished = client.wait(job.id, timeout_s=300)
                if finished.status != "succeeded":
                    print(f"{name}: job {job.id} {finished.status}: {finished.error}")
                    continue
                right += print_result(name, job.id, client.result(job.id), heatmap_dir, expected)
            print(f"\n{right} of {len(jobs)} verdicts right (the reference model: see MODEL_CARD.md for its limits)")
        if env.get("DEEPFAKE_PROMETHEUS_URL"):
            print(f"\nPrometheus: {env['DEEPFAKE_PROMETHEUS_URL']} (query deepfake_jobs_total)")
    finally:
        if args.keep_running:
            print("Stack left running: `make down` stops it.")
        else:
            stop_recorded(paths)
            print("Stack stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
