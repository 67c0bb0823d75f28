"""Re-driving stalled jobs: unfinished jobs whose broker messages were lost.

`acks_late` covers a pool process that dies (its message goes back to the queue), but not a broker that loses its
data (Redis restarted without persistence, a failover) or a message lost between two stages. The job record and
the stage outputs survive that, so the beat task `deepfake.resume_stalled` runs `sweep_stalled` every
`stall_check_interval_s`: an unfinished job whose record has not changed for `stall_after_s` gets its chain sent
again, and every stage that already finished is reused from object storage instead of redone.

A stale job may also just be waiting in a deep queue. It is re-driven only when the pipeline queues are empty (no
message of it can then be waiting) or when it has waited `HARD_STALL_FACTOR` times as long (a backlog that never
drains must not hold a lost job forever; a duplicate message costs one run of stages that skip their finished
work). After `max_resumes` re-drives the job fails with the code `stalled`, and its webhook says so.

Webhooks are owed the same way: a finished job with a `callback_url` stays in the store's owed index until a
delivery succeeds or is given up on (its retry period ended, or the URL was refused), scored by when its next
attempt is due. One overdue by `stall_after_s` lost its notify message, and `sweep_webhooks` sends it again;
the notify task skips an event already delivered, and receivers deduplicate by event id.

If Redis lost its data, the job records are gone too: `recover_lost_jobs` rebuilds every unfinished job from
its record in object storage (`inflight/{id}.json`, written at creation), and the stalled-job rule above then
re-drives it. The first sweep on an empty Redis (`JobStore.redis_is_new`) also runs `rebuild_from_object_storage`:
the tenants stored by the operator CLI (`tenants/{id}.json`) and the index of every finished job
(`jobs/{id}/job.json`), so listings and retention see them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from deepfake_jobs.metrics import STALLED_JOBS
from deepfake_jobs.models import Job, utcnow
from deepfake_jobs.store import JobStore
from deepfake_jobs.store.errors import InvalidTransition, JobNotFound
from deepfake_jobs.tenants import TenantRegistry

from deepfake_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

HARD_STALL_FACTOR = 4
STALLED_CODE = "stalled"


@dataclass
class SweepReport:
    resumed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # stale, but a busy queue may still hold their message


def recover_lost_jobs(store: JobStore, limit: int = 1000) -> list[str]:
    """Rebuild the Redis records of unfinished jobs that only object storage still knows; returns their ids."""
    recovered = [job_id for job_id in store.lost_inflight_jobs(limit=limit) if store.recover(job_id) is not None]
    if recovered:
        STALLED_JOBS.labels(action="recovered").inc(len(recovered))
        log.warning("unfinished jobs rebuilt from object storage: %s", recovered)
    return recovered


@dataclass
class RebuildReport:
    tenants: list[str] = field(default_factory=list)
    finished_jobs: list[str] = field(default_factory=list)
    unfinished_jobs: list[str] = field(default_factory=list)


def rebuild_from_object_storage(store: JobStore, tenants: TenantRegistry) -> RebuildReport:
    """Everything Redis only indexed, back from object storage: tenants, finished jobs, unfinished jobs.

    Lists the whole `jobs/` prefix, so it runs once per Redis data set (`recover_after_data_loss`), not per sweep.
    """
    report = RebuildReport(tenants=tenants.restore_from_objects())
    report.finished_jobs = [job_id for job_id in store.lost_finished_jobs() if store.recover(job_id) is not None]
    report.unfinished_jobs = recover_lost_jobs(store)
    if report.tenants or report.finished_jobs:
        STALLED_JOBS.labels(action="recovered").inc(len(report.finished_jobs))
        log.warning("rebuilt from object storage: tenants %s, %d finished jobs", report.tenants,
                    len(report.finished_jobs))  # fmt: skip
    return report


def recover_after_data_loss(store: JobStore, tenants: TenantRegistry) -> RebuildReport | None:
    """`rebuild_from_object_storage` when Redis is new (started empty or lost its data), else None."""
    if not store.redis_is_new():
        return None
    return rebuild_from_object_storage(store, tenants)


def sweep_webhooks(
    store: JobStore, settings: WorkerSettings, *, resend: Callable[[Job], None], now: datetime | None = None,
    limit: int = 100,
) -> list[str]:  # fmt: skip
    """Send the notify task again for every overdue webhook; returns the ids of those jobs."""
    now = now or utcnow()
    resent: list[str] = []
    for job_id in store.webhooks_overdue(now - timedelta(seconds=settings.stall_after_s), limit=limit):
        job = store.get(job_id)
        if job is None:
            continue
        store.webhook_resent(job_id, now)
        resend(job)
        STALLED_JOBS.labels(action="webhook_resent").inc()
        resent.append(job_id)
    if resent:
        log.warning("overdue webhooks sent again: %s", resent)
    return resent


def stalled_message(settings: WorkerSettings) -> str:
    return (
        f"The job made no progress for {settings.stall_after_s} s, {settings.max_resumes} times after being "
        "re-driven (workers down or failing); submit it again, and tell the operators if it keeps happening."
    )


def sweep_stalled(
    store: JobStore,
    settings: WorkerSettings,
    *,
    resume: Callable[[Job], None],
    give_up: Callable[[Job], None],
    now: datetime | None = None,
    limit: int = 100,
) -> SweepReport:
    """Resume (or, past `max_resumes`, give up on) every stalled job; see the module docstring for the rule."""
    now = now or utcnow()
    report = SweepReport()
    candidates = store.not_updated_since(now - timedelta(seconds=settings.stall_after_s), limit=limit)
    if not candidates:
        return report
    queues_idle = sum(store.queue_depths(settings.pipeline_queues).values()) == 0
    hard_cutoff = now - timedelta(seconds=HARD_STALL_FACTOR * settings.stall_after_s)
    for job_id in candidates:
        job = store.get(job_id)
        if job is None or job.terminal:
            store.forget_active(job_id)
            continue
        if not queues_idle and job.updated_at > hard_cutoff:
            report.deferred.append(job_id)
            continue
        if store.count_resume(job_id) > settings.max_resumes:
            give_up(job)
            STALLED_JOBS.labels(action="failed").inc()
            report.failed.append(job_id)
            continue
        try:
            store.update(job_id)  # restarts its stall clock: one re-drive per stall_after_s at most
        except (InvalidTransition, JobNotFound):  # finished or erased meanwhile
            continue
        resume(job)
        STALLED_JOBS.labels(action="resumed").inc()
        report.resumed.append(job_id)
    if report.resumed or report.failed:
        log.warning("stalled jobs: resumed %s, failed %s", report.resumed, report.failed)
    return report
