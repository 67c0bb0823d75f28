"""The work of each pipeline stage (fetch, preprocess, inference, explain, notify) and the runner around it.

`runner` holds the rules every stage follows, `chain` runs a task's stage and the ones after it this worker
consumes; `deepfake_worker.tasks` only wires them to Celery.
"""
