"""The inference stage: the model over every face track (onnxruntime in this process, or Triton).

The model itself is loaded by `deepfake_worker.inference`; the raw outputs are stored for the explain stage.
"""

from __future__ import annotations

from deepfake_core.media.loader import resolve_sequence_length
from deepfake_core.pipeline import run_inference
from deepfake_jobs.models import Job
from deepfake_jobs.storage import inference_key

from deepfake_worker import inference
from deepfake_worker.progress import ProgressReporter
from deepfake_worker.stages.handoff import Handoff
from deepfake_worker.stages.runner import StageResult


def inference_work(job: Job, reporter: ProgressReporter, handoff: Handoff) -> StageResult:
    """Run the model over every face track (onnxruntime in-process, or Triton); store the raw outputs."""
    prepared = handoff.prepared_media()
    backend = inference.get_backend()
    run = run_inference(prepared, backend, resolve_sequence_length(inference.core_settings(), backend.metadata))
    handoff.run = run
    handoff.persist(inference_key(job.id), run.to_bytes)
    changes = {"model_version": backend.metadata.version, "progress_stage": None, "waiting_since": None}
    return StageResult(changes=changes)
