"""MLflow tracking and registry on a local SQLite store: versions, the staging/production aliases of retrain's gate."""

from __future__ import annotations

from pathlib import Path

import mlflow
from deepfake_training.tracking import Tracker


def test_registered_versions_carry_the_gates_aliases_and_tags(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    tracker = Tracker("registry-test", "retrain-1", uri)
    try:
        assert tracker.alias_version("detector", "production") is None
        first = tracker.register_version(weights, "detector", "production", "baseline", {"source": "before"})
        second = tracker.register_version(weights, "detector", "staging", "candidate", {"gate": "passed"})
        assert (first, second) == ("1", "2")
        assert tracker.alias_version("detector", "staging") == "2"
        assert tracker.alias_version("detector", "production") == "1"
        tracker.tag_version("detector", "2", {"replaced_production_version": "1"})
        tracker.set_alias("detector", "production", "2")
        third = tracker.register_version(weights, "detector", "staging", "candidate-2", {"gate": "failed"})
    finally:
        tracker.end()
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert third == "3" and str(client.get_model_version_by_alias("detector", "staging").version) == "3"
    production = client.get_model_version_by_alias("detector", "production")
    assert str(production.version) == "2", "a failed candidate never takes production"
    assert production.tags == {"gate": "passed", "replaced_production_version": "1"}
    assert production.run_id == tracker.run_id and production.source.endswith("/candidate")
    assert client.get_model_version("detector", "1").tags == {"source": "before"}


def test_the_registry_is_silent_when_tracking_is_off_or_failing(tmp_path: Path) -> None:
    off = Tracker("x", "y", enabled=False)
    assert off.register_version(tmp_path / "model.pt", "detector", "staging", "candidate") is None
    assert off.alias_version("detector", "staging") is None
    tracker = Tracker("registry-test", "missing-file", f"sqlite:///{tmp_path}/mlflow.db")
    try:  # a missing file: logged, not raised, and nothing registered
        assert tracker.register_version(tmp_path / "absent.pt", "detector", "staging", "candidate") is None
        assert tracker.alias_version("detector", "staging") is None
    finally:
        tracker.end()
