"""torchrun data parallelism on CPU (gloo): two processes train the same steps as one with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from deepfake_core.inference.onnx_backend import OnnxBackend
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.learning.checkpoints import load_model
from deepfake_training.learning.distributed import RankBatches
from deepfake_training.learning.trainer import EpochBatchSampler

PROJECT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("ddp_steps.py")


def _run(command: list[str], tmp_path: Path, extra: dict[str, str] | None = None) -> None:
    environment = {**os.environ, "PYTHONPATH": str(PROJECT), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
                   **(extra or {})}  # fmt: skip
    done = subprocess.run(command, env=environment, cwd=PROJECT, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_rank_batches_split_each_global_batch_into_contiguous_pair_preserving_shares() -> None:
    batches = EpochBatchSampler(16, 8, seed=1, start=0, total=4, group=2)
    shares = [list(RankBatches(batches, 8, rank, 2, group=2)) for rank in (0, 1)]
    for step, whole in enumerate(batches):
        assert shares[0][step] + shares[1][step] == whole
        assert all(a[1] // 2 == b[1] // 2 for a, b in zip(shares[0][step][::2], shares[0][step][1::2], strict=True))
    with pytest.raises(ValueError, match="divisible by 4"):
        RankBatches(batches, 6, 0, 2, group=2)


def _one_and_two_processes(phase: str, cache: FaceCache, tmp_path: Path, *overrides: str) -> tuple[dict, dict]:
    arguments = [phase, str(cache.directory.parent), str(cache.face_size)]
    _run([sys.executable, str(SCRIPT), *arguments, str(tmp_path / "one.pt"), *overrides], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
          *arguments, str(tmp_path / "two.pt"), *overrides], tmp_path)  # fmt: skip
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert (one["world"], two["world"]) == (1, 2)
    return one, two


def _relative_difference(one: dict, two: dict, start: dict) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(|two - one| / |one - start| over all weights, the differences, the update one process made)."""
    names = list(one)
    difference = torch.cat([(one[k].float() - two[k].float()).flatten() for k in names])
    update = torch.cat([(one[k].float() - start[k].float()).flatten() for k in names])
    return float(difference.norm() / update.norm()), difference, update


def test_two_processes_under_torchrun_train_like_one(tiny_cache: FaceCache, tmp_path: Path) -> None:
    """Without PGD: the attack steps along the sign of the input gradient, so float noise in a near-zero gradient
    flips pixels by two step sizes, and the runs then part by ~1e-2 of the update (measured 1.5e-2; a rank that
    trains on its half batch alone parts by 1.17). test_trainer.py checks that the ranks attack exactly the rows
    and starts one process attacks; this test checks the data-parallel step itself, to float noise."""
    one, two = _one_and_two_processes("phase1", tiny_cache, tmp_path, "pgd_fraction=0.0")
    assert len(one["losses"]) == len(two["losses"]) == 2
    relative, difference, update = _relative_difference(one["model"], two["model"], one["initial"])
    print(f"one vs two processes: relative weight difference {relative:.2e}, largest {difference.abs().max():.2e}")
    assert float(update.abs().max()) > 1e-4  # the steps did train
    # Float noise only: a different batch, share or attack moves weights by ~100% of the update. Adam turns the
    # noise of near-zero gradients into lr-sized steps for a handful of elements, hence a norm, not a max.
    assert relative < 1e-3
    # Measured: 559 of 23 M weights (2.4e-5) part by more than 1e-5: the handful Adam moves on noise.
    assert int((difference.abs() > 1e-5).sum()) < 1e-3 * difference.numel()


def test_phase2_under_torchrun_trains_like_one_process(tiny_cache: FaceCache, tmp_path: Path) -> None:
    """Frozen-feature and end-to-end phase 2: features computed a share per rank, then each rank its batch share."""
    one, two = _one_and_two_processes("phase2", tiny_cache, tmp_path)
    assert len(one["losses"]) == len(two["losses"]) == 4
    assert one["features"].shape == two["features"].shape and one["features"].shape[0] == 8
    # Each clip's features whichever rank computed them (float16 on the way: batching changes the last bits).
    assert torch.allclose(one["features"], two["features"], rtol=1e-2, atol=1e-3)
    # Bars: the frozen-feature steps measured 6e-7. The end-to-end steps measured 1.2e-3 to 6.2e-3 (by face cache):
    # Adam divides each gradient by its own running size, so a CNN weight whose gradient is ~0 moves by a full
    # learning rate (1e-4 here) in whichever direction the float summation order gives it; the largest difference,
    # 2.1e-4, is two such steps. A rank that stepped on its half of the batch alone (no averaging) differs by 0.34
    # (frozen) and 0.70 (end to end): measured by one process with phase2_batch_size=2 against 4.
    for name, before, bar in (("model_frozen", one["initial"], 1e-3), ("model", one["model_frozen"], 3e-2)):
        relative, difference, update = _relative_difference(one[name], two[name], before)
        print(f"phase 2 {name}: relative weight difference {relative:.2e}, largest {difference.abs().max():.2e}")
        assert float(update.abs().max()) > 1e-4, f"{name}: the steps did not train"
        assert relative < bar, name


