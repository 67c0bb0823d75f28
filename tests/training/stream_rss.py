"""Stream every sample of a face-shard folder once through a DataLoader and print the loader process's RSS growth.

  python tests/training/stream_rss.py SHARD_DIR  ->  {"samples": N, "growth_mb": M}
Run in its own process so that pytest's memory does not blur the figure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deepfake_training.config import TrainingConfig
from deepfake_training.data.streaming import FaceShardStream, shard_paths
from torch.utils.data import DataLoader


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(directory: str) -> None:
    config = TrainingConfig(input_size=64, batch_size=8)
    stream = FaceShardStream(shard_paths(Path(directory)), config, seed=3, shuffle_buffer=64)
    samples, baseline, peak = 0, None, 0.0
    for number, (images, _labels, _kinds, _regions) in enumerate(DataLoader(stream, batch_size=8)):
        samples += len(images)
        if number == 10:
            baseline = rss_mb()  # imports, the first shard and the buffer's first pairs are in
        if baseline is not None:
            peak = max(peak, rss_mb())
    print(json.dumps({"samples": samples, "growth_mb": peak - (baseline or peak)}))


if __name__ == "__main__":
    main(sys.argv[1])
