"""Hyperparameter search: parallel processes share one Optuna study through its storage and run its trials once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
from deepfake_training.workflows.search import run_study

PROJECT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("search_worker.py")


def test_two_processes_share_one_sqlite_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    environment = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1"}
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    command = [sys.executable, str(WORKER), storage, "8", str(barrier)]
    workers = [subprocess.Popen(command, env=environment, cwd=PROJECT, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    for worker in workers:
        _, errors = worker.communicate(timeout=600)
        assert worker.returncode == 0, errors[-3000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.trials
    # 8 in all, not 8 each: a process stops once the study counts 8 (one more if both start the 8th at once)
    assert 8 <= len(trials) <= 9, len(trials)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert {t.user_attrs["pid"] for t in trials} == {w.pid for w in workers}, "both processes ran trials"
    # A process started on a finished study adds nothing.
    again = run_study(lambda trial: 0.0, 8, storage, "shared", seed=1)
    assert len(again.trials) == len(trials)


def test_in_memory_search_is_reproducible() -> None:
    def objective(trial: optuna.Trial) -> float:
        return -((trial.suggest_float("x", -3.0, 3.0) - 1.0) ** 2)

    first, second = (run_study(objective, 5, None, "alone", seed=7) for _ in range(2))
    assert [t.params for t in first.trials] == [t.params for t in second.trials] and len(first.trials) == 5
