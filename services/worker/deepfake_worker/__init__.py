"""Celery workers of the deepfake service: each pipeline stage is a task; a job is a chain of them.

Nothing outside the workers imports this package: senders use `deepfake_jobs.dispatch` (task names and queues are
in `deepfake_jobs.queues`). Models load lazily in the worker processes (`deepfake_worker.inference`).
"""

__version__ = "0.1.0"
