"""The preprocess stage: decode, sample, find and align faces; the prepared media is stored for the next stage.

The analysis itself is the core's (`deepfake_core.pipeline.prepare_media`); this stage feeds it the stored media.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from deepfake_core.pipeline import prepare_media
from deepfake_jobs.models import Job
from deepfake_jobs.storage import prepared_key

from deepfake_worker import inference
from deepfake_worker.progress import ProgressReporter
from deepfake_worker.services import services
from deepfake_worker.stages.handoff import Handoff
from deepfake_worker.stages.runner import StageResult


def preprocess_work(job: Job, reporter: ProgressReporter, handoff: Handoff) -> StageResult:
    """Decode, sample, find and align faces (deepfake_core.pipeline.prepare_media); store the prepared media."""
    svc = services()
    assert job.media.object_key is not None
    suffix = Path(job.media.filename or "").suffix[:10]
    with tempfile.NamedTemporaryFile(prefix="deepfake-media-", suffix=suffix) as local:
        svc.objects.download(job.media.object_key, local)
        local.flush()
        prepared = prepare_media(
            Path(local.name),
            inference.core_settings(),
            job.options.sampling,
            inference.get_analyzer(),
            reporter,
            metadata=inference.get_backend().metadata,  # its windows: the length and spacing it was trained on
        )
    handoff.prepared = prepared
    handoff.persist(prepared_key(job.id), prepared.to_bytes)
    return StageResult()
