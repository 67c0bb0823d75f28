"""MLflow tracking and model registry: parameters, per-step metrics and artifacts of every run, and registered
model versions with aliases ("staging", "production") for `retrain`'s promotion gate.

The store is `DEEPFAKE_TRAIN_MLFLOW_TRACKING_URI`, else `MLFLOW_TRACKING_URI`, else a SQLite file under
`mlruns/` with artifacts beside it (MLflow 3 keeps its plain-file store in maintenance mode and refuses it
by default, so the local default is MLflow's recommended SQLite store). A team points it at the chart's or
compose's MLflow server (http://...), which keeps runs and the registry in its database and artifacts in the
object store. `Tracker(enabled=False)` logs nothing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_training.config import DEFAULT_MLRUNS

log = logging.getLogger(__name__)


def default_tracking_uri(root: Path = DEFAULT_MLRUNS) -> str:
    return f"sqlite:///{Path(root).resolve()}/mlflow.db"


class Tracker:
    """A thin, failure-tolerant wrapper: tracking problems are logged, never abort a training run."""

    def __init__(
        self,
        experiment: str,
        run_name: str,
        tracking_uri: str | None = None,
        enabled: bool = True,
        run_id: str | None = None,
        local_root: Path = DEFAULT_MLRUNS,
    ) -> None:
        self.enabled = enabled
        self.run_id: str | None = None
        if not enabled:
            return
        import mlflow

        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(local_root)
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).resolve().parent.mkdir(parents=True, exist_ok=True)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient()
        found = client.get_experiment_by_name(experiment)
        if found is None:
            # Artifacts of a local SQLite store live beside the database file, not wherever the command ran.
            location = (
                (Path(uri[len("sqlite:///") :]).resolve().parent / "artifacts").as_uri()
                if uri.startswith("sqlite:///")
                else None
            )
            experiment_id = client.create_experiment(experiment, artifact_location=location)
        else:
            experiment_id = found.experiment_id
        run = mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=None if run_id else run_name)
        self.run_id = run.info.run_id
        self.uri = uri
        self._mlflow = mlflow

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self.enabled:
            self._safely(self._mlflow.log_params, {k: _short(v) for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        if self.enabled:
            clean = {k: float(v) for k, v in metrics.items() if v is not None}
            self._safely(self._mlflow.log_metrics, clean, step=step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        if self.enabled and Path(path).exists():
            self._safely(self._mlflow.log_artifact, str(path), artifact_path=folder)

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        if self.enabled:
            self._safely(self._mlflow.log_text, json.dumps(data, indent=2, default=str), name)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.enabled:
            self._safely(self._mlflow.set_tags, dict(tags))

    def register_version(
        self, path: Path, model_name: str, alias: str, folder: str, tags: Mapping[str, str] | None = None
    ) -> str | None:
        """Log `path` under this run (in `folder`) and register it as a new version of `model_name` with `alias`.

        Returns the version number, or None when tracking is off or the registry failed (logged). The alias
        moves to this version: the registry's "staging" is always the latest candidate.
        """
        if not self.enabled:
            return None
        try:
            self._mlflow.log_artifact(str(path), artifact_path=folder)
            client = self._mlflow.MlflowClient()
            if not client.search_registered_models(filter_string=f"name = '{model_name}'"):
                client.create_registered_model(model_name, description="The deepfake detector (deepfake-train).")
            version = client.create_model_version(
                model_name, source=f"runs:/{self.run_id}/{folder}", run_id=self.run_id, tags=dict(tags or {})
            ).version
            client.set_registered_model_alias(model_name, alias, version)
            return str(version)
        except Exception as error:  # the registry is never worth losing a run over
            log.warning("MLflow: registering %s as %s failed: %s", path, model_name, error)
            return None

    def alias_version(self, model_name: str, alias: str) -> str | None:
        """The version of `model_name` that carries `alias`, or None (none, or tracking off)."""
        if not self.enabled:
            return None
        try:
            return str(self._mlflow.MlflowClient().get_model_version_by_alias(model_name, alias).version)
        except Exception:
            return None

    def set_alias(self, model_name: str, alias: str, version: str) -> None:
        """Move `alias` onto `version` (an alias names one version at a time)."""
        if self.enabled:
            self._safely(self._mlflow.MlflowClient().set_registered_model_alias, model_name, alias, version)

    def tag_version(self, model_name: str, version: str, tags: Mapping[str, str]) -> None:
        """Tag a registered version (e.g. with the gate's figures and decision)."""
        if self.enabled:
            client = self._mlflow.MlflowClient()
            for key, value in tags.items():
                self._safely(client.set_model_version_tag, model_name, version, key, value)

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled:
            self._safely(self._mlflow.end_run, status=status)

    def _safely(self, function: Any, *args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except Exception as error:  # tracking is never worth losing a run over
            log.warning("MLflow: %s failed: %s", getattr(function, "__name__", function), error)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."
