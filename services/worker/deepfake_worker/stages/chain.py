"""A task's stage, then the following stages of its chain that this worker consumes too (the fast path).

When this worker also consumes the queue of the job's next stage, the task runs that stage itself right away,
handing the output over in memory while still persisting it in the background, so no stage waits for a queue
hop or re-reads what the previous one just wrote. A retry or a redelivered message re-runs the task's own stage
first, which then resumes from whatever outputs were persisted.
"""

from __future__ import annotations

import logging
import time

from celery import Task
from deepfake_jobs.models import Stage
from deepfake_jobs.queues import TASK_EXPLAIN, TASK_FETCH, TASK_INFERENCE, TASK_PREPROCESS, task_routes
from deepfake_jobs.storage import inference_key, prepared_key

from deepfake_worker import runtime
from deepfake_worker.services import services
from deepfake_worker.stages.explain import explain_work
from deepfake_worker.stages.fetch import fetch_work
from deepfake_worker.stages.handoff import Handoff
from deepfake_worker.stages.inference import inference_work
from deepfake_worker.stages.preprocess import preprocess_work
from deepfake_worker.stages.runner import StageSpec, run_stage

log = logging.getLogger(__name__)

# The detection stages by task name; a stage whose output object exists is not run again.
STAGES: dict[str, StageSpec] = {
    TASK_FETCH: StageSpec(Stage.FETCH, fetch_work),
    TASK_PREPROCESS: StageSpec(Stage.PREPROCESS, preprocess_work, prepared_key),
    TASK_INFERENCE: StageSpec(Stage.INFERENCE, inference_work, inference_key),
    TASK_EXPLAIN: StageSpec(Stage.EXPLAIN, explain_work),
}


def run_pipeline(task: Task, job_id: str, name: str) -> str:
    """Run the task's stage, then each following stage of the chain this worker consumes (the fast path).

    The steps run inline are taken off the chain only once all of them succeeded; if one is retried, the retry
    carries the whole chain, starts again at this task's stage and resumes from the persisted outputs.
    """
    handoff = Handoff(job_id)
    ran_inline = 0
    started = time.monotonic()
    try:
        current: str | None = name
        while current is not None:
            following = _inline_step(task, job_id, ran_inline + 1) if _inline_budget_left(started) else None
            handoff.in_memory = following is not None
            run_stage(task, job_id, STAGES[current], handoff)
            if following is None:
                break
            if not _inline_budget_left(started):  # the chain sends the next stage: its input must be stored
                handoff.settle(required=True)
                break
            ran_inline += 1
            log.info("job %s: %s runs right here after %s (fast path)", job_id, following, current)
            current = following
    finally:
        handoff.settle()
    if ran_inline:
        del task.request.chain[-ran_inline:]  # Celery sends what is left of the chain
    return job_id


def _inline_budget_left(started: float) -> bool:
    """Whether a task begun at `started` (monotonic) may run one more stage: the soft time limit covers all the
    stages a task runs, so once half of it is used the next stage goes to a task of its own, with a fresh limit."""
    return time.monotonic() - started < services().settings.job_soft_time_limit_s / 2


def _inline_step(task: Task, job_id: str, depth: int) -> str | None:
    """The task name of the chain step `depth` places ahead, if this worker may run it inline, else None.

    Only pipeline stages of the same job qualify, and only when this worker consumes the queue the step was sent
    to (a deployment with one pool per queue keeps one task per stage).
    """
    settings = services().settings
    chain = task.request.chain or []
    if not settings.inline_stages or depth > len(chain):
        return None
    step = chain[-depth]
    name = step.get("task")
    if name not in STAGES or list(step.get("args") or ()) != [job_id] or step.get("kwargs"):
        return None
    queue = (step.get("options") or {}).get("queue") or task_routes(settings)[name]["queue"]
    return name if runtime.consumes(queue) else None
