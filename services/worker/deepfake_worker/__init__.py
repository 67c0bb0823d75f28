"""Celery workers of the deepfake service: each pipeline stage is a task; a job is a chain of them.

Importing this package, `celery_app` or `dispatch` loads no model: the gateway sends tasks by name.
Models load lazily in the worker processes (`deepfake_worker.inference`).
"""

__version__ = "0.1.0"
