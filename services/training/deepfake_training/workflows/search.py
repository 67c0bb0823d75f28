"""Hyperparameter search with Optuna over the paper's tuned values: learning rate, dropout, batch size.

Each trial trains phase 1 for a short, fixed number of steps from the same seed and is scored by the
frame-level AUC of the CNN branch on the validation clips. The budget is small on purpose (the paper's
KerasTuner search ran on GPUs). In one process the study lives in memory and the TPE sampler is seeded, so a
search is reproducible. With a shared storage (`--storage sqlite:///search.db` on one machine,
`postgresql://...` across pods; DEEPFAKE_TRAIN_OPTUNA_STORAGE) every process started with the same study name
joins one study and runs trials in parallel until the study holds `trials` of them; each process then draws
its own samples (no fixed seed: the trials' order depends on timing anyway).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from deepfake_training.config import TrainingConfig, TrainingSettings
from deepfake_training.data.samples import FaceSynthesizer, FrameDataset, build_frame_pool
from deepfake_training.learning.runtime import seed_everything
from deepfake_training.learning.trainer import build_model, train_frames
from deepfake_training.tracking import Tracker
from deepfake_training.workflows.run import RunLayout, TrainingData, frame_validator

log = logging.getLogger(__name__)

BATCH_SIZES = (8, 16, 32)


@dataclass
class SearchResult:
    best_params: dict[str, object]
    best_value: float
    trials: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {"best_params": self.best_params, "best_value": self.best_value, "trials": self.trials,
                "seconds": round(self.seconds, 1)}  # fmt: skip


def search_hyperparameters(
    data: TrainingData,
    base: TrainingConfig,
    out: Path,
    trials: int = 6,
    steps: int = 40,
    settings: TrainingSettings | None = None,
    track: bool = True,
    storage: str | None = None,
    study_name: str | None = None,
) -> SearchResult:
    """Run `trials` short phase-1 trainings (together with the other processes of a shared study); write
    search.json with every trial of the study and the best values."""
    started = time.perf_counter()
    settings = settings or TrainingSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    validator = frame_validator(data.val_clips, base)
    synthesizer = FaceSynthesizer(data.train_tracks, base.input_size)

    def objective(trial: optuna.Trial) -> float:
        config = base.with_overrides(
            {
                "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
                "dropout": trial.suggest_float("dropout", 0.1, 0.5),
                "batch_size": trial.suggest_categorical("batch_size", list(BATCH_SIZES)),
                "phase1_steps": steps,
                "warmup_steps": min(base.warmup_steps, steps // 5),
                "eval_every": 0,
                "max_minutes": None,
            }
        )
        seed_everything(config.seed)
        model = build_model(config)
        pool = build_frame_pool(data.train_tracks, config, config.seed)
        dataset = FrameDataset(pool, synthesizer, config, config.seed)
        tracker = Tracker(settings.mlflow_experiment, f"search-{out.name}-trial{trial.number}",
                          settings.mlflow_tracking_uri, enabled=track)  # fmt: skip
        status = "FAILED"
        try:
            tracker.set_tags({"kind": "search", "trial": str(trial.number)})
            tracker.log_params(trial.params)
            result = train_frames(model, dataset, config, RunLayout(out / f"trial{trial.number}").root, tracker,
                                  validator, resume=False)  # fmt: skip
            value = result.validation.get("frame_auc")
            status = "FINISHED"
        finally:
            tracker.end(status)
        if value is None:
            raise optuna.TrialPruned("validation AUC undefined (one class only)")
        log.info("trial %d %s: frame AUC %.4f", trial.number, trial.params, value)
        return float(value)

    storage = settings.optuna_storage if storage is None else storage
    study = run_study(objective, trials, storage, study_name or f"search-{out.name}", base.seed)
    result = SearchResult(
        best_params=dict(study.best_params),
        best_value=float(study.best_value),
        trials=[
            {"number": t.number, "params": t.params, "value": t.value, "state": t.state.name} for t in study.trials
        ],
        seconds=time.perf_counter() - started,
    )
    (out / "search.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def run_study(
    objective: Callable[[optuna.Trial], float], trials: int, storage: str | None, study_name: str, seed: int
) -> optuna.Study:
    """Maximise `objective` until the study holds `trials` trials, alone (storage None) or beside other processes.

    Every process of a shared study stops starting trials once the study counts `trials` (running ones
    included), so N processes run `trials` in all, not N times as many (at most N - 1 more when they start
    trials at the same moment).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed if storage is None else None)
    study = optuna.create_study(direction="maximize", sampler=sampler, storage=_storage(storage),
                                study_name=study_name, load_if_exists=True)  # fmt: skip
    if storage is None:
        study.optimize(objective, n_trials=trials)
        return study
    if len(study.trials) < trials:
        study.optimize(objective, n_trials=trials, callbacks=[optuna.study.MaxTrialsCallback(trials, states=None)])
    return study


def _storage(url: str | None, attempts: int = 5) -> optuna.storages.BaseStorage | None:
    """Optuna's database storage; SQLite waits up to a minute for a lock that another process holds.

    Processes started together on an empty database race to create its tables: the loser's CREATE TABLE fails
    with "table already exists" (measured: about one start in five with two processes on SQLite). Opening
    again finds the tables made, so a failed first open is retried after a short pause.
    """
    if url is None:
        return None
    import sqlalchemy.exc

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(1, attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except sqlalchemy.exc.DatabaseError:
            time.sleep(0.2 * attempt)
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)  # the last attempt's error is the caller's
