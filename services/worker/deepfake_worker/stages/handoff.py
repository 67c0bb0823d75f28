"""What the stages one task runs hand to each other: outputs in memory, persisted for a retry or another worker.

A stage's output is read from the handoff when the previous stage ran in the same task, else from object storage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from deepfake_core.pipeline import InferenceRun, PreparedMedia
from deepfake_jobs.storage import inference_key, prepared_key

from deepfake_worker.progress import JobCanceled
from deepfake_worker.services import services
from deepfake_worker.writes import BackgroundWrites, guarded_write

log = logging.getLogger(__name__)


@dataclass
class Handoff:
    """What the stages a task ran so far produced for one job, for the next stage run in the same task.

    `in_memory` is set when the next stage will run here: a stage then hands its output over in memory and
    persists it in the background (for a retry or another worker to resume from); otherwise it persists it
    before the stage ends, because another process will read it.
    """

    job_id: str
    in_memory: bool = False
    prepared: PreparedMedia | None = None
    run: InferenceRun | None = None
    writes: BackgroundWrites = field(default_factory=BackgroundWrites)
    pending: dict[str, Callable[[], None]] = field(default_factory=dict)  # key -> its write, until settled

    def persist(self, key: str, produce: Callable[[], bytes]) -> None:
        """Store a stage output (`produce` serialises it), in the background when the next stage runs here."""
        objects = services().objects

        def write() -> None:
            objects.put_bytes(key, produce())

        if self.in_memory:
            self.pending[key] = write
            self.writes.submit(self.job_id, key, write)
        else:
            guarded_write(self.job_id, key, write)

    def settle(self, required: bool = False) -> None:
        """Wait for the background writes. A failed one only takes a resume's shortcut away, so it is logged;
        with `required` (another task reads the output next) it is written again here, and its error raised."""
        errors = [error for error in self.writes.wait() if not isinstance(error, JobCanceled)]
        pending, self.pending = self.pending, {}
        if errors and required:
            for key, write in pending.items():
                if not services().objects.exists(key):
                    guarded_write(self.job_id, key, write)
            return
        for error in errors:
            log.warning("job %s: a stage output was not persisted (%s); a retry recomputes it", self.job_id, error)

    def prepared_media(self) -> PreparedMedia:
        """The preprocess output: handed over in memory by this task, else read back from object storage."""
        if self.prepared is None:
            self.prepared = PreparedMedia.from_bytes(services().objects.get_bytes(prepared_key(self.job_id)))
        return self.prepared

    def inference_run(self) -> InferenceRun:
        """The inference output: handed over in memory by this task, else read back from object storage."""
        if self.run is None:
            self.run = InferenceRun.from_bytes(services().objects.get_bytes(inference_key(self.job_id)))
        return self.run
