"""`loadtests/gpu_check.py` on a machine without a GPU: its CPU-safe checks run, the GPU ones say why they skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_its_cpu_parts_and_skips_the_rest_with_a_reason(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run `make gpu-check` itself")
    environment = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "loadtests/gpu_check.py", "--json", str(tmp_path / "checks.json")]
    done = subprocess.run(command, cwd=PROJECT, env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "checks.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert report["card"] is None and "no NVIDIA GPU" in done.stdout
    assert checks["triton-configs"]["status"] == "ok" and checks["triton-configs"]["figures"]["input_size"] > 0
    engine = checks["tensorrt-engine"]
    assert engine["status"] == "skipped" and "trtexec" in engine["message"] and "--fp16" in engine["message"]
    assert checks["crops-per-second"]["status"] == "skipped" and "CUDA" in checks["crops-per-second"]["message"]
    training = checks["torchrun-training"]
    assert training["status"] == "skipped" and training["figures"]["cpu_smoke_images_per_s"] > 0
