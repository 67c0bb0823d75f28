"""One process of a shared Optuna study with a toy objective (no training), for test_search.py:

python tests/training/search_worker.py STORAGE_URL TRIALS
"""

from __future__ import annotations

import os
import sys
import time

import optuna
from deepfake_training.workflows.search import run_study


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    trial.set_user_attr("pid", os.getpid())
    time.sleep(0.2)  # a trial takes a while, as training does: the processes' trials overlap
    return -((x - 1.0) ** 2)


if __name__ == "__main__":
    run_study(objective, int(sys.argv[2]), sys.argv[1], "shared", seed=1)
