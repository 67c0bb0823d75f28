"""The work of the beat tasks: the retention pass, and the sweep that recovers and re-drives stalled jobs.

The rules of recovery live in `deepfake_worker.recovery`; this module runs them with the worker's clients.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from deepfake_jobs.dispatch import notify_job, resume_job
from deepfake_jobs.models import Job, Stage
from deepfake_jobs.retention import erase_expired

from deepfake_worker.recovery import (
    STALLED_CODE,
    recover_after_data_loss,
    recover_lost_jobs,
    stalled_message,
    sweep_stalled,
    sweep_webhooks,
)
from deepfake_worker.services import services
from deepfake_worker.stages.records import fail_job


def erase_expired_jobs(now: str | None = None) -> dict[str, Any]:
    """Erase jobs (media, outputs, results, records) created more than `retention_days` before `now` (ISO)."""
    svc = services()
    moment = datetime.fromisoformat(now) if now else None
    report = erase_expired(svc.store, svc.objects, svc.settings.retention_days, now=moment)
    return {"cutoff": report.cutoff.isoformat(), "jobs_erased": report.jobs_erased, "objects": report.objects_deleted}


def resume_stalled_jobs(now: str | None = None) -> dict[str, list[str]]:
    """Rebuild what a Redis data loss took, resend overdue webhooks, and re-drive (or give up on) stalled jobs."""
    svc = services()

    def give_up(job: Job) -> None:
        failed = fail_job(job.id, job.stage or Stage.FETCH, time.perf_counter(), STALLED_CODE,
                          stalled_message(svc.settings))  # fmt: skip
        if failed is not None:
            notify_job(failed)

    moment = datetime.fromisoformat(now) if now else None
    rebuilt = recover_after_data_loss(svc.store, svc.tenants)  # Redis started empty: tenants, finished jobs
    recovered = recover_lost_jobs(svc.store)  # after a Redis data loss; the stalled rule then re-drives them
    if rebuilt is not None:
        recovered = sorted({*recovered, *rebuilt.unfinished_jobs, *rebuilt.finished_jobs})
    # Webhooks before jobs: a job given up on below has its notify on the way and must not count as overdue yet.
    resent = sweep_webhooks(svc.store, svc.settings, resend=notify_job, now=moment)
    report = sweep_stalled(svc.store, svc.settings, resume=resume_job, give_up=give_up, now=moment)
    return {"recovered": recovered, "resumed": report.resumed, "failed": report.failed,
            "deferred": report.deferred, "webhooks": resent}  # fmt: skip
