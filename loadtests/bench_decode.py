"""Decode speed of the candidate paths for sampled frames, on the 10 s 1280x720 30 fps H.264 benchmark clip.

Prints, per sampling strategy and path, the median and p95 wall time over repeats, the median CPU time
(all threads; steadier than wall time on a shared machine) and how many video frames per second the
path gets through (last planned index + 1 over the median wall time). The production path, the
fastest, is `deepfake_core.media.video.decode_video`: PyAV, threaded, yuv420p + cv2 conversion,
keyframe seeks and non-reference frames skipped when unplanned. It decodes from bytes as well.

    .venv/bin/python loadtests/bench_decode.py [--repeats 7] [--clip PATH] [--gop N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_core.media.probe import probe_media  # noqa: E402
from deepfake_core.media.sampling import parse_sampling, plan_frames  # noqa: E402
from deepfake_core.media.video import decode_video  # noqa: E402
from deepfake_core.settings import CoreSettings  # noqa: E402

from tests.utils.media_factory import benchmark_clip, cached_clip  # noqa: E402

STRATEGIES = ("uniform:32", "fps:1", "windows:2")
Decoder = Callable[[Path, Sequence[int]], list[np.ndarray]]


def cv2_grab_retrieve(path: Path, indices: Sequence[int]) -> list[np.ndarray]:
    """OpenCV: grab() every frame up to the last planned one, retrieve() only the planned ones."""
    capture = cv2.VideoCapture(str(path))
    wanted, images = set(indices), []
    for index in range(indices[-1] + 1):
        if not capture.grab():
            break
        if index in wanted:
            images.append(capture.retrieve()[1])
    capture.release()
    return images


def cv2_seek(path: Path, indices: Sequence[int]) -> list[np.ndarray]:
    """OpenCV: set CAP_PROP_POS_FRAMES before each planned frame that does not follow the previous one."""
    capture = cv2.VideoCapture(str(path))
    images, position = [], 0
    for index in indices:
        if index != position:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
        position = index + 1
    capture.release()
    return images


def pyav_bgr24(path: Path, indices: Sequence[int]) -> list[np.ndarray]:
    """PyAV, threaded, decoding straight through, converting planned frames with to_ndarray('bgr24')."""
    wanted, images = set(indices), []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                images.append(frame.to_ndarray(format="bgr24"))
            if index >= indices[-1]:
                break
    return images


def production(*, seek: bool, skip_unused: bool, from_bytes: bool = False) -> Decoder:
    def decode(path: Path, indices: Sequence[int]) -> list[np.ndarray]:
        source = path.read_bytes() if from_bytes else path
        probe = probe_media(source, CoreSettings())
        frames = decode_video(source, probe, indices, seek=seek, skip_unused=skip_unused)
        return [frame.image for frame in frames]

    return decode


PATHS: dict[str, Decoder] = {
    "cv2 grab/retrieve": cv2_grab_retrieve,
    "cv2 seek (POS_FRAMES)": cv2_seek,
    "pyav bgr24": pyav_bgr24,
    "pyav yuv420p+cvtColor": production(seek=False, skip_unused=False),
    "  + seek": production(seek=True, skip_unused=False),
    "  + seek + skip non-ref": production(seek=True, skip_unused=True),
    "  same, from bytes": production(seek=True, skip_unused=True, from_bytes=True),
}


def measure(decoder: Decoder, path: Path, indices: Sequence[int], repeats: int) -> tuple[list[float], list[float], int]:
    """Wall and CPU milliseconds of each repeat, and the number of frames returned."""
    decoder(path, indices)  # warm the page cache and the codec libraries
    wall, cpu, count = [], [], 0
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        count = len(decoder(path, indices))
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return wall, cpu, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--clip", type=Path, help="a video to measure instead of the benchmark clip")
    parser.add_argument("--gop", type=int, help="use a benchmark-sized clip with this keyframe interval")
    args = parser.parse_args()
    if args.clip:
        path = args.clip
    elif args.gop:
        path = cached_clip("benchmark_720p30_10s.mp4", gop=args.gop)
    else:
        path = benchmark_clip()
    probe = probe_media(path, CoreSettings())
    print(
        f"clip: {path.name} {probe.width}x{probe.height} {probe.fps:g} fps {probe.total_frames} frames {probe.format}"
    )
    print(f"cv2 {cv2.__version__}, av {av.__version__}, repeats {args.repeats}, cv2 threads {cv2.getNumThreads()}")
    print(
        f"{'sampling':<11} {'path':<28} {'frames':>6} {'median ms':>10} {'p95 ms':>8} {'cpu ms':>8} {'video fps':>10}"
    )
    for spec in STRATEGIES:
        plan = plan_frames(parse_sampling(spec), probe.total_frames or 0, probe.fps or 0.0, window=30)
        for name, decoder in PATHS.items():
            wall, cpu, count = measure(decoder, path, plan.indices, args.repeats)
            median, p95 = statistics.median(wall), float(np.percentile(wall, 95))
            covered = (plan.indices[-1] + 1) / (median / 1000)
            row = f"{count:>6} {median:>10.1f} {p95:>8.1f} {statistics.median(cpu):>8.1f} {covered:>10.0f}"
            print(f"{spec:<11} {name:<28} {row}")


if __name__ == "__main__":
    main()
