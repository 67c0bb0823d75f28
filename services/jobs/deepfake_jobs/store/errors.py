"""What the job store refuses: a missing job, a taken id, a forbidden status change, a reused Idempotency-Key.

Callers (the gateway's answers, the workers' stage runner) catch these by type.
"""

from __future__ import annotations

from deepfake_jobs.models import Job, JobStatus


class JobNotFound(KeyError):
    """No job with this id (or not one of this tenant's)."""


class JobExists(Exception):
    """A job with this id was already created."""


class InvalidTransition(Exception):
    """The change is not allowed from the job's current status; `job` is the record as it stands."""

    def __init__(self, job: Job, target: JobStatus | None) -> None:
        if job.terminal:
            detail = f"job {job.id} is {job.status.value}; a finished job no longer changes"
        else:
            detail = f"job {job.id} cannot go from {job.status.value} to {target.value if target else '?'}"
        super().__init__(detail)
        self.job = job
        self.target = target


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used for a different request."""

    code = "idempotency_conflict"

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used with a different request (job {job_id}); "
            "use a new key for a new request."
        )
        self.job_id = job_id