def test_a_run_whose_rank_dies_resumes_from_rank_0s_checkpoint(tiny_cache: FaceCache, tmp_path: Path) -> None:
    """Rank 1 is killed mid-run (SIGKILL); torchrun restarts both ranks, which resume from the checkpoint rank 0 wrote
    (rank 1's own run folder holds none: rank 0 hands it over) and end on the weights of an uninterrupted run."""
    steps = ["phase1_steps=4", "checkpoint_every=2"]
    arguments = ["phase1", str(tiny_cache.directory.parent), str(tiny_cache.face_size)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run([*torchrun, str(SCRIPT), *arguments, str(tmp_path / "straight.pt"), *steps], tmp_path)
    # Killed when it starts step 3 (0-based): steps 0-2 done, the checkpoint holds step 2, so step 2 is redone.
    _run([*torchrun, "--max-restarts", "1", str(SCRIPT), *arguments, str(tmp_path / "resumed.pt"), *steps], tmp_path,
         {"DDP_RUN_DIR": str(tmp_path / "run"), "DDP_KILL_AT_STEP": "3"})  # fmt: skip
    straight, resumed = torch.load(tmp_path / "straight.pt"), torch.load(tmp_path / "resumed.pt")
    assert (straight["attempt"], resumed["attempt"]) == (0, 1)  # the second run did die and restart
    assert (tmp_path / "run" / "rank-0" / "checkpoints" / "phase1.pt").is_file()
    assert not (tmp_path / "run" / "rank-1" / "checkpoints").exists()  # rank 1 resumed from rank 0's file
    assert len(resumed["losses"]) == len(straight["losses"]) == 4
    assert resumed["losses"][:2] == straight["losses"][:2]  # the two steps the checkpoint kept
    relative, difference, update = _relative_difference(straight["model"], resumed["model"], straight["initial"])
    print(f"killed and resumed vs uninterrupted: relative weight difference {relative:.2e}")
    assert float(update.abs().max()) > 1e-4
    assert relative < 1e-4


def test_train_command_under_torchrun_leaves_every_write_to_rank_0(ffpp_root: Path, tmp_path: Path) -> None:
    """`deepfake-train train` as the docs launch it, on two gloo processes over the miniature FF++ tree: it exits 0,
    rank 0 alone writes the cache, checkpoints, model, exports and reports (rank 1 writes nothing), and the
    exported model loads in the serving backend."""
    out, cache, repository = tmp_path / "run", tmp_path / "cache", tmp_path / "repository"
    recipe = ["input_size=64", "batch_size=8", "phase1_steps=2", "warmup_steps=1", "pgd_steps=1", "checkpoint_every=1",
              "phase2_steps=2", "phase2_sequences=4", "phase2_batch_size=4", "sequence_length=4", "lstm_hidden=8",
              "eval_frames_per_video=4"]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__).with_name("audited_cli.py")), "train", "--dataset", f"ffpp={ffpp_root}",
               "--dataset-option", "ffpp.manipulations=[Deepfakes]", "--out", str(out), "--train-sampling", "uniform:4",
               "--precisions", "fp32", "--no-mlflow", "--install", "--repository", str(repository),
               *[arg for value in recipe for arg in ("--set", value)]]  # fmt: skip
    roots = os.pathsep.join(str(p) for p in (out, cache, repository))
    _run(command, tmp_path, {"DEEPFAKE_TRAIN_CACHE_ROOT": str(cache), "DEEPFAKE_TRAIN_CACHE_WORKERS": "1",
                             "AUDIT_ROOTS": roots, "AUDIT_OUT": str(tmp_path)})  # fmt: skip
    rank0 = json.loads((tmp_path / "writes-rank-0.json").read_text())
    rank1 = json.loads((tmp_path / "writes-rank-1.json").read_text())
    assert rank1 == [], f"rank 1 wrote {rank1}"
    written = " ".join(rank0)
    for made in ("checkpoints/phase1.pt", "checkpoints/phase2.pt", "/model.pt", "exports/model.fp32.onnx",
                 "summary.json", "reports/", "/index.json", "deepfake_detector/1/model.onnx"):  # fmt: skip
        assert made in written, f"rank 0 did not write {made}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exports"]["installed_version"] == 1
    model, _ = load_model(out / "model.pt")
    assert model.config.input_size == 64
    backend = OnnxBackend(out / "exports" / "model.fp32.onnx")
    try:
        assert backend.metadata.trained and backend.metadata.input_size == 64
        faces = np.random.default_rng(0).random((1, 4, 3, 64, 64), dtype=np.float32)
        assert np.isfinite(backend.infer(faces).sequence_logits).all()
    finally:
        backend.close()
