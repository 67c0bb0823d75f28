"""One process of a shared Optuna study with a toy objective (no training), for test_search.py:

python tests/training/search_worker.py STORAGE_URL TRIALS BARRIER_DIR
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import optuna
from deepfake_training.workflows.search import run_study

PROCESSES = 2
_waited = False


def wait_for_the_other_process(barrier: Path, timeout_s: float = 120.0) -> None:
    """Each process's first trial waits until every process is inside a trial (a file each in `barrier`): on a
    busy machine one process could otherwise run all trials before the other has started, proving nothing."""
    global _waited
    if _waited:
        return
    _waited = True
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout_s
    while len(list(barrier.iterdir())) < PROCESSES and time.monotonic() < deadline:
        time.sleep(0.05)


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    trial.set_user_attr("pid", os.getpid())
    wait_for_the_other_process(Path(sys.argv[3]))
    time.sleep(0.2)  # a trial takes a while, as training does: the processes' trials overlap
    return -((x - 1.0) ** 2)


if __name__ == "__main__":
    run_study(objective, int(sys.argv[2]), sys.argv[1], "shared", seed=1)
